"""`engine.run`: blocking sources and sinks driven from their own threads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from gifstream.engine import BlockingStage, Frame, RunContext, StageError, StreamInfo, run


class ListSource:
    def __init__(self, n: int, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.n, self.delay, self.fail_at = n, delay, fail_at
        self.closed = False
        self.threads: set[str] = set()

    def open(self) -> StreamInfo:
        return StreamInfo(width=4, height=2, format="fake", frame_count=self.n)

    def frames(self) -> Iterator[Frame]:
        for i in range(self.n):
            self.threads.add(threading.current_thread().name)
            time.sleep(self.delay)
            if i == self.fail_at:
                raise OSError(f"read error at {i}")
            yield Frame(i, np.full((2, 4, 3), i % 256, np.uint8), duration_ms=40.0)

    def close(self) -> None:
        self.closed = True


class ListSink:
    def __init__(self, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.delay, self.fail_at = delay, fail_at
        self.written: list[int] = []
        self.events: list[str] = []
        self.threads: set[str] = set()

    def open(self, info: StreamInfo) -> None:
        self.events.append(f"open {info.width}x{info.height}")

    def write(self, frame: Frame) -> None:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if frame.index == self.fail_at:
            raise OSError("disk full")
        self.written.append(frame.index)

    def finish(self) -> None:
        self.events.append("finish")

    def abort(self) -> None:
        self.events.append("abort")


class Invert(BlockingStage):
    name = "invert"

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.closed = False
        self.threads: set[str] = set()

    def process_sync(self, batch: list[Frame], previous: Frame | None) -> list[Frame]:
        self.threads.add(threading.current_thread().name)
        for frame in batch:
            if frame.index == self.fail_at:
                raise ZeroDivisionError("bad frame")
            frame.pixels = 255 - frame.pixels
        return batch

    def close_sync(self) -> None:
        self.closed = True


async def test_a_run_moves_every_frame_through_each_blocking_piece_on_its_own_thread() -> None:
    source, sink, stage = ListSource(20), ListSink(), Invert()
    seen: list[int] = []
    stats = await run(source, [stage], sink, on_frame=lambda f: seen.append(int(f.pixels[0, 0, 0])))
    assert sink.written == list(range(20))
    assert seen == [255 - i for i in range(20)]
    assert sink.events == ["open 4x2", "finish"]
    assert source.closed and stage.closed
    assert stats.frames_out == 20 and stats.stages[0].frames == 20
    main = threading.current_thread().name
    for threads in (source.threads, sink.threads, stage.threads):
        assert len(threads) == 1 and main not in threads
    assert len(source.threads | sink.threads | stage.threads) == 3


@pytest.mark.parametrize("where", ["source", "stage", "sink"])
async def test_a_failure_anywhere_aborts_the_sink_and_closes_everything(where: str) -> None:
    source = ListSource(50, fail_at=7 if where == "source" else None)
    stage = Invert(fail_at=7 if where == "stage" else None)
    sink = ListSink(fail_at=7 if where == "sink" else None)
    expected: type[BaseException] = StageError if where == "stage" else OSError
    with pytest.raises(expected):
        await asyncio.wait_for(run(source, [stage], sink), timeout=10)
    assert sink.events[-1] == "abort" and "finish" not in sink.events
    assert sink.written == list(range(len(sink.written))) and len(sink.written) <= 7
    assert source.closed and stage.closed


async def test_the_stage_error_names_the_stage_and_the_frame() -> None:
    with pytest.raises(StageError, match=r"stage 'invert' failed at frame 3: ZeroDivisionError: bad frame") as err:
        await run(ListSource(5), [Invert(fail_at=3)], ListSink())
    assert err.value.frame_index == 3 and err.value.stage == "invert"


async def test_cancelling_a_run_aborts_the_sink_and_stops_quickly() -> None:
    source, sink, stage = ListSource(10_000, delay=0.01), ListSink(), Invert()
    task = asyncio.create_task(run(source, [stage], sink))
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 1.0
    assert sink.events[-1] == "abort" and source.closed and stage.closed
    assert 0 < len(sink.written) < 200


async def test_the_context_receives_the_stream_info_before_stages_set_up() -> None:
    infos: list[StreamInfo | None] = []

    class Probe(Invert):
        def setup_sync(self, ctx: RunContext) -> None:
            infos.append(ctx.info)

    await run(ListSource(2), [Probe()], ListSink())
    assert infos and infos[0] is not None and infos[0].format == "fake"
