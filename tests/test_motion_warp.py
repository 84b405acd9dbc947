"""Backward warping (direction, sub-pixel accuracy, numpy/torch) and Lai et al.'s occlusion mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import numpy_backward_warp, texture

from gifstream.engine.errors import InputError
from gifstream.motion import (
    backward_warp,
    estimate_flow,
    forward_backward_inconsistent,
    inside_frame,
    motion_boundaries,
    occlusion_mask,
)
from gifstream.motion.warp import FlowSampler


def constant_flow(height: int, width: int, u: float, v: float) -> np.ndarray:
    flow = np.empty((height, width, 2), np.float32)
    flow[..., 0] = u
    flow[..., 1] = v
    return flow


# --- backward_warp -----------------------------------------------------------------------------


def test_backward_warp_predicts_frame_t_from_frame_t1() -> None:
    frame_t = texture(40, 50)
    dx, dy = 4, 3
    frame_t1 = np.roll(frame_t, (dy, dx), axis=(0, 1))  # frame_t1(x + d) = frame_t(x)
    flow = constant_flow(40, 50, dx, dy)  # F(t→t+1)

    predicted_t = backward_warp(frame_t1, flow)

    assert predicted_t.dtype == np.float32
    assert predicted_t.shape == frame_t.shape
    # Every pixel whose x + d is in the frame reads exactly frame_t(x).
    np.testing.assert_allclose(predicted_t[: 40 - dy, : 50 - dx], frame_t[: 40 - dy, : 50 - dx], atol=1e-3)


def test_backward_warp_is_exact_on_a_linear_ramp_at_subpixel_offsets() -> None:
    # Bilinear interpolation reproduces a linear function exactly, so the
    # expected values come from the formula, not from a sampler.
    ys, xs = np.mgrid[0:30, 0:40].astype(np.float32)
    ramp = 2.0 * xs + 3.0 * ys + 5.0
    u, v = 0.3, -0.7

    warped = backward_warp(ramp, constant_flow(30, 40, u, v))

    expected = 2.0 * (xs + u) + 3.0 * (ys + v) + 5.0
    np.testing.assert_allclose(warped[1:-1, 1:-1], expected[1:-1, 1:-1], atol=1e-4)
    # Outside the frame the border pixel is read: row 0 samples y = -0.7 → clamped to 0.
    np.testing.assert_allclose(warped[0, 1:-1], 2.0 * (xs[0, 1:-1] + u) + 5.0, atol=1e-4)


def test_backward_warp_tensor_batch_matches_numpy() -> None:
    images = [texture(20, 24, seed).astype(np.float32) for seed in range(2)]
    flows = [constant_flow(20, 24, 1.5, -0.25), constant_flow(20, 24, -2.0, 0.5)]
    image_t = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    flow_t = torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)

    warped = backward_warp(image_t, flow_t)

    assert isinstance(warped, torch.Tensor)
    assert warped.shape == (2, 3, 20, 24)
    assert warped.device == image_t.device
    for i in range(2):
        np.testing.assert_allclose(warped[i].permute(1, 2, 0).numpy(), backward_warp(images[i], flows[i]), atol=1e-4)


@pytest.mark.parametrize(
    ("image", "what"),
    [
        (texture(37, 53, 1), "uint8 RGB"),
        (texture(37, 53, 2)[..., 0], "uint8 grey (H, W)"),
        (np.random.default_rng(3).normal(0, 50, (37, 53, 2)).astype(np.float32), "float32 flow-like"),
        (np.random.default_rng(4).normal(0, 50, (37, 53, 4)), "float64, 4 channels"),
        (np.random.default_rng(6).normal(0, 50, (37, 53, 3)).astype(np.float16), "float16"),
        (np.random.default_rng(7).integers(-30000, 30000, (37, 53, 3), dtype=np.int16), "int16"),
        (np.random.default_rng(8).random((37, 53)) > 0.5, "bool mask"),
        (texture(53, 37, 5).transpose(1, 0, 2), "non-contiguous view"),
    ],
)
def test_the_compiled_sampler_matches_the_numpy_reference_to_the_bit(image: np.ndarray, what: str) -> None:
    rng = np.random.default_rng(0)
    flow = rng.uniform(-60, 60, (37, 53, 2)).astype(np.float32)  # far reads, clamped at every border
    flow[::7, ::5] = rng.uniform(-1, 1, (6, 11, 2))  # sub-pixel reads
    flow[3, 4] = (np.nan, 0.0)
    flow[5, 6] = (0.0, np.inf)
    flow[7, 8] = (-np.inf, np.nan)

    expected = numpy_backward_warp(image, flow)
    warped = backward_warp(image, flow)
    planes = FlowSampler(flow).warp_planes(image)

    np.testing.assert_array_equal(warped, expected, err_msg=what)
    np.testing.assert_array_equal(planes, np.moveaxis(expected.reshape(37, 53, -1), 2, 0), err_msg=what)
    assert np.isnan(warped[3, 4]).all() and np.isnan(warped[7, 8]).all()
    assert np.isfinite(warped[5, 6]).all()  # an infinite flow reads the border


def test_backward_warp_rejects_mismatched_flow() -> None:
    with pytest.raises(InputError, match=r"flow is 9x8 but the frames are 10x8"):
        backward_warp(np.zeros((8, 10, 3), np.uint8), np.zeros((8, 9, 2), np.float32))
    with pytest.raises(InputError, match=r"\(H, W, 2\)"):
        backward_warp(np.zeros((8, 10, 3), np.uint8), np.zeros((8, 10, 3), np.float32))
    with pytest.raises(InputError, match=r"\(2, 2, 8, 10\)"):
        backward_warp(torch.zeros(2, 3, 8, 10), torch.zeros(1, 2, 8, 10))


def test_inside_frame_marks_samples_that_leave_the_frame() -> None:
    valid = inside_frame(constant_flow(5, 6, 2.0, -1.0))
    expected = np.zeros((5, 6), bool)
    expected[1:, :4] = True  # x + 2 ≤ 5 and y − 1 ≥ 0
    np.testing.assert_array_equal(valid, expected)


# --- occlusion: hand-made fields against the thresholds ---------------------------------------


@pytest.mark.parametrize(
    ("backward_u", "occluded"),
    [
        (1.0, True),  # |0 + 1|² = 1 > 0.01·1 + 0.5
        (0.72, True),  # 0.5184 > 0.505184
        (0.71, False),  # 0.5041 < 0.505041
    ],
)
def test_forward_backward_absolute_threshold(backward_u: float, occluded: bool) -> None:
    forward = constant_flow(4, 5, 0.0, 0.0)
    backward = constant_flow(4, 5, backward_u, 0.0)
    np.testing.assert_array_equal(forward_backward_inconsistent(forward, backward), np.full((4, 5), occluded))


@pytest.mark.parametrize(
    ("error", "occluded"),
    [
        (1.5, True),  # 2.25 > 0.01·(100 + 8.5²) + 0.5 = 2.2225
        (1.4, False),  # 1.96 < 0.01·(100 + 8.6²) + 0.5 = 2.2396: the relative term tolerates it
    ],
)
def test_forward_backward_relative_threshold(error: float, occluded: bool) -> None:
    forward = constant_flow(4, 5, 10.0, 0.0)
    backward = constant_flow(4, 5, -10.0 + error, 0.0)
    np.testing.assert_array_equal(forward_backward_inconsistent(forward, backward), np.full((4, 5), occluded))


def test_consistent_translation_is_not_occluded() -> None:
    forward = constant_flow(6, 7, 1.0, -2.0)
    backward = constant_flow(6, 7, -1.0, 2.0)
    assert not occlusion_mask(forward, backward).any()


@pytest.mark.parametrize(
    ("left", "right", "boundary"),
    [
        (0.0, 0.05, True),  # step² = 0.0025 > 0.01·0 + 0.002
        (0.0, 0.04, False),  # 0.0016 < 0.002
        (1.0, 1.05, False),  # 0.0025 < 0.01·1 + 0.002: the relative term tolerates it on moving pixels
        (1.0, 1.2, True),  # 0.04 > 0.012
    ],
)
def test_motion_boundary_thresholds(left: float, right: float, boundary: bool) -> None:
    flow = constant_flow(3, 4, left, 0.0)
    flow[:, 2:, 0] = right
    expected = np.zeros((3, 4), bool)
    # Forward differences f(x) − f(x+1): only column 1 sees the step.
    expected[:, 1] = boundary
    np.testing.assert_array_equal(motion_boundaries(flow), expected)


def test_motion_boundary_uses_both_axes_and_both_components() -> None:
    flow = np.zeros((4, 4, 2), np.float32)
    flow[2:, :, 1] = 0.05  # v steps between rows 1 and 2
    expected = np.zeros((4, 4), bool)
    expected[1, :] = True
    np.testing.assert_array_equal(motion_boundaries(flow), expected)


def bilinear_border(field: np.ndarray, x: float, y: float) -> np.ndarray:
    """Reference bilinear sample with coordinates clamped to the frame (grid_sample's border padding)."""
    height, width = field.shape[:2]
    x = min(max(x, 0.0), width - 1.0)
    y = min(max(y, 0.0), height - 1.0)
    x0, y0 = math.floor(x), math.floor(y)
    x1, y1 = min(x0 + 1, width - 1), min(y0 + 1, height - 1)
    fx, fy = x - x0, y - y0
    top = field[y0, x0] * (1 - fx) + field[y0, x1] * fx
    bottom = field[y1, x0] * (1 - fx) + field[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def reference_occlusion(forward: np.ndarray, backward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lai et al.'s mask computed pixel by pixel in float64, and each pixel's distance from its thresholds."""
    forward = forward.astype(np.float64)
    backward = backward.astype(np.float64)
    height, width = forward.shape[:2]
    mask = np.zeros((height, width), bool)
    margin = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            f = forward[y, x]
            b_hat = bilinear_border(backward, x + f[0], y + f[1])
            fb = np.sum((f + b_hat) ** 2) - (0.01 * (np.sum(f**2) + np.sum(b_hat**2)) + 0.5)
            grad = 0.0
            if x + 1 < width:
                grad += np.sum((forward[y, x] - forward[y, x + 1]) ** 2)
            if y + 1 < height:
                grad += np.sum((forward[y, x] - forward[y + 1, x]) ** 2)
            mb = grad - (0.01 * np.sum(f**2) + 0.002)
            mask[y, x] = fb > 0 or mb > 0
            margin[y, x] = min(abs(fb), abs(mb))
    return mask, margin


def test_occlusion_mask_matches_a_pixel_by_pixel_reference() -> None:
    rng = np.random.default_rng(3)
    forward = rng.normal(0, 1.0, (9, 11, 2)).astype(np.float32)
    backward = (-forward + rng.normal(0, 0.5, (9, 11, 2))).astype(np.float32)
    forward[:, :5] = 0.5  # a smooth region where the boundary test stays quiet
    backward[:, :5] = -0.5

    mask = occlusion_mask(forward, backward)
    expected, margin = reference_occlusion(forward, backward)

    assert mask.dtype == bool
    assert mask.shape == (9, 11)
    decidable = margin > 1e-4  # float32 vs float64 may only disagree right at a threshold
    np.testing.assert_array_equal(mask[decidable], expected[decidable])
    assert expected.any() and not expected.all()


# --- occlusion: a square moving over a static background --------------------------------------

SIZE, TOP, LEFT, SIDE, SHIFT = 48, 16, 12, 16, 5


def moving_square_flows() -> tuple[np.ndarray, np.ndarray]:
    """Exact flows for a square at columns [12, 28) in frame t that moves 5 px right in frame t+1."""
    forward = np.zeros((SIZE, SIZE, 2), np.float32)
    forward[TOP : TOP + SIDE, LEFT : LEFT + SIDE, 0] = SHIFT
    backward = np.zeros((SIZE, SIZE, 2), np.float32)
    backward[TOP : TOP + SIDE, LEFT + SHIFT : LEFT + SHIFT + SIDE, 0] = -SHIFT
    return forward, backward


def test_square_occludes_the_strip_it_moves_onto_and_not_the_background() -> None:
    forward, backward = moving_square_flows()

    mask = occlusion_mask(forward, backward)

    rows = slice(TOP, TOP + SIDE)
    strip = mask[rows, LEFT + SIDE : LEFT + SIDE + SHIFT]  # background in t, covered by the square in t+1
    assert strip.all()
    # The rest of the background and the square's inside stay reliable.
    expected = np.zeros_like(mask)
    expected[rows, LEFT + SIDE : LEFT + SIDE + SHIFT] = True
    expected[rows, LEFT - 1] = True  # motion boundaries of the forward flow (forward differences)
    expected[rows, LEFT + SIDE - 1] = True
    expected[TOP - 1, LEFT : LEFT + SIDE] = True
    expected[TOP + SIDE - 1, LEFT : LEFT + SIDE] = True
    np.testing.assert_array_equal(mask, expected)


def render_square(background: np.ndarray, square: np.ndarray, left: int) -> np.ndarray:
    frame = background.copy()
    frame[TOP : TOP + SIDE, left : left + SIDE] = square
    return frame


def test_square_occlusion_with_estimated_flow() -> None:
    background = texture(SIZE, SIZE, seed=1)
    square = texture(SIDE, SIDE, seed=2)
    frame_t = render_square(background, square, LEFT)
    frame_t1 = render_square(background, square, LEFT + SHIFT)

    forward = estimate_flow(frame_t, frame_t1, preset="medium")
    backward = estimate_flow(frame_t1, frame_t, preset="medium")
    mask = occlusion_mask(forward, backward)

    strip = mask[TOP + 2 : TOP + SIDE - 2, LEFT + SIDE : LEFT + SIDE + SHIFT]
    assert strip.mean() > 0.5
    far_background = np.ones_like(mask)
    far_background[TOP - 6 : TOP + SIDE + 6, LEFT - 6 : LEFT + SIDE + SHIFT + 6] = False
    assert mask[far_background].mean() < 0.05
