"""Detectors that remember: detection every k frames, and landmarks smoothed over time.

Both wrap any :class:`~gifstream.restore.detect.Detector` and keep the only
state that crosses frames, the last detections or the landmark tracks, so a
restorer stays stateless. They are meant to see consecutive frames of one
stream, in order, as the restore stage feeds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..engine import ConfigError
from ..stabilize.landmarks import LandmarkSmoother
from .detect import Detector, FaceDetection


class EveryKDetector:
    """Runs ``inner`` on every ``k``-th frame and carries its faces to the frames between.

    Detection (RetinaFace) is a large part of a frame's cost; between two
    detections a face moves little, and GFPGAN's alignment tolerates it.
    """

    def __init__(self, inner: Detector, k: int) -> None:
        if k < 1:
            raise ConfigError(f"--detect-every must be >= 1, got {k}")
        self.inner, self.k = inner, k
        self.seen = 0
        self.calls = 0
        self.last: list[FaceDetection] = []

    def __call__(self, frames: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        due = [i for i in range(len(frames)) if (self.seen + i) % self.k == 0]
        found = dict(zip(due, self.inner([frames[i] for i in due]), strict=True)) if due else {}
        self.calls += len(due)
        result = []
        for i in range(len(frames)):
            self.last = found.get(i, self.last)
            result.append(list(self.last))
        self.seen += len(frames)
        return result


class SmoothedDetector:
    """Smooths ``inner``'s 5-point landmarks over time with a One-Euro filter per face.

    Landmarks drive GFPGAN's alignment; their frame-to-frame jitter makes the
    aligned crop, and so the restored face, jump. ``frame_seconds`` is the
    time step of the stream (the filter's cut-offs are in Hz).
    """

    def __init__(self, inner: Detector, frame_seconds: float = 0.1, smoother: LandmarkSmoother | None = None) -> None:
        if frame_seconds <= 0:
            raise ConfigError(f"frame_seconds must be > 0, got {frame_seconds}")
        self.inner, self.frame_seconds = inner, frame_seconds
        self.smoother = smoother or LandmarkSmoother()
        self.seen = 0

    def __call__(self, frames: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        result = []
        for faces in self.inner(frames):
            self.seen += 1
            with_marks = [face for face in faces if face.landmarks is not None]
            smoothed = self.smoother.update([face.landmarks for face in with_marks], self.seen * self.frame_seconds)
            result.append(
                [_moved(face, marks) for face, marks in zip(with_marks, smoothed, strict=True)]
                + [face for face in faces if face.landmarks is None]
            )
        return result


def tracked_detector(detector: Detector, detect_every: int, smooth_landmarks: bool, frame_seconds: float) -> Detector:
    """``detector`` run every ``detect_every`` frames and/or with its landmarks smoothed over time.

    Both are off by default: GFPGANer detects every frame and aligns on raw
    landmarks, and the default output stays equal to its output.
    """
    if detect_every != 1:
        detector = EveryKDetector(detector, detect_every)
    if smooth_landmarks:
        detector = SmoothedDetector(detector, frame_seconds)
    return detector


def _moved(face: FaceDetection, landmarks: np.ndarray) -> FaceDetection:
    """``face`` with new landmarks, its box shifted by how far their centre moved."""
    assert face.landmarks is not None
    dx, dy = (landmarks.mean(axis=0) - face.landmarks.mean(axis=0)).tolist()
    x0, y0, x1, y1 = face.box
    return replace(face, box=(x0 + dx, y0 + dy, x1 + dx, y1 + dy), landmarks=landmarks.astype(np.float32))
