"""Backward warping with a flow field, and occlusion masks (Lai et al., ECCV 2018).

Direction matters: to predict frame t from frame t+1 with the forward flow
F = F(t→t+1), sample frame t+1 at x + F(x). Warping frame t forward along F
and comparing it with frame t+1 measures the wrong thing.

numpy images are sampled here without torch (the offline path never imports
it); the sampling is that of ``torch.nn.functional.grid_sample`` with
``mode="bilinear"``, ``padding_mode="border"`` and ``align_corners=True``,
which tensors go through. The per-pixel reads are a loop compiled by numba
on first use and cached (:mod:`gifstream.jit`).
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from ..engine.errors import InputError
from ..jit import CompiledLoops
from .flow import check_flow

if TYPE_CHECKING:
    import torch

# Thresholds of the forward–backward check and the motion-boundary test,
# exactly as in Lai et al. 2018 ("Learning Blind Video Temporal Consistency").
FB_RELATIVE = 0.01
FB_ABSOLUTE = 0.5
BOUNDARY_RELATIVE = 0.01
BOUNDARY_ABSOLUTE = 0.002


class FlowSampler:
    """Bilinear reads at x + flow(x) for every pixel x, for images warped by one (H, W, 2) flow.

    Positions outside the frame are clamped to its border (they read the
    nearest edge pixel), as ``grid_sample`` does with ``padding_mode="border"``;
    a non-finite flow reads NaN. The reads run as one compiled loop per image
    (see ``_warp_into``), in float32 with the corners summed in a fixed
    order, so every image warped by the same flow gets the same arithmetic.
    """

    def __init__(self, flow: np.ndarray) -> None:
        flow = check_flow("flow", flow)
        self.shape = flow.shape[:2]
        self._flow = np.ascontiguousarray(flow, np.float32)

    def warp(self, image: np.ndarray) -> np.ndarray:
        """``image`` (H, W) or (H, W, C) read at x + flow(x): float32 of the same shape, values not rescaled."""
        channels = self._channels(image)
        out = np.empty(channels.shape, np.float32)
        _warp_into(channels, self._flow, out)
        return out.reshape(image.shape)

    def warp_planes(self, image: np.ndarray) -> np.ndarray:
        """``image`` (H, W) or (H, W, C), any real dtype, read at x + flow(x), as channel-first (C, H, W) float32."""
        channels = self._channels(image)
        out = np.empty((channels.shape[2], *self.shape), np.float32)
        _warp_into(channels, self._flow, np.moveaxis(out, 0, 2))
        return out

    def _channels(self, image: np.ndarray) -> np.ndarray:
        """``image`` as a C-contiguous (H, W, C) uint8 or float32 array, the types the loop is compiled for.

        Other types become float32 first, as each value read would anyway
        (numba has no float16, and each type would be compiled separately).
        """
        if image.shape[:2] != self.shape:
            raise InputError(
                f"image is {image.shape[1]}x{image.shape[0]} but the flow is {self.shape[1]}x{self.shape[0]}"
            )
        channels = image.reshape(*self.shape, -1)
        if channels.dtype not in (np.uint8, np.float32):
            channels = channels.astype(np.float32)
        return np.ascontiguousarray(channels)


_loop = CompiledLoops(globals())


@_loop
def _warp_into(image: np.ndarray, flow: np.ndarray, out: np.ndarray) -> None:
    """out[y, x, c] = image read bilinearly at (x, y) + flow[y, x], for (H, W, C) image and out."""
    height, width, channels = image.shape
    for row in range(height):
        for col in range(width):
            x = np.float32(col) + flow[row, col, 0]
            y = np.float32(row) + flow[row, col, 1]
            if math.isnan(x) or math.isnan(y):
                for channel in range(channels):
                    out[row, col, channel] = np.nan
                continue
            corners = bilinear_corners(x, y, width, height)
            for channel in range(channels):
                out[row, col, channel] = bilinear_read(image, channel, *corners)


@_loop
def bilinear_corners(x: np.float32, y: np.float32, width: int, height: int) -> tuple[Any, ...]:
    """Compiled: the four neighbours of (x, y), clamped to the frame, and their bilinear weights (float32).

    Other modules' compiled loops call this and :func:`bilinear_read` as
    ``warp.bilinear_corners`` (listing this module's loops in their ``uses``),
    so every warp in gifstream reads pixels with the same arithmetic.
    """
    one = np.float32(1.0)
    x = min(max(x, np.float32(0.0)), np.float32(width - 1))
    y = min(max(y, np.float32(0.0)), np.float32(height - 1))
    x0, y0 = math.floor(x), math.floor(y)
    wx, wy = x - np.float32(x0), y - np.float32(y0)
    left, top = int(x0), int(y0)
    # The far neighbour of a sample on the last column (row) has weight 0; clamping keeps its read in range.
    right, bottom = min(left + 1, width - 1), min(top + 1, height - 1)
    return top, bottom, left, right, (one - wx) * (one - wy), wx * (one - wy), (one - wx) * wy, wx * wy


@_loop
def bilinear_read(
    image: np.ndarray,
    channel: int,
    top: int,
    bottom: int,
    left: int,
    right: int,
    w00: np.float32,
    w10: np.float32,
    w01: np.float32,
    w11: np.float32,
) -> np.float32:
    """Compiled: channel ``channel`` of (H, W, C) ``image`` read at ``bilinear_corners``' position."""
    # Values become float32 before weighting, and the corners are summed in this order.
    value = np.float32(image[top, left, channel]) * w00
    value += np.float32(image[top, right, channel]) * w10
    value += np.float32(image[bottom, left, channel]) * w01
    value += np.float32(image[bottom, right, channel]) * w11
    return value


def prepare() -> None:
    """Have the sampling loop ready for the image types the stages warp (numba compiles each on first use,
    then loads it from its cache): uint8 frames and float32 flows, pixel-major and channel-first."""
    sampler = FlowSampler(np.zeros((2, 2, 2), np.float32))
    for image in (np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 2), np.float32)):
        sampler.warp(image)
        sampler.warp_planes(image)


def sampling_grid(flow: torch.Tensor) -> torch.Tensor:
    """``grid_sample`` grid (N, H, W, 2) that reads each pixel x at x + flow(x).

    With align_corners=True, -1 and +1 are the centres of the first and last
    pixels, so a pixel coordinate c maps to 2c / (size - 1) - 1.
    """
    import torch

    _, _, height, width = flow.shape
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=flow.dtype, device=flow.device),
        torch.arange(width, dtype=flow.dtype, device=flow.device),
        indexing="ij",
    )
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    # A 1-pixel axis has no extent; every sample lands on its only pixel.
    gx = 2 * x / max(width - 1, 1) - 1
    gy = 2 * y / max(height - 1, 1) - 1
    return torch.stack((gx, gy), dim=-1)


def warp_tensor(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """out(x) = image(x + flow(x)) for (N, C, H, W) images and (N, 2, H, W) flows, on the image's device."""
    import torch.nn.functional as F

    if image.ndim != 4:
        raise InputError(f"image tensor must be (N, C, H, W), got shape {tuple(image.shape)}")
    n, _, height, width = image.shape
    if tuple(flow.shape) != (n, 2, height, width):
        raise InputError(f"flow tensor must be ({n}, 2, {height}, {width}) to match the image, got {tuple(flow.shape)}")
    if not image.is_floating_point():
        image = image.float()
    flow = flow.to(device=image.device, dtype=image.dtype)
    grid = sampling_grid(flow)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def is_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor, without importing torch (none can exist before it is imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


@overload
def backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray: ...
@overload
def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor: ...
def backward_warp(image: np.ndarray | torch.Tensor, flow: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Predict frame t from frame t+1: out(x) = image(x + flow(x)).

    ``image`` is frame t+1 and ``flow`` is F(t→t+1). Sampling is bilinear
    (``grid_sample``, align_corners=True) and positions outside the frame
    read the nearest edge pixel (padding_mode="border"); use
    :func:`inside_frame` to tell those pixels apart.

    numpy: ``image`` (H, W, C) or (H, W), uint8 or float, with ``flow``
    (H, W, 2) → float32 numpy of the image's shape, values not rescaled
    (uint8 stays in 0..255). torch: ``image`` (N, C, H, W) with ``flow``
    (N, 2, H, W) → float tensor on the image's device.
    """
    if is_tensor(image):
        if not is_tensor(flow):
            raise InputError("a tensor image needs a tensor flow of shape (N, 2, H, W)")
        return warp_tensor(image, flow)  # type: ignore[arg-type]
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array or a torch tensor, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise InputError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    height, width = image.shape[:2]
    flow = check_flow("flow", flow, height, width)
    return FlowSampler(flow).warp(image)


def inside_frame(flow: np.ndarray) -> np.ndarray:
    """(H, W) bool: True where x + flow(x) lands inside the frame (so the warp read real pixels)."""
    flow = check_flow("flow", flow)
    height, width = flow.shape[:2]
    # Pixel coordinates broadcast against the flow, in float64 like integer grids added to it would be.
    x = np.arange(width, dtype=np.float64) + flow[..., 0]
    y = np.arange(height, dtype=np.float64)[:, None] + flow[..., 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def squared_magnitude(flow: np.ndarray) -> np.ndarray:
    return flow[..., 0] ** 2 + flow[..., 1] ** 2


def forward_backward_inconsistent(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(H, W) bool: |F + B̂|² > 0.01(|F|² + |B̂|²) + 0.5, with B̂(x) = B(x + F(x)).

    Where a pixel stays visible, following F to frame t+1 and B back lands
    where it started, so F + B̂ ≈ 0; otherwise it was occluded (or the flow is
    wrong there).
    """
    forward = check_flow("forward flow", forward).astype(np.float32, copy=False)
    backward = check_flow("backward flow", backward, *forward.shape[:2]).astype(np.float32, copy=False)
    return inconsistent_with(forward, backward_warp(backward, forward))


def inconsistent_with(forward: np.ndarray, backward_at_t: np.ndarray) -> np.ndarray:
    """The forward–backward check for a backward flow already read at x + F(x) (float32 (H, W, 2) both)."""
    mismatch = squared_magnitude(forward + backward_at_t)
    return mismatch > FB_RELATIVE * (squared_magnitude(forward) + squared_magnitude(backward_at_t)) + FB_ABSOLUTE


def motion_boundaries(flow: np.ndarray) -> np.ndarray:
    """(H, W) bool: |∇u|² + |∇v|² > 0.01|F|² + 0.002.

    Gradients are forward differences (f(x) − f(x+1) along each axis, zero
    on the last row and column), as in the reference implementation.
    """
    flow = check_flow("flow", flow).astype(np.float32, copy=False)
    gradient = np.zeros(flow.shape[:2], np.float32)
    for channel in (flow[..., 0], flow[..., 1]):
        gradient[:, :-1] += (channel[:, :-1] - channel[:, 1:]) ** 2
        gradient[:-1, :] += (channel[:-1, :] - channel[1:, :]) ** 2
    return gradient > BOUNDARY_RELATIVE * squared_magnitude(flow) + BOUNDARY_ABSOLUTE


def occlusion_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(H, W) bool in frame t's coordinates: True where a pixel is occluded or its flow unreliable.

    ``forward`` is F(t→t+1) and ``backward`` is B(t+1→t). A pixel is masked
    when it fails the forward–backward check or lies on a motion boundary of
    the forward flow (Lai et al. 2018). The reliable pixels are ``~mask``.
    """
    return forward_backward_inconsistent(forward, backward) | motion_boundaries(forward)
