"""Restorers that need no weights: the offline classic face enhancer and a plain Lanczos upscale."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from ..stages.basic import resize_lanczos, scaled_size
from .base import Restored, check_rgb, expand_repeats, repeats_previous
from .detect import CascadeFaceDetector, Detector, FaceDetection

# The treated area is an ellipse around the detected box (the cascade's box
# covers brows to mouth, a face reaches a little beyond it), feathered by a
# Gaussian; the work area leaves room for three sigmas of feather.
ELLIPSE_HALF_AXES = (0.55, 0.65)  # of the box's width and height
FEATHER_SIGMA = 0.08  # of the box's width
WORK_MARGIN = 0.3  # of the box's size, on each side, beyond the ellipse


class ClassicRestorer:
    """Offline fallback face enhancement; it is NOT GFPGAN and does not invent detail.

    It runs when GFPGAN's weights are not available. Faces are found with
    scikit-image's LBP frontal-face cascade; the frame is upscaled by
    ``scale`` with Lanczos; each face then gets edge-preserving denoising
    (bilateral filter), local contrast (CLAHE on the lightness channel) and an
    unsharp mask, blended in through a feathered elliptical mask, so pixels
    away from faces are exactly the Lanczos upscale.
    """

    name = "classic"

    def __init__(self, scale: float = 2.0, *, detector: Detector | None = None, strength: float = 1.0) -> None:
        self.scale = scale
        self.strength = strength
        self.detector: Detector = detector if detector is not None else CascadeFaceDetector()
        # OpenCV builds its L*a*b* tables on the first conversion (0.2 s): here, not on the first frame.
        cv2.cvtColor(np.zeros((1, 1, 3), np.uint8), cv2.COLOR_RGB2LAB)

    def restore(self, frames: Sequence[np.ndarray]) -> list[Restored]:
        frames = [check_rgb(frame, i) for i, frame in enumerate(frames)]
        repeats = repeats_previous(frames)
        fresh = [frame for frame, repeated in zip(frames, repeats, strict=True) if not repeated]
        detections = self.detector(fresh)
        unique = [
            Restored(enhance_frame(frame, faces, self.scale, self.strength), len(faces))
            for frame, faces in zip(fresh, detections, strict=True)
        ]
        return expand_repeats(unique, repeats)

    def restore_batch(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [restored.pixels for restored in self.restore(frames)]

    def describe(self) -> dict[str, Any]:
        return {"restorer": self.name, "scale": self.scale, "detector": "scikit-image LBP frontal-face cascade"}


class LanczosRestorer:
    """No face treatment at all: the frame upscaled by ``scale`` with Lanczos."""

    name = "none"

    def __init__(self, scale: float = 2.0) -> None:
        self.scale = scale

    def restore(self, frames: Sequence[np.ndarray]) -> list[Restored]:
        return [Restored(upscale(check_rgb(frame, i), self.scale), 0) for i, frame in enumerate(frames)]

    def restore_batch(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [restored.pixels for restored in self.restore(frames)]

    def describe(self) -> dict[str, Any]:
        return {"restorer": self.name, "scale": self.scale}


def upscale(frame: np.ndarray, scale: float) -> np.ndarray:
    height, width = frame.shape[:2]
    size = scaled_size(width, height, scale)
    return frame if size == (width, height) else resize_lanczos(frame, size)


def enhance_frame(frame: np.ndarray, faces: Sequence[FaceDetection], scale: float, strength: float = 1.0) -> np.ndarray:
    """``frame`` upscaled by ``scale`` (Lanczos) with each face in ``faces`` enhanced in place."""
    output = np.array(upscale(frame, scale))  # a writable copy, never the caller's frame
    to_x = output.shape[1] / frame.shape[1]
    to_y = output.shape[0] / frame.shape[0]
    for face in faces:
        x0, y0, x1, y1 = face.box
        enhance_face_area(output, (x0 * to_x, y0 * to_y, x1 * to_x, y1 * to_y), strength)
    return output


def enhance_face_area(image: np.ndarray, box: tuple[float, float, float, float], strength: float) -> None:
    """Blend the treated face inside ``box`` into ``image`` (modified in place) through a feathered ellipse."""
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    if width < 4 or height < 4:
        return
    reach_x = width * (ELLIPSE_HALF_AXES[0] + WORK_MARGIN)
    reach_y = height * (ELLIPSE_HALF_AXES[1] + WORK_MARGIN)
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = max(0, int(centre_x - reach_x)), max(0, int(centre_y - reach_y))
    right = min(image.shape[1], int(np.ceil(centre_x + reach_x)))
    bottom = min(image.shape[0], int(np.ceil(centre_y + reach_y)))
    if right - left < 4 or bottom - top < 4:
        return
    area = image[top:bottom, left:right]
    mask = feathered_ellipse(area.shape[:2], (centre_x - left, centre_y - top), (width, height)) * strength
    treated = treat_face(area, sharpen_sigma=max(0.8, width / 120))
    blended = area + mask[..., None] * (treated.astype(np.float32) - area)
    image[top:bottom, left:right] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def feathered_ellipse(shape: tuple[int, int], centre: tuple[float, float], box_size: tuple[float, float]) -> np.ndarray:
    """A float32 mask of ``shape``: 1 inside the face ellipse, falling smoothly to 0 outside it."""
    mask = np.zeros(shape, np.float32)
    axes = (max(1, round(box_size[0] * ELLIPSE_HALF_AXES[0])), max(1, round(box_size[1] * ELLIPSE_HALF_AXES[1])))
    cv2.ellipse(mask, (round(centre[0]), round(centre[1])), axes, 0, 0, 360, 1.0, thickness=-1)
    sigma = max(1.0, box_size[0] * FEATHER_SIGMA)
    # A constant (zero) border keeps the mask from leaking in at the work area's edges.
    return cv2.GaussianBlur(mask, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)


def treat_face(patch: np.ndarray, sharpen_sigma: float = 1.0, sharpen_amount: float = 0.8) -> np.ndarray:
    """Denoise (bilateral), raise local contrast (CLAHE on L*) and sharpen (unsharp mask) an RGB uint8 patch."""
    denoised = cv2.bilateralFilter(patch, d=5, sigmaColor=24, sigmaSpace=3)
    contrasted = local_contrast(denoised)
    blurred = cv2.GaussianBlur(contrasted, (0, 0), sharpen_sigma)
    return cv2.addWeighted(contrasted, 1 + sharpen_amount, blurred, -sharpen_amount, 0)


def local_contrast(patch: np.ndarray, clip_limit: float = 1.6, weight: float = 0.6) -> np.ndarray:
    """CLAHE on the lightness channel only, mixed in at ``weight`` so skin tones keep their hue."""
    lab = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB)
    lightness = lab[..., 0]
    equalised = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(4, 4)).apply(lightness)
    lab[..., 0] = cv2.addWeighted(lightness, 1 - weight, equalised, weight, 0)
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
