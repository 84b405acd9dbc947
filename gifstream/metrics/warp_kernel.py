"""E_warp in one compiled pass: warp, occlusion mask and masked error per pixel.

Step by step (:func:`~gifstream.motion.warp.backward_warp` of each frame,
:func:`~gifstream.motion.warp.occlusion_mask`, then a masked mean) it
makes about forty frame-sized temporaries; at GIF sizes that was most of
the metrics stage's time. This loop does the same float32 arithmetic in the
same order for each pixel (reading pixels with the warp's own
:func:`~gifstream.motion.warp.bilinear_read`), so the mask is identical and
the sums agree to float64 rounding. It is compiled by numba
on first use and cached (see :mod:`gifstream.jit`).
"""

from __future__ import annotations

import numpy as np

from ..engine.errors import InputError
from ..jit import CompiledLoops
from ..motion import warp as _warp
from ..motion.warp import BOUNDARY_ABSOLUTE, BOUNDARY_RELATIVE, FB_ABSOLUTE, FB_RELATIVE

_loop = CompiledLoops(globals(), uses=(_warp._loop,))

# The thresholds as numpy applies them to float32 arrays: python scalars take the array's dtype.
_THRESHOLDS = np.array([FB_RELATIVE, FB_ABSOLUTE, BOUNDARY_RELATIVE, BOUNDARY_ABSOLUTE], np.float32)


def masked_warp_sums(
    frames_t: np.ndarray, frames_t1: np.ndarray, flow_fw: np.ndarray, flow_bw: np.ndarray | None
) -> tuple[np.ndarray, int]:
    """Per image, the sum over reliable pixels of the channel-summed squared warp error, and their count.

    ``frames_t`` and ``frames_t1`` are (K, H, W, 3) uint8 stacks of K RGB
    images, each frame t+1 warped back to t with
    ``flow_fw`` = F(t→t+1). A pixel is reliable when x + F(x) lies in the
    frame and, given ``flow_bw`` = B(t+1→t), it passes the forward–backward
    check and lies on no motion boundary (Lai et al. 2018). Values are
    scaled to [0, 1] before squaring.
    """
    check_stacks(frames_t, frames_t1, flow_fw, flow_bw)
    sums = np.zeros(len(frames_t), np.float64)
    forward = np.ascontiguousarray(flow_fw, np.float32)
    backward = forward if flow_bw is None else np.ascontiguousarray(flow_bw, np.float32)
    count = _masked_warp_sums(
        np.ascontiguousarray(frames_t),
        np.ascontiguousarray(frames_t1),
        forward,
        backward,
        flow_bw is not None,
        _THRESHOLDS,
        sums,
    )
    return sums, int(count)


def check_stacks(frames_t: np.ndarray, frames_t1: np.ndarray, flow_fw: np.ndarray, flow_bw: np.ndarray | None) -> None:
    """Shapes the loop relies on (compiled code does not check its indices): InputError otherwise."""
    if frames_t.dtype != np.uint8 or frames_t.ndim != 4 or frames_t.shape[3] != 3:
        raise InputError(f"frames_t must be a (K, H, W, 3) uint8 stack, got {frames_t.dtype} {frames_t.shape}")
    if frames_t1.dtype != np.uint8 or frames_t1.shape != frames_t.shape:
        expected = f"uint8 {frames_t.shape}"
        raise InputError(f"frames_t1 must match frames_t ({expected}), got {frames_t1.dtype} {frames_t1.shape}")
    flow_shape = (*frames_t.shape[1:3], 2)
    for name, flow in (("flow_fw", flow_fw), ("flow_bw", flow_bw)):
        if flow is not None and flow.shape != flow_shape:
            raise InputError(f"{name} must be {flow_shape} for these frames, got {flow.shape}")


@_loop
def _masked_warp_sums(
    frames_t: np.ndarray,
    frames_t1: np.ndarray,
    forward: np.ndarray,
    backward: np.ndarray,
    check_backward: bool,
    thresholds: np.ndarray,
    sums: np.ndarray,
) -> int:
    height, width = forward.shape[0], forward.shape[1]
    fb_relative, fb_absolute, boundary_relative, boundary_absolute = (
        thresholds[0],
        thresholds[1],
        thresholds[2],
        thresholds[3],
    )
    scale = np.float32(255.0)
    count = 0
    for row in range(height):
        for col in range(width):
            u = forward[row, col, 0]
            v = forward[row, col, 1]
            # Lands inside the frame: tested in float64, as integer grids added to the flow are.
            land_x = np.float64(col) + np.float64(u)
            land_y = np.float64(row) + np.float64(v)
            if not (land_x >= 0 and land_x <= width - 1 and land_y >= 0 and land_y <= height - 1):
                continue
            # FlowSampler's bilinear read at x + F(x), clamped to the border (float32 throughout).
            corners = _warp.bilinear_corners(np.float32(col) + u, np.float32(row) + v, width, height)
            if check_backward:
                bu = _warp.bilinear_read(backward, 0, *corners)
                bv = _warp.bilinear_read(backward, 1, *corners)
                su, sv = u + bu, v + bv
                mismatch = su * su + sv * sv
                if mismatch > fb_relative * ((u * u + v * v) + (bu * bu + bv * bv)) + fb_absolute:
                    continue
                if _on_motion_boundary(forward, row, col, u, v, boundary_relative, boundary_absolute):
                    continue
            count += 1
            for image in range(len(frames_t)):
                later = frames_t1[image]
                per_pixel = np.float32(0.0)
                for channel in range(3):
                    predicted = _warp.bilinear_read(later, channel, *corners) / scale
                    difference = np.float32(frames_t[image, row, col, channel]) / scale - predicted
                    per_pixel += difference * difference
                sums[image] += np.float64(per_pixel)
    return count


@_loop
def _on_motion_boundary(
    flow: np.ndarray,
    row: int,
    col: int,
    u: np.float32,
    v: np.float32,
    relative: np.float32,
    absolute: np.float32,
) -> bool:
    # Forward differences, zero on the last column and row, accumulated in motion_boundaries' order.
    height, width = flow.shape[0], flow.shape[1]
    gradient = np.float32(0.0)
    for axis in range(2):
        if col < width - 1:
            step = flow[row, col, axis] - flow[row, col + 1, axis]
            gradient += step * step
        if row < height - 1:
            step = flow[row, col, axis] - flow[row + 1, col, axis]
            gradient += step * step
    return bool(gradient > relative * (u * u + v * v) + absolute)


def prepare() -> None:
    """Have the loop ready (numba compiles it on first use, seconds, then loads it from its cache): a stage
    calls this while setting up, so its first frame does not wait for the compiler."""
    frames = np.zeros((1, 2, 2, 3), np.uint8)
    flow = np.zeros((2, 2, 2), np.float32)
    masked_warp_sums(frames, frames, flow, flow)
