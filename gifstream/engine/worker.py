"""A dedicated thread for the blocking calls of one source, sink or stage."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ThreadWorker:
    """One daemon thread that runs blocking calls in order, for one source, sink or stage.

    A daemon thread, unlike a thread pool's, cannot keep the process alive: a
    reader blocked on a pipe that never closes must not stop Ctrl-C or SIGTERM
    from ending the run once the cleanup on the event loop has finished.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any] | None] | None]
        self._calls = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls.put((fn, args, future))
        return await future

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn`` without waiting for it (its result and errors are dropped)."""
        self._calls.put((fn, args, None))

    def shutdown(self) -> None:
        self._calls.put(None)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, args, future = item
            try:
                result = fn(*args)
            except BaseException as err:  # handed to the awaiting coroutine, raised there
                if future is not None:
                    _settle(future, None, err)
            else:
                if future is not None:
                    _settle(future, result, None)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    def apply() -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    loop = future.get_loop()
    if not loop.is_closed():
        loop.call_soon_threadsafe(apply)
