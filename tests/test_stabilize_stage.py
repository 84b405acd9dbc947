"""The stabilise stage's contract: flows from meta, the previous *stabilised* output, meta and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from gifstream.engine import ConfigError, Frame, Pipeline, StageError
from gifstream.stages import create
from gifstream.stages.stabilize import StabilizeConfig, StabilizeStage


def flat(value: int, height: int = 12, width: int = 16) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def zero_flows(height: int = 12, width: int = 16) -> tuple[np.ndarray, np.ndarray]:
    zero = np.zeros((height, width, 2), np.float32)
    return zero, zero.copy()


def static_frames(restored_values: list[int], scale: int = 1) -> list[Frame]:
    """A still input (grey 90) whose restored frames are flat ``restored_values``, with zero flows attached."""
    frames = []
    for index, value in enumerate(restored_values):
        meta = {} if index == 0 else {"flow": zero_flows()}
        frames.append(Frame(index, flat(value, 12 * scale, 16 * scale), source=flat(90), meta=meta))
    return frames


async def run_stage(stage: StabilizeStage, frames: list[Frame]) -> list[Frame]:
    async def source() -> AsyncIterator[Frame]:
        for frame in frames:
            yield frame

    async with Pipeline(source(), [stage]) as stream:
        return [frame async for frame in stream]


async def test_each_frame_is_blended_with_the_previous_stabilised_output() -> None:
    stage = StabilizeStage(StabilizeConfig(strength=0.6))

    out = await run_stage(stage, static_frames([100, 110, 120]))

    # 0.4 * 110 + 0.6 * 100 = 104; then 0.4 * 120 + 0.6 * 104 = 110.4. Blending with the
    # restored frame 1 (110) instead of its stabilised output would give 114.
    assert [int(frame.as_array()[5, 5, 0]) for frame in out] == [100, 104, 110]
    assert out[0].meta["stabilize"] == {"blend": 0.0, "cut": False, "cut_score": 0.0}
    assert out[1].meta["stabilize"]["blend"] == pytest.approx(0.6, abs=1e-3)
    assert out[2].meta["stabilize"]["cut"] is False


async def test_upscaled_frames_are_blended_with_input_geometry_flows() -> None:
    stage = StabilizeStage(StabilizeConfig(strength=0.5))

    out = await run_stage(stage, static_frames([100, 120], scale=2))

    assert out[1].as_array().shape == (24, 32, 3)
    assert np.all(out[1].as_array() == 110)


async def test_a_frame_after_the_first_without_flow_needs_the_flow_stage() -> None:
    frames = static_frames([100, 110])
    del frames[1].meta["flow"]

    with pytest.raises(StageError) as caught:
        await run_stage(StabilizeStage(), frames)

    assert isinstance(caught.value.__cause__, ConfigError)
    assert "frame 1 has none" in str(caught.value) and "--flow" in str(caught.value)


def test_the_input_is_kept_when_no_stage_before_kept_it() -> None:
    stage = StabilizeStage()
    frame = Frame(0, flat(70))

    stage.process_sync([frame], None)

    assert frame.source is not None and np.all(frame.source == 70)


def test_a_cut_is_counted_and_passed_through() -> None:
    stage = StabilizeStage(StabilizeConfig(cut_threshold=20))
    previous = Frame(0, flat(200), source=flat(10))
    frame = Frame(1, flat(60), source=flat(240), meta={"flow": zero_flows()})  # input jumps by 230 levels

    stage.process_sync([frame], previous)

    assert frame.meta["stabilize"]["cut"] is True
    assert frame.meta["stabilize"]["cut_score"] == pytest.approx(230, abs=0.5)
    assert np.all(frame.as_array() == 60)
    assert stage.describe()["cuts_detected"] == 1


def test_describe_reports_the_settings() -> None:
    stage = StabilizeStage(StabilizeConfig(strength=0.4, sigma=5.0, cut_threshold=30.0))

    details = stage.describe()
    settings = {k: details[k] for k in ("strength", "sigma", "cut_threshold", "cuts_detected")}
    assert settings == {"strength": 0.4, "sigma": 5.0, "cut_threshold": 30.0, "cuts_detected": 0}
    assert details["e_warp_before"]["count"] == details["e_warp_after"]["count"] == 0
    assert (stage.name, stage.needs_previous) == ("stabilize", True)


def test_the_registry_builds_the_stage_from_options() -> None:
    stage = create("stabilize", strength=0.3)

    assert isinstance(stage, StabilizeStage)
    assert stage.config == StabilizeConfig(strength=0.3)


def test_invalid_options_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="strength must be in"):
        StabilizeStage(strength=-0.1)
