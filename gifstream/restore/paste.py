"""GFPGAN's paste-back in torch: ParseNet's soft face mask, and restored faces blended into their frame.

The same steps as facexlib's ``FaceRestoreHelper.paste_faces_to_input_image``
with ``use_parse=True`` (what ``GFPGANer.enhance`` uses), done so that the
work follows the face's size, not the frame's, and stays on the parser's
device:

- the mask: ParseNet's classes, face parts 255 and the rest 0, blurred
  twice by a 101-tap Gaussian (sigma 11) with OpenCV's mirrored borders,
  a 10-pixel border zeroed, scaled to [0, 1]. Both blurs and both
  directions are linear, so they are one 512x512 matrix on each side:
  two matrix products instead of four 101-tap passes (a 1-channel
  convolution is slow in torch on a CPU; a matrix product is fast
  everywhere);
- the paste: face and mask sampled into the frame through the inverse
  affine (bilinear, zeros outside, as ``cv2.warpAffine`` does), only over
  the face's footprint, then ``mask * face + (1 - mask) * frame``.

facexlib warps and blends the whole frame in float64 for every face: about
100 ms a face at 960x540 on one CPU core, which on a GPU would cost more than
the networks themselves. The results agree with facexlib's to a level of 255
here and there (OpenCV's warp works in fixed point, to 1/32 pixel).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

# facexlib's MASK_COLORMAP: which of ParseNet's 19 classes count as face (skin, brows, eyes, ears, nose,
# mouth, lips, neck ...) and which do not (background 0, neck-lace 14, cloth 16, hair 17, hat 18).
FACE_CLASSES = (0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0)
MASK_BLUR_SIZE = 101
MASK_BLUR_SIGMA = 11
MASK_BORDER = 10  # pixels of the 512x512 mask zeroed on every side, as facexlib does
FACE_CHANNELS = 3
ROUNDING_SLACK = 1e-9


class PasteShapeError(ValueError):
    """A face, mask or affine matrix of the wrong shape for the paste-back."""


def mirrored_gaussian(size: int) -> np.ndarray:
    """The (size, size) matrix G with ``G @ x`` = ``x`` blurred along axis 0 by facexlib's Gaussian.

    Borders mirror without repeating the edge (OpenCV's BORDER_REFLECT_101,
    ``cv2.GaussianBlur``'s default): the taps that fall outside are folded
    back onto the pixels they mirror.
    """
    taps = cv2.getGaussianKernel(MASK_BLUR_SIZE, MASK_BLUR_SIGMA)[:, 0]
    radius = MASK_BLUR_SIZE // 2
    blur = np.zeros((size, size))
    rows = np.arange(size)
    for offset, weight in zip(range(-radius, radius + 1), taps, strict=True):
        cols = np.abs(rows + offset)
        cols = np.where(cols >= size, 2 * (size - 1) - cols, cols)
        np.add.at(blur, (rows, cols), weight)
    return blur


@functools.cache
def _double_blur(size: int, device: str) -> Any:
    """facexlib's two successive blurs along one axis, as one float64 matrix on ``device``."""
    import torch

    once = mirrored_gaussian(size)
    return torch.from_numpy(once @ once).to(device)


def soft_face_mask(logits: Any) -> Any:
    """ParseNet's (1, 19, S, S) logits → facexlib's soft face mask, (S, S) float64 in [0, 1], on their device.

    float64 as facexlib's: where the mask should be 1 (inside the face), float32 leaves 1 - 6e-8, and the
    paste's truncation to uint8 would then take a level off every pixel there.
    """
    import torch

    if logits.ndim != 4 or logits.shape[:2] != (1, len(FACE_CLASSES)) or logits.shape[2] != logits.shape[3]:
        raise PasteShapeError(f"expected ParseNet logits of shape (1, 19, S, S), got {tuple(logits.shape)}")
    size = logits.shape[2]
    if size <= 2 * MASK_BORDER or size <= MASK_BLUR_SIZE // 2:
        raise PasteShapeError(f"a {size}x{size} mask is too small for the paste-back's blur and border")
    with torch.autocast(logits.device.type, enabled=False):  # the blur in float64 even when ParseNet ran in bf16
        face_class = torch.tensor(FACE_CLASSES, dtype=torch.float64, device=logits.device)
        mask = face_class[logits[0].argmax(dim=0)]
        blur = _double_blur(size, str(logits.device))
        # Blurring along rows then columns: B @ mask blurs each column, mask @ B.T each row.
        mask = blur @ mask @ blur.T
    mask[:MASK_BORDER] = 0
    mask[-MASK_BORDER:] = 0
    mask[:, :MASK_BORDER] = 0
    mask[:, -MASK_BORDER:] = 0
    return mask


def paste_faces(
    background: np.ndarray,
    faces: Sequence[np.ndarray],
    masks: Sequence[Any],
    inverse_affines: Sequence[np.ndarray],
    upscale: float,
) -> np.ndarray:
    """``faces`` (S x S x 3 uint8) blended into a copy of ``background`` (H x W x 3 uint8), in order.

    ``masks[i]`` is face i's soft mask ((S, S) float tensor, see
    :func:`soft_face_mask`) and ``inverse_affines[i]`` the (2, 3) matrix
    taking its pixels to the background's, as facexlib's
    ``get_inverse_affine`` gives them; facexlib's extra half-pixel offset
    per unit of ``upscale`` is added here (without changing the matrix).
    Channel order is whatever the faces and background share.
    """
    import torch

    if background.ndim != 3 or background.shape[2] != FACE_CHANNELS or background.dtype != np.uint8:
        raise PasteShapeError(f"expected an H x W x 3 uint8 background, got {background.shape} {background.dtype}")
    if not len(faces) == len(masks) == len(inverse_affines):
        raise PasteShapeError(f"{len(faces)} faces, {len(masks)} masks and {len(inverse_affines)} affine matrices")
    result = background.copy()
    affines = [_with_offset(affine, upscale) for affine in inverse_affines]
    footprints = [
        _footprint(affine, face.shape[:2], background.shape[:2]) for face, affine in zip(faces, affines, strict=True)
    ]
    union = _union(footprints)
    if union is None:  # every face falls outside the frame
        return result
    top, left, bottom, right = union
    device = masks[0].device  # a face is in the frame, so there is a mask
    # One float working area for all faces: like facexlib, later faces blend over the earlier ones unrounded.
    canvas = torch.from_numpy(result[top:bottom, left:right]).to(device).double()
    for face, mask, affine, footprint in zip(faces, masks, affines, footprints, strict=True):
        if footprint is not None:
            _blend_face(canvas, face, mask, affine, footprint, (top, left))
    # Truncated to uint8, as facexlib's astype does; a blend that is a whole level but for float rounding
    # (1 - 1e-16 inside the face, where the mask is 1) keeps that level.
    result[top:bottom, left:right] = canvas.add_(ROUNDING_SLACK).to(torch.uint8).cpu().numpy()
    return result


def _with_offset(inverse_affine: np.ndarray, upscale: float) -> np.ndarray:
    """facexlib's "more precise back alignment": half a pixel per unit of upscale, on a copy."""
    if inverse_affine.shape != (2, 3):
        raise PasteShapeError(f"expected a (2, 3) affine matrix, got {inverse_affine.shape}")
    shifted = np.array(inverse_affine, dtype=np.float64)
    if upscale > 1:
        shifted[:, 2] += 0.5 * upscale
    return shifted


def _footprint(
    inverse_affine: np.ndarray, face_shape: tuple[int, ...], frame_shape: tuple[int, ...]
) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the frame pixels the face can touch, or None if it lies outside."""
    height, width = face_shape
    # Bilinear sampling reaches one pixel past the face's edge pixels.
    corners = np.array([[-1, -1, 1], [width, -1, 1], [-1, height, 1], [width, height, 1]], np.float64)
    mapped = corners @ inverse_affine.T
    left, top = np.floor(mapped.min(axis=0)).astype(int)
    right, bottom = np.ceil(mapped.max(axis=0)).astype(int) + 1
    top, left = max(top, 0), max(left, 0)
    bottom, right = min(bottom, frame_shape[0]), min(right, frame_shape[1])
    if top >= bottom or left >= right:
        return None
    return int(top), int(left), int(bottom), int(right)


def _union(boxes: Sequence[tuple[int, int, int, int] | None]) -> tuple[int, int, int, int] | None:
    present = [box for box in boxes if box is not None]
    if not present:
        return None
    tops, lefts, bottoms, rights = zip(*present, strict=True)
    return min(tops), min(lefts), max(bottoms), max(rights)


def _blend_face(
    canvas: Any,
    face: np.ndarray,
    mask: Any,
    inverse_affine: np.ndarray,
    footprint: tuple[int, int, int, int],
    origin: tuple[int, int],
) -> None:
    """Blend one face into ``canvas`` (the frame's float region starting at ``origin``) over its footprint."""
    import torch
    import torch.nn.functional as F

    size = face.shape[:2]
    if face.ndim != 3 or face.shape[2] != FACE_CHANNELS or tuple(mask.shape) != size:
        raise PasteShapeError(f"face {face.shape} and mask {tuple(mask.shape)} do not match")
    device = canvas.device
    top, left, bottom, right = footprint
    # Frame pixel -> face pixel: warpAffine samples the source through the inverse of the matrix it is given.
    to_face = torch.from_numpy(cv2.invertAffineTransform(inverse_affine)).to(device)
    ys = torch.arange(top, bottom, device=device, dtype=torch.float64)
    xs = torch.arange(left, right, device=device, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    face_x = to_face[0, 0] * grid_x + to_face[0, 1] * grid_y + to_face[0, 2]
    face_y = to_face[1, 0] * grid_x + to_face[1, 1] * grid_y + to_face[1, 2]
    # grid_sample's align_corners=True puts -1 and 1 on the centres of the edge pixels, as OpenCV's coordinates do.
    grid = torch.stack([face_x * (2 / (size[1] - 1)) - 1, face_y * (2 / (size[0] - 1)) - 1], dim=-1)
    source = torch.cat([torch.from_numpy(face).to(device).double().permute(2, 0, 1), mask.double()[None]])
    sampled = F.grid_sample(source[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    warped_face = sampled[:FACE_CHANNELS].round().permute(1, 2, 0)  # warpAffine gives the face as uint8
    warped_mask = sampled[FACE_CHANNELS, :, :, None]
    region = canvas[top - origin[0] : bottom - origin[0], left - origin[1] : right - origin[1]]
    region.copy_(warped_mask * warped_face + (1 - warped_mask) * region)
