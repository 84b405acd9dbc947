"""The compiled E_warp pass against the same definition built from the public numpy warp functions."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import COMPILED_SIGNATURES, numpy_backward_warp, run_python, texture

from gifstream.engine.errors import InputError
from gifstream.metrics import warp_error, warp_error_pair
from gifstream.metrics.warp_kernel import masked_warp_sums
from gifstream.motion import backward_warp, inside_frame, motion_boundaries
from gifstream.motion.warp import inconsistent_with


def reference_sums(
    frames_t: list[np.ndarray], frames_t1: list[np.ndarray], flow_fw: np.ndarray, flow_bw: np.ndarray | None
) -> tuple[list[float], int]:
    """Lai et al.'s masked warp error, one numpy step at a time: warp t+1 back, mask, sum squared [0, 1] errors.

    The warps are the plain numpy reference, so the compiled sampler is not checked against itself.
    """
    valid = inside_frame(flow_fw)
    if flow_bw is not None:
        backward_at_t = numpy_backward_warp(flow_bw, flow_fw)
        valid &= ~(inconsistent_with(flow_fw, backward_at_t) | motion_boundaries(flow_fw))
    sums = []
    for frame_t, frame_t1 in zip(frames_t, frames_t1, strict=True):
        predicted = numpy_backward_warp(frame_t1, flow_fw) / np.float32(255)
        difference = frame_t.astype(np.float32) / np.float32(255) - predicted
        sums.append(float((difference**2).sum(axis=2)[valid].astype(np.float64).sum()))
    return sums, int(np.count_nonzero(valid))


def smooth_flow(height: int, width: int, seed: int, reach: float) -> np.ndarray:
    """A random smooth flow reaching ``reach`` pixels: some pixels land outside the frame, some fold over."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-reach, reach, (max(2, height // 8), max(2, width // 8), 2)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def moving_scene(
    height: int, width: int, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
    frames = [texture(height, width, seed + i) for i in range(4)]
    flow_fw = smooth_flow(height, width, seed, reach=6.0)
    # A backward flow that undoes the forward one in most places and disagrees in others (occlusions).
    flow_bw = -backward_warp(flow_fw, -flow_fw) + smooth_flow(height, width, seed + 1, reach=1.5)
    return frames[:2], frames[2:], flow_fw, flow_bw


@pytest.mark.parametrize(("height", "width", "seed"), [(48, 64, 0), (37, 91, 1), (1, 30, 2), (25, 1, 3)])
@pytest.mark.parametrize("with_backward", [True, False])
def test_the_compiled_pass_keeps_the_same_pixels_and_sums(
    height: int, width: int, seed: int, with_backward: bool
) -> None:
    frames_t, frames_t1, flow_fw, flow_bw = moving_scene(height, width, seed)
    backward = flow_bw if with_backward else None

    sums, count = masked_warp_sums(np.stack(frames_t), np.stack(frames_t1), flow_fw, backward)
    expected_sums, expected_count = reference_sums(frames_t, frames_t1, flow_fw, backward)

    assert count == expected_count
    np.testing.assert_allclose(sums, expected_sums, rtol=1e-12, atol=0)
    if with_backward and height > 1 and width > 1:
        assert 0 < count < np.count_nonzero(inside_frame(flow_fw))  # the occlusion mask took pixels out


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # numpy reference, NaN flow
def test_non_finite_flow_marks_only_its_own_pixels_unreliable() -> None:
    frames_t, frames_t1, flow_fw, flow_bw = moving_scene(32, 40, 5)
    flow_fw[3, 4] = np.nan
    flow_fw[10, 20, 0] = np.inf
    flow_bw[7, 7] = np.nan

    sums, count = masked_warp_sums(np.stack(frames_t), np.stack(frames_t1), flow_fw, flow_bw)
    expected_sums, expected_count = reference_sums(frames_t, frames_t1, flow_fw, flow_bw)

    assert count == expected_count
    assert np.isfinite(sums).all()
    np.testing.assert_allclose(sums, expected_sums, rtol=1e-12)


def test_warp_error_is_the_mean_of_the_reliable_pixels_and_channels() -> None:
    frames_t, frames_t1, flow_fw, flow_bw = moving_scene(40, 56, 7)
    expected_sums, expected_count = reference_sums(frames_t, frames_t1, flow_fw, flow_bw)

    pair = warp_error_pair(frames_t[0], frames_t1[0], frames_t[1], frames_t1[1], flow_fw, flow_bw)

    assert pair.input == pytest.approx(expected_sums[0] / (3 * expected_count), rel=1e-12)
    assert pair.output == pytest.approx(expected_sums[1] / (3 * expected_count), rel=1e-12)
    assert warp_error(frames_t[1], frames_t1[1], flow_fw, flow_bw) == pair.output


def test_no_reliable_pixel_gives_nan_for_every_image() -> None:
    frames = [texture(8, 8, 0), texture(8, 8, 1)]
    flow = np.full((8, 8, 2), 20.0, np.float32)
    pair = warp_error_pair(frames[0], frames[1], frames[0], frames[1], flow, -flow)
    assert math.isnan(pair.input)
    assert math.isnan(pair.output)


def test_the_compiled_pass_refuses_shapes_it_would_read_past() -> None:
    frames = np.zeros((1, 8, 10, 3), np.uint8)
    flow = np.zeros((8, 10, 2), np.float32)
    with pytest.raises(InputError, match="flow_bw must be"):
        masked_warp_sums(frames, frames, flow, np.zeros((8, 9, 2), np.float32))
    with pytest.raises(InputError, match="frames_t1 must match"):
        masked_warp_sums(frames, np.zeros((1, 8, 11, 3), np.uint8), flow, None)
    with pytest.raises(InputError, match="frames_t must be"):
        masked_warp_sums(frames.astype(np.float32), frames, flow, None)
    with pytest.raises(InputError, match="flow_fw must be"):
        masked_warp_sums(frames, frames, flow[:, :5], None)


def test_the_stages_warm_up_leaves_nothing_to_compile_for_real_frames(tmp_path: Path) -> None:
    """What the metrics and stabilise stages run per frame uses only argument types their set-up compiled."""
    script = COMPILED_SIGNATURES + (
        "import numpy as np\n"
        "from gifstream.metrics import output_warp_errors, warp_error_pair, warp_kernel\n"
        "from gifstream.motion import warp\n"
        "from gifstream.stabilize import blend\n"
        "from gifstream.stabilize.blend import StabilizeConfig, stabilize_frame\n"
        "warp.prepare(); warp_kernel.prepare(); blend.prepare()\n"
        "warmed = signatures(warp, warp_kernel, blend)\n"
        "rng = np.random.default_rng(0)\n"
        "a = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)\n"
        "b = np.roll(a, 1, axis=1)  # the picture moves one pixel right: no scene cut, so the blend runs\n"
        "big_a, big_b = (np.repeat(np.repeat(f, 2, 0), 2, 1) for f in (a, b))\n"
        "fw, bw = np.zeros((2, 30, 40, 2), np.float32)\n"
        "fw[..., 0], bw[..., 0] = 1, -1\n"
        "warp_error_pair(a, b, big_a, big_b, fw, bw)\n"
        "output_warp_errors(a, [big_a, big_a], [big_b, big_b], fw, bw)\n"
        "assert stabilize_frame(big_b, big_a, a, b, (fw, bw), StabilizeConfig()).blend > 0\n"
        "assert_nothing_new(warmed, warp, warp_kernel, blend)\n"
    )
    run_python(script, tmp_path)
