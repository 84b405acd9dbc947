"""Source and sink contracts, and the loop that drives a whole run.

Decoders and encoders block (Pillow, PyAV, file writes), so they are written
as plain blocking classes and driven here from one dedicated thread each.
The engine knows only these protocols, never a file format.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Protocol, TypeVar

from .frame import Frame, StreamInfo
from .runner import Pipeline, RunnerConfig, RunStats
from .stage import RunContext, Stage
from .worker import ThreadWorker

T = TypeVar("T")


class Source(Protocol):
    """A blocking decoder: ``open`` reads the header, ``frames`` yields frames one by one."""

    def open(self) -> StreamInfo: ...

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


class Sink(Protocol):
    """A blocking encoder.

    ``finish`` flushes, writes the trailer exactly once and makes the output
    visible (an atomic rename for files); ``abort`` discards partial output.
    Exactly one of them is called after ``open`` succeeded.
    """

    def open(self, info: StreamInfo) -> None: ...

    def write(self, frame: Frame) -> None: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


_DONE = object()


async def iterate_in_thread(iterator: Iterator[T], worker: ThreadWorker) -> AsyncIterator[T]:
    """Turn a blocking iterator into an async one, each ``next`` on ``worker``'s thread.

    Closing it queues the iterator's ``close`` on the worker without waiting:
    when it is closed because the run was cancelled, the worker may still be
    blocked inside ``next`` (a pipe that sends nothing), and waiting would hang.
    """
    try:
        while True:
            item = await worker.call(next, iterator, _DONE)
            if item is _DONE:
                return
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            worker.submit(close)


async def run(
    source: Source,
    stages: Sequence[Stage],
    sink: Sink,
    ctx: RunContext | None = None,
    config: RunnerConfig | None = None,
    on_open: Callable[[StreamInfo], None] | None = None,
    on_frame: Callable[[Frame], None] | None = None,
    abort_timeout: float = 0.5,
) -> RunStats:
    """Decode ``source``, pass every frame through ``stages`` and encode into ``sink``.

    On any error or cancellation the sink is aborted (no partial output), every
    stage is closed and the source is closed; the error propagates. After an
    error, closing a source still blocked in a read is waited for at most
    ``abort_timeout`` seconds, so an interrupted run ends promptly.
    """
    ctx = ctx or RunContext()
    reader, writer = ThreadWorker("gifstream-source"), ThreadWorker("gifstream-sink")
    sink_opened = False
    try:
        info = await reader.call(source.open)
        ctx.info = info
        if on_open is not None:
            on_open(info)
        frames = iterate_in_thread(source.frames(), reader)
        pipeline = Pipeline(frames, stages, ctx, config)
        async with pipeline as processed:
            await writer.call(sink.open, info)
            sink_opened = True
            async for frame in processed:
                await writer.call(sink.write, frame)
                if on_frame is not None:
                    on_frame(frame)
        await writer.call(sink.finish)
        sink_opened = False
        await reader.call(source.close)
        return pipeline.stats
    except BaseException:
        if sink_opened:
            # Removing a partial output matters more than speed: always wait for it.
            await asyncio.shield(writer.call(sink.abort))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader.call(source.close)), abort_timeout)
        raise
    finally:
        reader.shutdown()
        writer.shutdown()
