"""torch's intra-op threads capped per calling thread, and work started beside the caller."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")

from gifstream.restore.threads import _omp_set_num_threads, cap_intra_op_threads, start_beside  # noqa: E402

needs_gomp = pytest.mark.skipif(_omp_set_num_threads() is None, reason="torch does not run on GNU OpenMP here")


def in_thread(fn):
    """fn() run on a fresh thread; its result."""
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", fn()))
    thread.start()
    thread.join()
    return box["result"]


@needs_gomp
def test_a_cap_holds_in_its_thread_only() -> None:
    before = in_thread(torch.get_num_threads)

    def capped() -> tuple[bool, int, int]:
        held = cap_intra_op_threads(1)
        return held, torch.get_num_threads(), in_thread(torch.get_num_threads)

    held, inside, other = in_thread(capped)

    assert held and inside == 1
    assert other == before  # a thread started afterwards keeps torch's own default
    assert in_thread(torch.get_num_threads) == before


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="thread count must be >= 1"):
        cap_intra_op_threads(0)


def test_work_beside_gives_its_result_in_inference_mode() -> None:
    wait = start_beside(lambda: (torch.is_inference_mode_enabled(), threading.current_thread().daemon), threads=1)
    assert wait() == (True, True)


def test_work_beside_hands_its_error_to_the_waiter() -> None:
    def fail() -> None:
        raise RuntimeError("background failed")

    wait = start_beside(fail, threads=None)
    with pytest.raises(RuntimeError, match="background failed"):
        wait()
