"""Flow and metrics stages on a frame that repeats the one before it (a GIF holding a picture)."""

from __future__ import annotations

import numpy as np
import pytest

from gifstream.engine import Frame, RunContext
from gifstream.stages.analysis import FlowConfig, FlowStage, MetricsConfig, MetricsStage


def texture(shift: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (48, 72, 3), dtype=np.uint8)
    base = np.repeat(np.repeat(base[::4, ::4], 4, 0), 4, 1)[:48, :72]
    return np.ascontiguousarray(np.roll(base, shift, axis=1))


class CountingEstimator:
    """Stands in for DIS: records how many pairs it was asked for, returns a constant 1-pixel flow."""

    def __init__(self) -> None:
        self.pairs = 0

    def both_ways(self, earlier: list[np.ndarray], later: list[np.ndarray]) -> tuple[list, list]:
        self.pairs += len(earlier)
        ones = [np.ones((*a.shape[:2], 2), np.float32) for a in earlier]
        return ones, [-f for f in ones]


def test_a_repeated_frame_has_zero_flow_and_costs_no_estimation() -> None:
    stage = FlowStage(FlowConfig(backend="dis"))
    stage.setup_sync(RunContext())
    stage._estimator = CountingEstimator()
    first, moved, held = Frame(0, texture(0)), Frame(1, texture(2)), Frame(2, texture(2))

    stage.process_sync([first, moved, held], None)

    assert stage._estimator.pairs == 1  # only the pair that moved
    assert "flow" not in first.meta
    assert np.all(moved.meta["flow"][0] == 1)
    forward, backward = held.meta["flow"]
    assert forward.shape == (48, 72, 2) and not forward.any() and not backward.any()


def test_a_repeated_frame_keeps_the_fidelity_numbers_and_has_no_warp_error() -> None:
    stage = MetricsStage(MetricsConfig(metrics=("psnr", "ssim", "e_warp")))
    stage.setup_sync(RunContext())
    source = texture(0) // 2  # at most 127, so adding 7 never clips
    output = np.repeat(np.repeat(source, 2, 0), 2, 1) + np.uint8(7)
    first = Frame(0, output, source=source)
    held = Frame(1, output.copy(), source=source.copy())
    zero = np.zeros((48, 72, 2), np.float32)
    held.meta["flow"] = (zero, zero)

    stage.process_sync([first, held], None)

    before, after = first.meta["metrics"], held.meta["metrics"]
    assert after["psnr"] == before["psnr"] == pytest.approx(10 * np.log10(255**2 / 49))  # every pixel off by 7
    assert after["ssim"] == before["ssim"]
    assert after["e_warp"] == after["e_warp_input"] == 0.0 and after["e_warp_ratio"] == 1.0
    stage.close_sync()
