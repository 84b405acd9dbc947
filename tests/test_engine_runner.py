"""The runner on fake stages, in virtual time (looptime): order, bounds, errors, shutdown."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest

from gifstream.engine import Frame, Pipeline, RunnerConfig, StageError
from gifstream.engine.stage import RunContext

# The schedule without the first frame travelling alone (tested on its own below).
OVERLAP_FROM_THE_START = RunnerConfig(first_frame_alone=False)


def make_frame(i: int) -> Frame:
    return Frame(index=i, pixels=np.zeros((2, 2, 3), np.uint8), duration_ms=100.0)


class Tracker:
    """Counts frames alive between the source and the consumer, and what got closed."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.produced = 0
        self.closed: list[str] = []

    def made(self) -> None:
        self.produced += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def consumed(self) -> None:
        self.in_flight -= 1


async def source(n: int, tracker: Tracker, delay: float = 0.0) -> AsyncIterator[Frame]:
    try:
        for i in range(n):
            if delay:
                await asyncio.sleep(delay)
            tracker.made()
            yield make_frame(i)
    finally:
        tracker.closed.append("source")


class FakeStage:
    def __init__(
        self,
        name: str,
        tracker: Tracker,
        *,
        delay: float | list[float] = 0.0,
        max_batch: int = 1,
        needs_previous: bool = False,
        fail_at: int | None = None,
    ) -> None:
        self.name = name
        self.max_batch = max_batch
        self.needs_previous = needs_previous
        self.tracker = tracker
        self.delay = delay
        self.fail_at = fail_at
        self.batches: list[list[int]] = []
        self.previous_seen: list[int | None] = []
        self.set_up = False

    async def setup(self, ctx: RunContext) -> None:
        self.set_up = True

    async def process(self, batch: Sequence[Frame], previous: Frame | None) -> list[Frame]:
        self.batches.append([f.index for f in batch])
        self.previous_seen.append(previous.index if previous is not None else None)
        delay = self.delay if isinstance(self.delay, float) else self.delay[batch[0].index]
        await asyncio.sleep(delay)
        if self.fail_at is not None and any(f.index == self.fail_at for f in batch):
            raise ValueError(f"boom in {self.name}")
        for frame in batch:
            frame.meta.setdefault("path", []).append(self.name)
        return list(batch)

    async def close(self) -> None:
        self.tracker.closed.append(self.name)


async def drain(pipeline: Pipeline, tracker: Tracker, delay: float = 0.0) -> list[Frame]:
    out = []
    async with pipeline as frames:
        async for frame in frames:
            tracker.consumed()
            out.append(frame)
            if delay:
                await asyncio.sleep(delay)
    return out


@pytest.mark.looptime
async def test_stages_overlap_so_the_run_takes_as_long_as_the_slowest_stage(looptime: float) -> None:
    tracker = Tracker()
    stages = [FakeStage("a", tracker, delay=1.0), FakeStage("b", tracker, delay=2.0)]
    config = RunnerConfig(first_frame_alone=False)
    out = await drain(Pipeline(source(10, tracker), stages, config=config), tracker)
    assert [f.index for f in out] == list(range(10))
    # a's first frame (1 s), then b paces the rest: 1 + 10 * 2 — not the 30 s of running them in turn.
    assert looptime == pytest.approx(21.0)
    assert all(f.meta["path"] == ["a", "b"] for f in out)


class Clock:
    """When each stage started and ended each frame, in loop time."""

    def __init__(self) -> None:
        self.spans: dict[tuple[str, int], tuple[float, float]] = {}


class TimedStage(FakeStage):
    def __init__(self, name: str, tracker: Tracker, clock: Clock, **kwargs: object) -> None:
        super().__init__(name, tracker, **kwargs)  # type: ignore[arg-type]
        self.clock = clock

    async def process(self, batch: Sequence[Frame], previous: Frame | None) -> list[Frame]:
        started = asyncio.get_running_loop().time()
        result = await super().process(batch, previous)
        for frame in batch:
            self.clock.spans[(self.name, frame.index)] = (started, asyncio.get_running_loop().time())
        return result


@pytest.mark.looptime
async def test_the_first_frame_travels_alone_so_it_comes_out_after_one_frames_time(looptime: float) -> None:
    tracker, clock = Tracker(), Clock()
    stages = [TimedStage("a", tracker, clock, delay=1.0), TimedStage("b", tracker, clock, delay=2.0)]
    first_out: list[float] = []
    async with Pipeline(source(10, tracker), stages) as frames:
        async for _frame in frames:
            first_out = first_out or [asyncio.get_running_loop().time()]
            await asyncio.sleep(0.5)  # the consumer (an encoder) takes its time with each frame
    # Frame 0 alone: a (1 s) + b (2 s). Nothing else ran meanwhile, not even a on frame 1 ...
    assert first_out == [pytest.approx(3.0)]
    assert clock.spans[("a", 1)][0] == pytest.approx(3.5)  # ... which starts once the consumer is done with frame 0
    # After that the stages overlap as usual: b paces the run.
    assert clock.spans[("b", 9)][1] == pytest.approx(4.5 + 9 * 2.0)  # b on frames 1-9 back to back


class Dropper(FakeStage):
    """Drops frame 0 (a filter), or with ``hold`` keeps each frame until the next arrives (a look-ahead)."""

    def __init__(self, name: str, tracker: Tracker, *, hold: bool) -> None:
        super().__init__(name, tracker, delay=0.1)
        self.hold = hold
        self.held: list[Frame] = []

    async def process(self, batch: Sequence[Frame], previous: Frame | None) -> list[Frame]:
        await super().process(batch, previous)
        if not self.hold:
            return [f for f in batch if f.index != 0]
        out, self.held = self.held, list(batch)
        return out


@pytest.mark.looptime
@pytest.mark.parametrize("hold", [False, True], ids=["drops-frame-0", "holds-each-frame"])
async def test_a_stage_that_drops_or_holds_the_first_frame_does_not_stall_the_run(hold: bool) -> None:
    tracker = Tracker()
    stages = [FakeStage("a", tracker, delay=0.2), Dropper("filter", tracker, hold=hold), FakeStage("b", tracker)]
    out = await asyncio.wait_for(drain(Pipeline(source(5, tracker), stages), tracker), timeout=60)
    # Held frames are never flushed by this toy stage, so the last one stays inside it.
    assert [f.index for f in out] == ([0, 1, 2, 3] if hold else [1, 2, 3, 4])
    assert all(f.meta["path"] == ["a", "filter", "b"] for f in out)


@pytest.mark.looptime
@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_order_is_kept_under_random_per_stage_delays(seed: int) -> None:
    rng = random.Random(seed)
    n = 60
    tracker = Tracker()
    stages = [
        FakeStage(f"s{k}", tracker, delay=[rng.uniform(0, 0.5) for _ in range(n)], max_batch=rng.choice([1, 3, 4]))
        for k in range(4)
    ]
    out = await drain(Pipeline(source(n, tracker), stages, config=RunnerConfig(queue_depth=2)), tracker)
    assert [f.index for f in out] == list(range(n))
    for stage in stages:
        seen = [i for batch in stage.batches for i in batch]
        assert seen == list(range(n))
        assert max(len(b) for b in stage.batches) <= stage.max_batch


@pytest.mark.looptime
@pytest.mark.parametrize(("depth", "batches"), [(1, [1, 1]), (2, [4, 1, 3]), (5, [2])])
async def test_frames_in_flight_never_exceed_queue_and_batch_bounds(depth: int, batches: list[int]) -> None:
    tracker = Tracker()
    stages = [FakeStage(f"s{k}", tracker, delay=0.01, max_batch=b) for k, b in enumerate(batches)]
    # A slow consumer (an encoder) must stall the source, not let frames pile up.
    out = await drain(
        Pipeline(source(200, tracker), stages, config=RunnerConfig(queue_depth=depth)), tracker, delay=1.0
    )
    assert len(out) == 200
    queues = (len(stages) + 1) * depth
    held_by_tasks = sum(batches) + 1 + 1  # a batch in each stage, one frame in the source's hand, one consumed
    assert tracker.max_in_flight <= queues + held_by_tasks
    assert tracker.max_in_flight >= queues  # the bound is tight: the queues did fill


@pytest.mark.looptime
async def test_a_full_batch_is_taken_when_frames_are_waiting() -> None:
    tracker = Tracker()
    batcher = FakeStage("batcher", tracker, max_batch=4, delay=1.0)
    await drain(Pipeline(source(13, tracker), [batcher], config=RunnerConfig(queue_depth=8)), tracker)
    sizes = [len(b) for b in batcher.batches]
    # While the batcher works, frames wait in its queue: every later batch is full.
    assert sum(sizes) == 13
    assert all(size == 4 for size in sizes[1:-1]) and len(sizes) <= 5


@pytest.mark.looptime
async def test_batching_waits_at_most_the_deadline_and_never_at_end_of_stream(looptime: float) -> None:
    tracker = Tracker()
    batcher = FakeStage("batcher", tracker, max_batch=8)
    config = RunnerConfig(batch_timeout=0.25)
    # Frames arrive every second: each batch closes after 0.25 s with one frame in it.
    await drain(Pipeline(source(3, tracker, delay=1.0), [batcher], config=config), tracker)
    assert batcher.batches == [[0], [1], [2]]
    # The end marker follows the last frame at once, so the last batch closes then, not at its deadline.
    assert looptime == pytest.approx(3.0)
    batcher2 = FakeStage("batcher", tracker, max_batch=8)
    start = asyncio.get_running_loop().time()
    overlap = RunnerConfig(batch_timeout=0.25, first_frame_alone=False)
    await drain(Pipeline(source(3, tracker), [batcher2], config=overlap), tracker)
    assert batcher2.batches == [[0, 1, 2]]
    assert asyncio.get_running_loop().time() - start == pytest.approx(0.0)
    # By default the first frame goes through alone, then the rest batch up.
    batcher3 = FakeStage("batcher", tracker, max_batch=8)
    await drain(Pipeline(source(3, tracker), [batcher3], config=config), tracker)
    assert batcher3.batches == [[0], [1, 2]]


@pytest.mark.looptime
async def test_a_stage_that_needs_the_previous_frame_gets_the_one_before_its_batch() -> None:
    tracker = Tracker()
    pairs = FakeStage("flow", tracker, needs_previous=True, max_batch=3, delay=0.0)
    feeder = FakeStage("feed", tracker, delay=[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    await drain(Pipeline(source(8, tracker), [feeder, pairs], config=RunnerConfig(queue_depth=4)), tracker)
    firsts = [b[0] for b in pairs.batches]
    assert pairs.previous_seen == [None] + [f - 1 for f in firsts[1:]]
    plain = FakeStage("plain", tracker)
    await drain(Pipeline(source(3, tracker), [plain]), tracker)
    assert plain.previous_seen == [None, None, None]


@pytest.mark.looptime
@pytest.mark.parametrize("failing", [0, 1, 2])
@pytest.mark.parametrize("frame", [0, 57, 999])
async def test_an_error_in_any_stage_ends_the_run_promptly_with_stage_and_frame(
    failing: int, frame: int, looptime: float
) -> None:
    tracker = Tracker()
    stages = [FakeStage(f"s{k}", tracker, delay=1.0, fail_at=frame if k == failing else None) for k in range(3)]
    with pytest.raises(StageError) as caught:
        await drain(Pipeline(source(1000, tracker), stages, config=OVERLAP_FROM_THE_START), tracker)
    err = caught.value
    assert (err.stage, err.frame_index) == (f"s{failing}", frame)
    assert isinstance(err.__cause__, ValueError)
    assert f"frame {frame}" in str(err) and f"'s{failing}'" in str(err)
    # Failing at frame k in stage s takes about k + s + 1 seconds of work; nothing more runs after it.
    assert looptime <= frame + failing + 2
    assert sorted(tracker.closed) == ["s0", "s1", "s2", "source"]


@pytest.mark.looptime
async def test_an_error_in_the_source_surfaces_and_closes_the_stages() -> None:
    tracker = Tracker()

    async def broken() -> AsyncIterator[Frame]:
        yield make_frame(0)
        await asyncio.sleep(1)
        raise OSError("disk gone")

    stages = [FakeStage("a", tracker)]
    with pytest.raises(OSError, match="disk gone"):
        await drain(Pipeline(broken(), stages), tracker)
    assert tracker.closed == ["a"]


@pytest.mark.looptime
async def test_cancelling_the_consumer_closes_the_source_and_every_stage() -> None:
    tracker = Tracker()
    stages = [FakeStage(f"s{k}", tracker, delay=1.0) for k in range(3)]
    task = asyncio.create_task(drain(Pipeline(source(10_000, tracker), stages), tracker))
    await asyncio.sleep(10.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(tracker.closed) == ["s0", "s1", "s2", "source"]
    assert tracker.produced < 40  # bounded queues: the source was nowhere near the end
    for t in asyncio.all_tasks():
        assert not t.get_name().startswith("gifstream-"), f"task {t.get_name()} outlived the pipeline"


@pytest.mark.looptime
async def test_breaking_out_of_the_loop_early_shuts_everything_down() -> None:
    tracker = Tracker()
    stages = [FakeStage("a", tracker, delay=0.5)]
    got = []
    async with Pipeline(source(100, tracker), stages) as frames:
        async for frame in frames:
            got.append(frame.index)
            if frame.index == 4:
                break
    assert got == [0, 1, 2, 3, 4]
    assert sorted(tracker.closed) == ["a", "source"]


async def test_setup_failure_closes_the_stages_already_set_up() -> None:
    tracker = Tracker()

    class BadSetup(FakeStage):
        async def setup(self, ctx: RunContext) -> None:
            raise RuntimeError("no weights")

    good = FakeStage("good", tracker)
    src = source(3, tracker)
    with pytest.raises(StageError, match="'bad' failed at set-up/close: RuntimeError: no weights"):
        await drain(Pipeline(src, [good, BadSetup("bad", tracker)]), tracker)
    assert tracker.closed == ["good"]
    assert src.ag_frame is None  # closed: it can never run again


@pytest.mark.looptime
async def test_a_stage_that_reorders_frames_is_an_error() -> None:
    tracker = Tracker()

    class Reverser(FakeStage):
        async def process(self, batch: Sequence[Frame], previous: Frame | None) -> list[Frame]:
            return list(reversed(batch))

    with pytest.raises(StageError, match="returned after"):
        await drain(
            Pipeline(source(4, tracker), [Reverser("rev", tracker, max_batch=4)], config=RunnerConfig(queue_depth=4)),
            tracker,
        )


@pytest.mark.looptime
async def test_stats_count_frames_batches_and_busy_time_per_stage() -> None:
    tracker = Tracker()
    stages = [FakeStage("a", tracker, delay=0.5), FakeStage("b", tracker, delay=0.25, max_batch=2)]
    pipeline = Pipeline(source(6, tracker), stages, config=RunnerConfig(queue_depth=4, batch_timeout=0.0))
    await drain(pipeline, tracker)
    report = pipeline.stats.as_dict()
    assert report["frames"] == 6
    a, b = report["stages"]
    assert (a["name"], a["frames"], a["batches"]) == ("a", 6, 6)
    assert a["busy_s"] == pytest.approx(3.0, abs=0.05)
    assert b["frames"] == 6 and b["batches"] == len(stages[1].batches)


def test_invalid_runner_settings_are_refused() -> None:
    from gifstream.engine import ConfigError

    with pytest.raises(ConfigError, match="queue_depth"):
        RunnerConfig(queue_depth=0)
    with pytest.raises(ValueError, match="batch_size"):
        RunnerConfig(batch_size=0)
