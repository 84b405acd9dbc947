"""Face detectors: one interface, so restorers can be driven by any of them (or by tests).

A detector is a callable taking a list of RGB uint8 frames and giving, per
frame, the faces found in it as :class:`FaceDetection` values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class FaceDetection:
    """A face: its box (x0, y0, x1, y1) in pixels, optional 5-point landmarks and a confidence.

    ``landmarks`` is a (5, 2) float array of (x, y) points in facexlib's
    order: left eye, right eye, nose tip, left mouth corner, right mouth
    corner (as seen in the image). Detectors without landmarks leave it None.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None = None
    score: float = 1.0

    @property
    def eye_distance(self) -> float | None:
        if self.landmarks is None:
            return None
        return float(np.linalg.norm(self.landmarks[0] - self.landmarks[1]))


class Detector(Protocol):
    def __call__(self, frames: Sequence[np.ndarray]) -> list[list[FaceDetection]]: ...


class CascadeFaceDetector:
    """Frontal faces found with scikit-image's bundled LBP cascade (no weights to fetch).

    Detection runs on a grey copy whose longer side is at most ``detect_side``
    pixels: the cascade's cost grows with the area it scans, and faces in
    short clips and GIFs are usually large. Faces smaller than ``min_size``
    pixels of that copy are not found.
    """

    def __init__(self, detect_side: int = 160, min_size: int = 20, scale_factor: float = 1.2) -> None:
        from skimage import data, feature

        self.detect_side = detect_side
        self.min_size = min_size
        self.scale_factor = scale_factor
        self._cascade = feature.Cascade(data.lbp_frontal_face_cascade_filename())  # type: ignore[no-untyped-call]

    def __call__(self, frames: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        return [self.detect(frame) for frame in frames]

    def detect(self, frame: np.ndarray) -> list[FaceDetection]:
        height, width = frame.shape[:2]
        shrink = min(1.0, self.detect_side / max(height, width))
        small = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if shrink < 1:
            grey = cv2.resize(grey, small, interpolation=cv2.INTER_AREA)
        if min(grey.shape) < self.min_size:
            return []
        found = self._cascade.detect_multi_scale(
            img=grey.astype(np.float32) / 255,
            scale_factor=self.scale_factor,
            step_ratio=1,
            min_size=(self.min_size, self.min_size),
            max_size=grey.shape[::-1],
        )
        to_frame = 1 / shrink
        return [
            FaceDetection(
                box=(
                    found_face["c"] * to_frame,
                    found_face["r"] * to_frame,
                    (found_face["c"] + found_face["width"]) * to_frame,
                    (found_face["r"] + found_face["height"]) * to_frame,
                )
            )
            for found_face in found
        ]


class RetinaFaceDetector:
    """facexlib's RetinaFace (ResNet-50), as GFPGAN uses it: faces above ``threshold`` with landmarks."""

    def __init__(self, net: Any, threshold: float = 0.97) -> None:
        self.net = net
        self.threshold = threshold

    def __call__(self, frames: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        import torch

        results = []
        with torch.inference_mode():
            for frame in frames:
                # RetinaFace was trained on BGR input with BGR mean subtraction.
                rows = self.net.detect_faces(np.ascontiguousarray(frame[..., ::-1]), self.threshold)
                results.append([detection_from_row(row) for row in rows])
        return results


def detection_from_row(row: np.ndarray) -> FaceDetection:
    """A RetinaFace output row (x0, y0, x1, y1, score, then five (x, y) landmarks) as a FaceDetection."""
    x0, y0, x1, y1, score = (float(v) for v in row[:5])
    return FaceDetection((x0, y0, x1, y1), np.asarray(row[5:15], dtype=np.float32).reshape(5, 2), score)
