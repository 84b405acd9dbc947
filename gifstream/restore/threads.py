"""torch's intra-op threads, per calling thread, and small helpers to run model work side by side.

``torch.set_num_threads`` also changes the default of every thread that has
not used torch yet, so a pipeline cannot give each stage its own count with
it. Underneath, torch's CPU kernels take their thread count from the calling
thread's OpenMP setting, which can be set for one thread alone;
:func:`cap_intra_op_threads` does that.

Why cap at all: on a machine with few cores, a pipeline already keeps
several stages busy at once, and OpenMP teams of several threads per stage
then wait on each other at every barrier (on a shared 2-core machine, an
RRDBNet forward with 2 threads took 1.8x the wall time and 2.4x the CPU
time of the same forward with 1). One thread per piece of work, with the
pieces running side by side, keeps every core busy without those waits.

But a piece of work alone (the first frame, which goes through the pipeline
by itself; the last frames, once the stages before have finished; the faces
once the background is done) would then leave cores idle. :class:`CoreShare`
shares the cores out among the networks running at that moment, layer by
layer: a network alone gets every core, two side by side get half each.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def default_intra_op_threads() -> int:
    """Threads per piece of model work on the CPU: half the cores (two pieces usually run at once), at least 1."""
    return max(1, (os.cpu_count() or 1) // 2)


@functools.cache
def _omp_set_num_threads() -> Callable[[int], Any] | None:
    """GNU OpenMP's per-thread setter (the runtime torch's CPU kernels, oneDNN and MKL's GNU layer run on)."""
    try:
        return ctypes.CDLL("libgomp.so.1").omp_set_num_threads  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None  # another OpenMP runtime (another platform or build): leave torch's own setting alone


def cap_intra_op_threads(count: int) -> bool:
    """Run torch's CPU work started from the calling thread on at most ``count`` threads; other threads keep theirs.

    Returns whether the cap holds (False where the OpenMP runtime cannot be
    reached, which leaves torch as it was).
    """
    import torch

    if count < 1:
        raise ValueError(f"thread count must be >= 1, got {count}")
    _prime_torch_threads()
    set_threads = _omp_set_num_threads()
    if set_threads is None:
        return False
    set_threads(count)
    return bool(torch.get_num_threads() == count)


_primed = threading.local()


def _prime_torch_threads() -> None:
    """Let torch set the calling thread's count on a first parallel kernel, so it cannot undo a cap set after."""
    if getattr(_primed, "done", False):
        return
    import torch

    torch.ones(1 << 16).add_(1)
    _primed.done = True


def start_beside(fn: Callable[[], T], threads: int | None) -> Callable[[], T]:
    """Start ``fn`` on a thread of its own (capped at ``threads`` torch threads when given, in inference mode).

    Returns a function that waits for ``fn`` and gives its result or raises
    its error. The thread is a daemon, so an interrupted run never waits for it.
    """
    outcome: dict[str, Any] = {}

    def work() -> None:
        import torch

        try:
            if threads is not None:
                cap_intra_op_threads(threads)
            with torch.inference_mode():
                outcome["result"] = fn()
        except BaseException as err:  # handed to the caller by wait()
            outcome["error"] = err

    thread = threading.Thread(target=work, name="gifstream-restore-beside", daemon=True)
    thread.start()

    def wait() -> T:
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        result: T = outcome["result"]
        return result

    return wait


class CoreShare:
    """The cores shared out among the networks that run on the CPU at the same time, one layer at a time.

    Work registers with :meth:`working` while it runs; networks passed to
    :meth:`attach` set the calling thread's torch threads before each of
    their layers to ``cores // (work registered now)``, at least 1. So a
    network alone uses every core, and several side by side one core's
    worth each, without OpenMP teams crowding each other out for long.
    """

    def __init__(self, cores: int | None = None) -> None:
        self.cores = max(1, cores or os.cpu_count() or 1)
        self._running = 0
        self._lock = threading.Lock()

    @property
    def running(self) -> int:
        return self._running

    def threads_now(self) -> int:
        """Torch threads for a network starting a layer now."""
        return max(1, self.cores // max(1, self._running))

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Count the calling thread's model work as running for the duration of the block."""
        _prime_torch_threads()
        with self._lock:
            self._running += 1
        try:
            self.rebalance()
            yield
        finally:
            with self._lock:
                self._running -= 1

    def rebalance(self) -> None:
        """Give the calling thread its share of the cores (for torch's next parallel kernels)."""
        set_threads = _omp_set_num_threads()
        if set_threads is not None:
            set_threads(self.threads_now())

    def attach(self, net: Any) -> Any:
        """Rebalance before every layer of ``net`` (a torch module) that has weights; returns ``net``.

        Attaching the same network twice adds nothing.
        """
        if getattr(net, "_gifstream_core_share", None) is self:
            return net
        for module in net.modules():
            has_weights = any(True for _ in module.parameters(recurse=False))
            if has_weights:
                module.register_forward_pre_hook(lambda *_: self.rebalance())
        net._gifstream_core_share = self
        return net


# One share for the whole process: every network on the CPU draws on the same cores.
CORE_SHARE = CoreShare()
