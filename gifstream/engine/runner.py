"""The streaming runner: one task per stage, bounded queues, strict order.

::

    source ─▶ [queue] ─▶ stage 1 ─▶ [queue] ─▶ … ─▶ stage N ─▶ [queue] ─▶ consumer

Every queue is bounded, so a slow consumer (an encoder) stalls the source
instead of letting frames pile up. Each stage is a single task that takes a
batch (up to its ``max_batch``, waiting at most ``batch_timeout`` for it to
fill, never at end of stream), processes it, and passes the frames on; one
task per stage keeps frames in order by construction. The first error
anywhere cancels every task and is raised to the consumer, wrapped in
:class:`StageError` with the stage's name and the frame index.

Until the first frame has come out, it travels alone (``first_frame_alone``):
frames behind it would only take CPU from it, so the first output arrives
after one frame's processing time rather than after the queues fill. The
gate opens when the consumer has taken the first frame, or when every stage
is idle without having passed it on (a stage that drops or holds frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, GifstreamError, StageError
from .frame import Frame
from .stage import RunContext, Stage

_END = object()  # end-of-stream marker passed through the queues


@dataclass(slots=True)
class RunnerConfig:
    """The knobs of the runner itself (not of any stage)."""

    queue_depth: int = 4  # frames each inter-stage queue holds at most
    batch_size: int | None = None  # caps every stage's max_batch when set
    batch_timeout: float = 0.005  # seconds a batchable stage waits for its batch to fill
    # After an error or cancellation, how long to wait for stages (which may be
    # mid-batch on their threads) to close; their close still runs afterwards.
    close_timeout: float = 1.0
    # Let the first frame through alone, for the shortest time to the first output.
    first_frame_alone: bool = True

    def __post_init__(self) -> None:
        if self.queue_depth < 1:
            raise ConfigError(f"queue_depth must be >= 1, got {self.queue_depth}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.batch_timeout < 0:
            raise ConfigError(f"batch_timeout must be >= 0, got {self.batch_timeout}")


@dataclass(slots=True)
class StageStats:
    """What one stage did: frames, batches, busy time and its input queue's depth."""

    name: str
    frames: int = 0
    batches: int = 0
    busy_s: float = 0.0
    max_queue: int = 0
    _queue_sum: int = 0

    def record_batch(self, size: int, busy_s: float, queue_depth: int) -> None:
        self.frames += size
        self.batches += 1
        self.busy_s += busy_s
        self.max_queue = max(self.max_queue, queue_depth)
        self._queue_sum += queue_depth

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "frames": self.frames,
            "batches": self.batches,
            "busy_s": round(self.busy_s, 6),
            "frames_per_s_busy": round(self.frames / self.busy_s, 3) if self.busy_s > 0 else None,
            "mean_batch": round(self.frames / self.batches, 3) if self.batches else None,
            "max_queue": self.max_queue,
            "mean_queue": round(self._queue_sum / self.batches, 3) if self.batches else None,
        }


@dataclass(slots=True)
class RunStats:
    """Per-stage statistics plus the wall-clock shape of the run."""

    stages: list[StageStats] = field(default_factory=list)
    frames_out: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_output_s: float | None = None
    elapsed_s: float = 0.0

    def mark_output(self) -> None:
        now = time.perf_counter()
        if self.first_output_s is None:
            self.first_output_s = now - self.started
        self.frames_out += 1
        self.elapsed_s = now - self.started

    def as_dict(self) -> dict[str, Any]:
        fps = self.frames_out / self.elapsed_s if self.elapsed_s > 0 else None
        return {
            "frames": self.frames_out,
            "elapsed_s": round(self.elapsed_s, 6),
            "frames_per_s": round(fps, 3) if fps else None,
            "first_output_s": round(self.first_output_s, 6) if self.first_output_s is not None else None,
            "stages": [s.as_dict() for s in self.stages],
        }


class Pipeline:
    """Runs ``stages`` over ``source`` and yields the processed frames in order.

    Use it as an async context manager so that, however the consumer leaves
    (end of stream, error, cancellation), every task is cancelled, every stage
    closed and the source closed::

        async with Pipeline(source, stages) as frames:
            async for frame in frames:
                ...
    """

    def __init__(
        self,
        source: AsyncIterable[Frame],
        stages: Sequence[Stage],
        ctx: RunContext | None = None,
        config: RunnerConfig | None = None,
    ) -> None:
        self._source = source
        self._stages = list(stages)
        self._ctx = ctx or RunContext()
        self._config = config or RunnerConfig()
        self.stats = RunStats(stages=[StageStats(s.name) for s in self._stages])
        self._tasks: list[asyncio.Task[None]] = []
        self._queues: list[asyncio.Queue[Any]] = []
        self._failure: asyncio.Future[BaseException] | None = None
        self._ready: list[Stage] = []
        self._entered = False
        self._first_through = asyncio.Event()  # set: frames after the first may enter
        self._idle_stages = 0
        self._first_fed = False

    async def __aenter__(self) -> AsyncIterator[Frame]:
        if self._entered:
            raise RuntimeError("a Pipeline runs once")
        self._entered = True
        loop = asyncio.get_running_loop()
        self._failure = loop.create_future()
        try:
            for stage in self._stages:
                await self._setup(stage)
        except BaseException:
            await self._close_stages()
            await _aclose(self._source)
            raise
        if not self._config.first_frame_alone:
            self._first_through.set()
        depth = self._config.queue_depth
        self._queues = [asyncio.Queue(maxsize=depth) for _ in range(len(self._stages) + 1)]
        self._tasks.append(asyncio.create_task(self._feed(self._queues[0]), name="gifstream-source"))
        for i, stage in enumerate(self._stages):
            worker = self._work(stage, self.stats.stages[i], self._queues[i], self._queues[i + 1])
            self._tasks.append(asyncio.create_task(worker, name=f"gifstream-{stage.name}"))
        for task in self._tasks:
            task.add_done_callback(self._on_task_done)
        return self._output()

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks:
            task.cancel()
        # Wait for the tasks (and any worker thread mid-batch) before closing stages.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        failure = self._failure
        aborting = exc_info[0] is not None or (failure is not None and failure.done())
        await self._close_stages(self._config.close_timeout if aborting else None)
        await _aclose(self._source)
        if failure is not None and failure.done() and exc_info[0] is None:
            raise failure.result()

    # -- tasks ---------------------------------------------------------------

    async def _setup(self, stage: Stage) -> None:
        if stage.max_batch < 1:
            raise ConfigError(f"stage {stage.name!r} declares max_batch {stage.max_batch} (< 1)")
        try:
            await stage.setup(self._ctx)
        except GifstreamError:
            raise
        except Exception as err:
            raise StageError(stage.name, None, err) from err
        self._ready.append(stage)

    async def _feed(self, out: asyncio.Queue[Any]) -> None:
        last = -1
        async for frame in self._source:
            if frame.index <= last:
                raise StageError("source", frame.index, ValueError(f"frame index {frame.index} after {last}"))
            if last >= 0:
                await self._first_through.wait()
            last = frame.index
            await out.put(frame)
            self._first_fed = True
        await out.put(_END)

    async def _work(self, stage: Stage, stats: StageStats, inq: asyncio.Queue[Any], out: asyncio.Queue[Any]) -> None:
        limit = stage.max_batch if self._config.batch_size is None else min(stage.max_batch, self._config.batch_size)
        previous: Frame | None = None
        last = -1
        loop = asyncio.get_running_loop()  # its clock, so busy times follow the loop's (testable) time
        while True:
            depth = inq.qsize()
            batch, ended = await self._collect(inq, limit)
            if batch:
                started = loop.time()
                try:
                    result = await stage.process(batch, previous if stage.needs_previous else None)
                except GifstreamError as err:
                    if isinstance(err, StageError):
                        raise
                    raise StageError(stage.name, batch[0].index, err) from err
                except Exception as err:
                    raise StageError(stage.name, batch[0].index, err) from err
                stats.record_batch(len(batch), loop.time() - started, depth)
                last = _check_order(stage.name, result, last)
                if result and stage.needs_previous:
                    # A snapshot: later stages replace pixels on the same Frame object.
                    previous = dataclasses.replace(result[-1], meta=dict(result[-1].meta))
                for frame in result:
                    await out.put(frame)
            if ended:
                await out.put(_END)
                return

    async def _collect(self, inq: asyncio.Queue[Any], limit: int) -> tuple[list[Frame], bool]:
        first = await self._next_input(inq)
        if first is _END:
            return [], True
        batch = [first]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.batch_timeout
        while len(batch) < limit:
            try:
                item = inq.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(inq.get(), remaining)
                except TimeoutError:
                    break
            if item is _END:
                return batch, True
            batch.append(item)
        return batch, False

    async def _next_input(self, inq: asyncio.Queue[Any]) -> Any:
        """The next item of ``inq``; while waiting, the stage counts as idle (see :meth:`_open_if_stuck`)."""
        if not inq.empty():
            return inq.get_nowait()
        self._idle_stages += 1
        try:
            self._open_if_stuck()
            return await inq.get()
        finally:
            self._idle_stages -= 1

    def _open_if_stuck(self) -> None:
        """Let frames in when the first one is held or dropped: every stage waits and no queue holds a frame."""
        if self._first_fed and self._idle_stages == len(self._stages) and all(q.empty() for q in self._queues):
            self._first_through.set()

    async def _output(self) -> AsyncIterator[Frame]:
        assert self._failure is not None
        final = self._queues[-1]
        while True:
            getter = asyncio.ensure_future(final.get())
            await asyncio.wait({getter, self._failure}, return_when=asyncio.FIRST_COMPLETED)
            if self._failure.done():
                getter.cancel()
                raise self._failure.result()
            item = getter.result()
            if item is _END:
                return
            self.stats.mark_output()
            yield item
            self._first_through.set()  # the consumer is done with it (an encoder has written it)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        assert self._failure is not None
        if not self._failure.done():
            self._failure.set_result(task.exception())  # type: ignore[arg-type]
        for other in self._tasks:
            other.cancel()

    async def _close_stages(self, timeout: float | None = None) -> None:
        """Close every stage set up, last first; with ``timeout``, wait that long in all."""
        errors: list[BaseException] = []
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._ready:
            stage = self._ready.pop()
            remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
            try:
                await asyncio.wait_for(stage.close(), remaining)
            except TimeoutError:
                continue  # busy with a batch; it closes when the batch ends
            except Exception as err:  # close every stage even if one fails
                errors.append(StageError(stage.name, None, err))
        if errors and (self._failure is None or not self._failure.done()):
            raise errors[0]


def _check_order(stage: str, frames: list[Frame], last: int) -> int:
    if not isinstance(frames, list):
        raise StageError(stage, None, TypeError(f"process() returned {type(frames).__name__}, not list"))
    for frame in frames:
        if frame.index <= last:
            raise StageError(stage, frame.index, ValueError(f"frame {frame.index} returned after frame {last}"))
        last = frame.index
    return last


async def _aclose(source: object) -> None:
    close = getattr(source, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()
