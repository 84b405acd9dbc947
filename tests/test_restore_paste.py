"""GFPGAN's paste-back as a stage of its own: same frames as restoring inline, on another thread, overlapped."""

from __future__ import annotations

import functools
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import pytest

from gifstream.api import build_stages
from gifstream.engine import Frame, Pipeline, RunnerConfig, Stage
from gifstream.options import ProcessOptions
from gifstream.restore.base import PendingPaste, Restored, expand_repeats, repeats_previous
from gifstream.stages import restore as restore_module
from gifstream.stages.restore import PasteStage, RestoreConfig, RestoreStage


class TwoStepRestorer:
    """Doubles each frame (nearest) in ``restore_faces`` and inverts it in the paste-back; logs who did what."""

    name = "two-step"

    def __init__(self, paste_waits_for: dict[int, threading.Event] | None = None) -> None:
        self.log: list[tuple[str, int, str]] = []
        self.restored_levels: list[int] = []
        self.paste_waits_for = paste_waits_for or {}

    def restore_faces(self, frames: Sequence[np.ndarray]) -> list[PendingPaste]:
        pending = []
        for frame in frames:
            level = int(frame[0, 0, 0])
            self.log.append(("restore", level, threading.current_thread().name))
            self.restored_levels.append(level)
            pending.append(PendingPaste(functools.partial(self._paste, frame), faces=level % 3))
        return pending

    def _paste(self, frame: np.ndarray) -> Restored:
        level = int(frame[0, 0, 0])
        gate = self.paste_waits_for.get(level)
        if gate is not None and not gate.wait(timeout=20):
            raise TimeoutError(f"the paste-back of level {level} never saw the next frame being restored")
        self.log.append(("paste", level, threading.current_thread().name))
        return Restored(255 - frame.repeat(2, axis=0).repeat(2, axis=1), level % 3)

    def restore(self, frames: Sequence[np.ndarray]) -> list[Restored]:
        repeats = repeats_previous(frames)
        fresh = [frame for frame, repeated in zip(frames, repeats, strict=True) if not repeated]
        return expand_repeats([item.finish() for item in self.restore_faces(fresh)], repeats)

    def restore_batch(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [restored.pixels for restored in self.restore(frames)]

    def describe(self) -> dict[str, Any]:
        return {"restorer": self.name}


@pytest.fixture
def use_restorer(monkeypatch: pytest.MonkeyPatch):
    def install(restorer: TwoStepRestorer) -> None:
        monkeypatch.setattr(restore_module, "select_restorer", lambda config: ("two-step", "test"))
        monkeypatch.setattr(restore_module, "build_restorer", lambda name, config, device: restorer)

    return install


LEVELS = [10, 10, 20, 30, 30, 30, 40, 41]  # repeats inside and across batches


def frames_of(levels: list[int]) -> list[Frame]:
    frames = []
    for index, level in enumerate(levels):
        alpha = np.full((6, 8), 255, np.uint8)
        alpha[:, : index % 4] = 0
        frames.append(Frame(index, np.full((6, 8, 3), level, np.uint8), alpha=alpha if index % 2 else None))
    return frames


async def source(frames: list[Frame]) -> AsyncIterator[Frame]:
    for frame in frames:
        yield frame


async def run(stages: list[Stage], frames: list[Frame], batch: int) -> list[Frame]:
    async with Pipeline(source(frames), stages, config=RunnerConfig(batch_size=batch)) as out:
        return [frame async for frame in out]


@pytest.mark.parametrize("batch", [1, 3])
async def test_pasting_in_a_stage_of_its_own_gives_the_inline_frames(use_restorer, batch: int) -> None:
    inline_restorer, split_restorer = TwoStepRestorer(), TwoStepRestorer()
    use_restorer(inline_restorer)
    inline = await run([RestoreStage(RestoreConfig(max_batch=batch))], frames_of(LEVELS), batch)
    use_restorer(split_restorer)
    split_stages: list[Stage] = [RestoreStage(RestoreConfig(max_batch=batch, defer_paste=True)), PasteStage(batch)]
    split = await run(split_stages, frames_of(LEVELS), batch)

    assert [f.index for f in split] == list(range(len(LEVELS)))
    for ours, theirs in zip(split, inline, strict=True):
        assert ours.pixels.shape == (12, 16, 3)
        assert np.array_equal(ours.pixels, theirs.pixels)
        assert (ours.alpha is None) == (theirs.alpha is None)
        assert ours.alpha is None or np.array_equal(ours.alpha, theirs.alpha)
        assert ours.meta["restore"] == theirs.meta["restore"]
        assert "paste" not in ours.meta
    assert [f.meta["restore"]["reused"] for f in split] == [False, True, False, False, True, True, False, False]
    # Every distinct picture restored once, in both ways of running.
    assert split_restorer.restored_levels == inline_restorer.restored_levels == [10, 20, 30, 40, 41]
    threads = {(step, name) for step, _, name in split_restorer.log}
    assert threads == {("restore", "gifstream-restore"), ("paste", "gifstream-paste")}
    assert split_stages[1].describe() == {"pasted": 5}


async def test_frame_n_is_pasted_while_frame_n_plus_1_is_restored(use_restorer) -> None:
    next_restored = threading.Event()
    restorer = TwoStepRestorer(paste_waits_for={20: next_restored})
    original = restorer.restore_faces

    def restore_faces(frames: Sequence[np.ndarray]) -> list[PendingPaste]:
        pending = original(frames)
        if any(int(frame[0, 0, 0]) == 30 for frame in frames):
            next_restored.set()
        return pending

    restorer.restore_faces = restore_faces  # type: ignore[method-assign]
    use_restorer(restorer)
    stages: list[Stage] = [RestoreStage(RestoreConfig(defer_paste=True)), PasteStage()]

    # Frame 1's paste-back waits until frame 2 has been restored: without the overlap it would time out.
    out = await run(stages, frames_of([10, 20, 30, 40]), batch=1)

    assert [int(f.pixels[0, 0, 0]) for f in out] == [245, 235, 225, 215]
    order = [(step, level) for step, level, _ in restorer.log]
    assert order.index(("restore", 30)) < order.index(("paste", 20))


async def test_restorers_without_a_separate_paste_back_finish_in_the_restore_stage() -> None:
    stages: list[Stage] = [RestoreStage(RestoreConfig(restorer="none", defer_paste=True)), PasteStage()]

    [out] = await run(stages, frames_of([50]), batch=1)

    assert np.array_equal(out.pixels, np.full((12, 16, 3), 50, np.uint8))
    assert "paste" not in out.meta and stages[1].describe() == {"pasted": 0}


@pytest.mark.parametrize(
    ("restorer", "names"),
    [
        ("gfpgan", ["restore", "paste", "flow", "metrics"]),
        ("classic", ["restore", "flow", "metrics"]),
        ("auto", ["restore", "flow", "metrics"]),  # no GFPGAN weights cached in the tests' private cache
    ],
)
def test_gfpgan_runs_get_a_paste_stage(restorer: str, names: list[str]) -> None:
    stages = build_stages(ProcessOptions(restorer=restorer))

    assert [stage.name for stage in stages] == names
    restore_stage = stages[0]
    assert isinstance(restore_stage, RestoreStage)
    assert restore_stage.config.defer_paste is ("paste" in names)
