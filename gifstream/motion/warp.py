"""Backward warping with a flow field, and occlusion masks (Lai et al., ECCV 2018).

Direction matters: to predict frame t from frame t+1 with the forward flow
F = F(t→t+1), sample frame t+1 at x + F(x). Warping frame t forward along F
and comparing it with frame t+1 measures the wrong thing.
"""

from __future__ import annotations

from typing import overload

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.errors import InputError
from .flow import check_flow

# Thresholds of the forward–backward check and the motion-boundary test,
# exactly as in Lai et al. 2018 ("Learning Blind Video Temporal Consistency").
FB_RELATIVE = 0.01
FB_ABSOLUTE = 0.5
BOUNDARY_RELATIVE = 0.01
BOUNDARY_ABSOLUTE = 0.002


def sampling_grid(flow: torch.Tensor) -> torch.Tensor:
    """``grid_sample`` grid (N, H, W, 2) that reads each pixel x at x + flow(x).

    With align_corners=True, -1 and +1 are the centres of the first and last
    pixels, so a pixel coordinate c maps to 2c / (size - 1) - 1.
    """
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
    if isinstance(image, torch.Tensor):
        if not isinstance(flow, torch.Tensor):
            raise InputError("a tensor image needs a tensor flow of shape (N, 2, H, W)")
        return warp_tensor(image, flow)
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array or a torch tensor, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise InputError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    height, width = image.shape[:2]
    flow = check_flow("flow", flow, height, width)
    planes = image[..., None] if image.ndim == 2 else image
    image_t = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32)).permute(2, 0, 1)[None]
    flow_t = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1)[None]
    with torch.inference_mode():
        warped = warp_tensor(image_t, flow_t)[0].permute(1, 2, 0).numpy()
    return np.ascontiguousarray(warped.reshape(image.shape))


def inside_frame(flow: np.ndarray) -> np.ndarray:
    """(H, W) bool: True where x + flow(x) lands inside the frame (so the warp read real pixels)."""
    flow = check_flow("flow", flow)
    height, width = flow.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    x = xs + flow[..., 0]
    y = ys + flow[..., 1]
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
    backward_at_t = backward_warp(backward, forward)
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
