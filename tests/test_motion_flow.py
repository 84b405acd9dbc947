"""Dense flow with OpenCV DIS: accuracy on Middlebury ground truth, direction convention, input checks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import texture

from gifstream.engine.errors import ConfigError, InputError
from gifstream.motion import DisFlow, estimate_flow, resize_flow

UNKNOWN_FLOW = 1e9  # Middlebury marks pixels without ground truth with |value| > 1e9


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def endpoint_rmse(flow: np.ndarray, truth: np.ndarray) -> float:
    """RMSE of the endpoint error over pixels with known ground truth (OpenCV's calcRMSE)."""
    known = (np.abs(truth) < UNKNOWN_FLOW).all(axis=2)
    return float(np.sqrt(((flow - truth)[known] ** 2).sum(axis=1).mean()))


@pytest.mark.shared
def test_dis_medium_meets_opencv_bound_on_rubberwhale(shared_testdata: Path) -> None:
    folder = shared_testdata / "flow-gt" / "middlebury_rubberwhale"
    first = read_rgb(folder / "RubberWhale1.png")
    second = read_rgb(folder / "RubberWhale2.png")
    truth = cv2.readOpticalFlow(str(folder / "RubberWhale.flo"))
    assert truth.shape == (388, 584, 2)
    # The all-zero flow scores 1.346 against this ground truth (SOURCES.md): checks the reader and the RMSE.
    assert endpoint_rmse(np.zeros_like(truth), truth) == pytest.approx(1.346, abs=5e-4)

    flow = estimate_flow(first, second, "dis", preset="medium")

    assert flow.shape == (388, 584, 2)
    assert flow.dtype == np.float32
    assert endpoint_rmse(flow, truth) <= 0.49  # OpenCV's own bound for PRESET_MEDIUM


@pytest.mark.parametrize("preset", ["ultrafast", "fast", "medium"])
def test_dis_flow_points_from_a_to_b(preset: str) -> None:
    frame_a = texture(96, 96)
    dx, dy = 3, -2
    frame_b = np.roll(frame_a, (dy, dx), axis=(0, 1))  # content moves by (+3, -2): a(x) = b(x + (3, -2))

    flow = estimate_flow(frame_a, frame_b, preset=preset)

    interior = flow[12:-12, 12:-12].reshape(-1, 2)
    assert np.median(interior[:, 0]) == pytest.approx(dx, abs=0.1)
    assert np.median(interior[:, 1]) == pytest.approx(dy, abs=0.1)


def test_disflow_pairs_match_single_calls() -> None:
    frames = [texture(48, 64, seed) for seed in range(3)]
    estimator = DisFlow("fast")

    flows = estimator.pairs(frames[:2], frames[1:])

    assert len(flows) == 2
    for flow, a, b in zip(flows, frames[:2], frames[1:], strict=True):
        np.testing.assert_array_equal(flow, estimator(a, b))


def test_resize_flow_scales_vectors_with_the_field() -> None:
    flow = np.zeros((10, 20, 2), np.float32)
    flow[..., 0] = 2.0
    flow[..., 1] = -1.0

    bigger = resize_flow(flow, width=60, height=20)

    assert bigger.shape == (20, 60, 2)
    np.testing.assert_allclose(bigger[..., 0], 6.0)  # x grew 3×
    np.testing.assert_allclose(bigger[..., 1], -2.0)  # y grew 2×


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8), "uint8"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8), "differ in size: 8x8 vs 9x8"),
        ([[0]], np.zeros((8, 8, 3), np.uint8), "numpy array"),
    ],
)
def test_estimate_flow_rejects_bad_frames(a: object, b: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        estimate_flow(a, b)  # type: ignore[arg-type]


def test_estimate_flow_rejects_unknown_backend_and_preset() -> None:
    frame = texture(16, 16)
    with pytest.raises(ConfigError, match="unknown flow backend 'farneback'"):
        estimate_flow(frame, frame, "farneback")
    with pytest.raises(ConfigError, match="unknown DIS preset 'slow'"):
        estimate_flow(frame, frame, preset="slow")
    with pytest.raises(ConfigError, match="weights"):
        estimate_flow(frame, frame, "raft_small")
