"""Warping error in the right direction, its input/output pair, and TecoGAN's tOF."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import texture

from gifstream.engine.errors import InputError
from gifstream.metrics import output_warp_errors, tof, warp_error, warp_error_pair
from gifstream.motion import backward_warp, estimate_flow

DX, DY = 3, -2
MARGIN = 10  # interior: away from the border, where flow estimates and wrap-around are unreliable


def translated_pair(seed: int = 0, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    frame_t = texture(size, size, seed)
    return frame_t, np.roll(frame_t, (DY, DX), axis=(0, 1))  # content moves by (DX, DY)


def constant_flow(height: int, width: int, u: float, v: float) -> np.ndarray:
    flow = np.empty((height, width, 2), np.float32)
    flow[..., 0] = u
    flow[..., 1] = v
    return flow


def interior_mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error on [0, 1] values, averaged over channels, inside the margin."""
    inner = (slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
    return float(((a[inner] / 255.0 - b[inner] / 255.0) ** 2).mean())


# --- E_warp ------------------------------------------------------------------------------------


def test_backward_warp_with_estimated_flow_explains_the_motion() -> None:
    frame_t, frame_t1 = translated_pair()
    flow_fw = estimate_flow(frame_t, frame_t1)

    correct = interior_mse(frame_t, backward_warp(frame_t1, flow_fw))  # sample t+1 at x + F
    seed_direction = interior_mse(frame_t1, backward_warp(frame_t, flow_fw))  # sample t at x + F, compare to t+1

    assert correct < 1e-4
    assert seed_direction > 1e-2
    assert seed_direction > 100 * correct


def test_warp_error_is_zero_for_an_exact_translation() -> None:
    frame_t, frame_t1 = translated_pair()
    flow_fw = constant_flow(96, 96, DX, DY)
    flow_bw = constant_flow(96, 96, -DX, -DY)

    # Every pixel whose x + d stays in the frame is reproduced exactly; the rest are left out.
    assert warp_error(frame_t, frame_t1, flow_fw) < 1e-10
    assert warp_error(frame_t, frame_t1, flow_fw, flow_bw) < 1e-10
    # Flow in the wrong direction leaves a large error.
    assert warp_error(frame_t, frame_t1, -flow_fw) > 1e-2


def test_warp_error_averages_squared_error_over_channels_on_a_0_1_scale() -> None:
    frame_t = np.full((8, 8, 3), 100, np.uint8)
    frame_t1 = frame_t.copy()
    frame_t1[..., 0] += 51  # one channel off by 0.2
    zero = np.zeros((8, 8, 2), np.float32)
    assert warp_error(frame_t, frame_t1, zero) == pytest.approx(0.2**2 / 3, rel=1e-5)


def test_occluded_pixels_are_left_out_only_with_backward_flow() -> None:
    # A bright square moves 5 px right over a flat background, covering a strip of it.
    frame_t = np.full((40, 40, 3), 50, np.uint8)
    frame_t[10:20, 10:20] = 200
    frame_t1 = np.full((40, 40, 3), 50, np.uint8)
    frame_t1[10:20, 15:25] = 200
    flow_fw = np.zeros((40, 40, 2), np.float32)
    flow_fw[10:20, 10:20, 0] = 5
    flow_bw = np.zeros((40, 40, 2), np.float32)
    flow_bw[10:20, 15:25, 0] = -5

    # Without a mask the covered strip (50 in t, 200 in t+1 at the same place) counts: 50 of 1600 pixels.
    strip_share = 50 / 1600
    assert warp_error(frame_t, frame_t1, flow_fw) == pytest.approx(strip_share * (150 / 255) ** 2, rel=1e-5)
    # The occlusion mask removes it; every other pixel is explained by the flow.
    assert warp_error(frame_t, frame_t1, flow_fw, flow_bw) < 1e-10


def test_warp_error_pair_compares_output_with_input_on_the_input_flow() -> None:
    in_t, in_t1 = translated_pair(seed=3)
    flow_fw = estimate_flow(in_t, in_t1)
    flow_bw = estimate_flow(in_t1, in_t)

    same = warp_error_pair(in_t, in_t1, in_t, in_t1, flow_fw, flow_bw)
    assert same.output == same.input
    assert same.ratio == 1.0

    flicker = np.clip(in_t1.astype(np.int16) + 25, 0, 255).astype(np.uint8)  # the output brightens on t+1
    flickering = warp_error_pair(in_t, in_t1, in_t, flicker, flow_fw, flow_bw)
    assert flickering.input == same.input
    assert flickering.ratio > 10

    # A 2× output is brought to the input's geometry first; pixel repetition changes nothing.
    up = [np.repeat(np.repeat(f, 2, axis=0), 2, axis=1) for f in (in_t, in_t1)]
    doubled = warp_error_pair(in_t, in_t1, *up, flow_fw, flow_bw)
    assert doubled.output == pytest.approx(same.input)


def test_output_warp_errors_match_the_output_side_of_each_pair() -> None:
    in_t, in_t1 = translated_pair(seed=5)
    flow_fw = estimate_flow(in_t, in_t1)
    flow_bw = estimate_flow(in_t1, in_t)
    flicker = np.clip(in_t1.astype(np.int16) + 25, 0, 255).astype(np.uint8)
    doubled = [np.repeat(np.repeat(f, 2, axis=0), 2, axis=1) for f in (in_t, flicker)]

    errors = output_warp_errors(in_t, [in_t, doubled[0]], [in_t1, doubled[1]], flow_fw, flow_bw)

    assert errors[0] == warp_error_pair(in_t, in_t1, in_t, in_t1, flow_fw, flow_bw).output
    assert errors[1] == warp_error_pair(in_t, in_t1, *doubled, flow_fw, flow_bw).output
    assert errors[1] > 10 * errors[0]
    with pytest.raises(InputError, match="2 outputs at t but 1 at t"):
        output_warp_errors(in_t, [in_t, in_t], [in_t1], flow_fw, flow_bw)
    with pytest.raises(InputError, match="aspect ratios differ"):
        output_warp_errors(in_t, [in_t[:, :50]], [in_t1[:, :50]], flow_fw)


def test_warp_error_rejects_mismatched_inputs() -> None:
    frame = np.zeros((10, 12, 3), np.uint8)
    with pytest.raises(InputError, match="flow_fw is 12x9 but the frames are 12x10"):
        warp_error(frame, frame, np.zeros((9, 12, 2), np.float32))
    with pytest.raises(InputError, match="frame_t and frame_t1 differ in size"):
        warp_error(frame, np.zeros((10, 13, 3), np.uint8), np.zeros((10, 12, 2), np.float32))


def test_warp_error_is_nan_when_no_pixel_is_reliable() -> None:
    frame = np.zeros((6, 6, 3), np.uint8)
    assert math.isnan(warp_error(frame, frame, constant_flow(6, 6, 10.0, 0.0)))


# --- tOF ---------------------------------------------------------------------------------------


def test_tof_is_zero_when_the_output_moves_like_the_input() -> None:
    prev, cur = translated_pair(seed=4, size=64)
    assert tof(prev, cur, prev, cur) == 0.0


def test_tof_grows_when_the_output_motion_differs() -> None:
    prev, cur = translated_pair(seed=4, size=64)
    frozen = tof(prev, cur, prev, prev)  # the output stands still while the input moves by (3, -2)
    assert frozen == pytest.approx(math.hypot(DX, DY), abs=0.3)
    other = texture(64, 64, seed=9)
    assert tof(prev, cur, other, other) == pytest.approx(frozen, abs=0.01)  # any static output: the same difference


def test_tof_brings_outputs_to_the_input_geometry() -> None:
    prev, cur = translated_pair(seed=4, size=64)
    out_prev, out_cur = (np.repeat(np.repeat(f, 2, axis=0), 2, axis=1) for f in (prev, cur))
    assert tof(prev, cur, out_prev, out_cur) == 0.0
    with pytest.raises(InputError, match="aspect ratios differ"):
        tof(prev, cur, np.repeat(prev, 2, axis=1), np.repeat(cur, 2, axis=1))
