"""torch's intra-op threads capped per calling thread, and work started beside the caller."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")

from gifstream.restore.threads import CoreShare, _omp_set_num_threads, cap_intra_op_threads, start_beside  # noqa: E402

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


def test_the_cores_are_shared_out_among_the_work_running() -> None:
    share = CoreShare(cores=4)
    seen = [share.threads_now()]
    with share.working():
        seen.append(share.threads_now())
        with share.working():
            seen.append(share.threads_now())
            with share.working():
                seen.append(share.threads_now())  # more work than cores: one thread each, never zero
        seen.append(share.threads_now())
    assert seen == [4, 4, 2, 1, 4] and share.running == 0


class TwoLayers(torch.nn.Module):
    """Two convolutions; records the calling thread's torch threads as the second one starts."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Conv2d(3, 4, 3)
        self.second = torch.nn.Conv2d(4, 4, 3)
        self.threads_at_second: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


@needs_gomp
def test_a_network_takes_every_core_alone_and_its_share_beside_another() -> None:
    share = CoreShare(cores=2)
    net = share.attach(TwoLayers())
    assert share.attach(net) is net  # attaching twice adds no second set of hooks
    # Registered after the share's own hooks, so it sees the count the share has just set.
    net.second.register_forward_pre_hook(lambda *_: net.threads_at_second.append(torch.get_num_threads()))
    both_inside, both_recorded = threading.Barrier(2, timeout=30), threading.Barrier(2, timeout=30)
    side_by_side = threading.Event()

    def meet_after_first(*_: object) -> None:
        if side_by_side.is_set():
            both_inside.wait()  # both forwards are now running: each starts its second layer on its share

    def meet_after_second(*_: object) -> None:
        if side_by_side.is_set():
            both_recorded.wait()  # neither leaves (and frees its share) before the other has recorded

    net.first.register_forward_hook(meet_after_first)
    net.second.register_forward_hook(meet_after_second)
    image = torch.rand(1, 3, 16, 16)

    def forward() -> None:
        with share.working(), torch.inference_mode():
            net(image)

    in_thread(forward)
    side_by_side.set()
    errors: list[BaseException] = []

    def forward_beside() -> None:
        try:
            forward()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=forward_beside) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []

    assert net.threads_at_second == [2, 1, 1]
