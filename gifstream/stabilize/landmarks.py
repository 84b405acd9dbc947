"""Causal smoothing of face landmarks: the One-Euro filter (Casiez, Roussel & Vogel, CHI 2012).

Detectors place the five landmarks a pixel or two differently on every
frame, and the face crop aligned on them jitters with it. The One-Euro filter
is a low-pass whose cut-off rises with the signal's speed: at rest it
removes jitter, in motion it follows with little lag. Each face is filtered
on its own track, and a track restarts (first sample passed through) when
its face appears, after it disappears, and on a scene cut.

Units: landmarks in pixels, timestamps in seconds, cut-offs in Hz, ``beta``
in Hz per (pixel/second).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..engine.errors import ConfigError, InputError

# Defaults for 5-point landmarks in pixels: at rest the 1 Hz cut-off removes
# most detector jitter at 25-30 fps (an EMA of weight ~0.17), and a face moving
# at 100 px/s raises it to 1 + 0.05 * 100 = 6 Hz (weight ~0.55), little lag.
DEFAULT_MIN_CUTOFF = 1.0
DEFAULT_BETA = 0.05
DEFAULT_D_CUTOFF = 1.0
# A detection belongs to a track when its landmark centroid lies within this
# many inter-ocular distances of the track's last centroid.
DEFAULT_MATCH_RADIUS = 0.5


@dataclass(frozen=True, slots=True)
class OneEuroParams:
    """The filter's three settings: minimum cut-off (Hz), speed coefficient, derivative cut-off (Hz)."""

    min_cutoff: float = DEFAULT_MIN_CUTOFF
    beta: float = DEFAULT_BETA
    d_cutoff: float = DEFAULT_D_CUTOFF

    def __post_init__(self) -> None:
        if not self.min_cutoff > 0:
            raise ConfigError(f"One-Euro min_cutoff must be > 0 Hz, got {self.min_cutoff}")
        if not self.beta >= 0:
            raise ConfigError(f"One-Euro beta must be >= 0, got {self.beta}")
        if not self.d_cutoff > 0:
            raise ConfigError(f"One-Euro d_cutoff must be > 0 Hz, got {self.d_cutoff}")


@dataclass(frozen=True, slots=True)
class OneEuroState:
    """What the filter remembers: the last filtered value, its filtered derivative and its time."""

    value: np.ndarray
    derivative: np.ndarray
    t: float


def smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
    """Exponential smoothing weight of a first-order low-pass at ``cutoff`` Hz sampled every ``dt`` s."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


def one_euro_step(params: OneEuroParams, state: OneEuroState | None, x: np.ndarray, t: float) -> OneEuroState:
    """The filter's new state after sample ``x`` at time ``t``; its ``value`` is the filtered sample.

    With no state the sample passes through unchanged (a track's start).
    Timestamps must increase strictly.
    """
    x = np.asarray(x, dtype=np.float64)
    if state is None:
        return OneEuroState(value=x.copy(), derivative=np.zeros_like(x), t=float(t))
    if x.shape != state.value.shape:
        raise InputError(f"One-Euro sample has shape {x.shape}, the track has {state.value.shape}")
    dt = float(t) - state.t
    if not dt > 0:
        raise InputError(f"One-Euro timestamps must increase: got t={t} after t={state.t}")
    raw_derivative = (x - state.value) / dt
    a_d = smoothing_factor(params.d_cutoff, dt)
    derivative = a_d * raw_derivative + (1.0 - a_d) * state.derivative
    cutoff = params.min_cutoff + params.beta * np.abs(derivative)
    a = smoothing_factor(cutoff, dt)
    value = a * x + (1.0 - a) * state.value
    return OneEuroState(value=value, derivative=derivative, t=float(t))


class OneEuroFilter:
    """A causal One-Euro filter over a scalar or an array (every element filtered on its own)."""

    def __init__(
        self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA, d_cutoff: float = DEFAULT_D_CUTOFF
    ) -> None:
        self.params = OneEuroParams(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
        self.state: OneEuroState | None = None

    def __call__(self, x: np.ndarray | float, t: float) -> np.ndarray:
        """The filtered value of sample ``x`` taken at time ``t`` (seconds)."""
        self.state = one_euro_step(self.params, self.state, np.asarray(x), t)
        return self.state.value.copy()

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self.state = None


def check_landmarks(index: int, landmarks: np.ndarray) -> np.ndarray:
    marks = np.asarray(landmarks, dtype=np.float64)
    if marks.shape != (5, 2):
        raise InputError(f"face {index}: landmarks must be a (5, 2) array of (x, y) points, got shape {marks.shape}")
    return marks


def eye_distance(landmarks: np.ndarray) -> float:
    """Distance between the two eye points (facexlib order: left eye, right eye, nose, mouth corners)."""
    return float(np.linalg.norm(landmarks[0] - landmarks[1]))


def match_faces(tracks: Sequence[np.ndarray], detections: Sequence[np.ndarray], radius: float) -> dict[int, int]:
    """{detection index: track index} pairing each detection with the nearest track's last landmarks.

    The pairing minimises the total centroid distance (Hungarian algorithm);
    a pair counts only when the centroids are closer than ``radius`` times
    the detection's inter-ocular distance, so a new face is never glued to
    an old track.
    """
    if not tracks or not detections:
        return {}
    track_centres = np.array([t.mean(axis=0) for t in tracks])
    detection_centres = np.array([d.mean(axis=0) for d in detections])
    distance = np.linalg.norm(detection_centres[:, None, :] - track_centres[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(distance)
    return {
        int(d): int(t)
        for d, t in zip(rows, cols, strict=True)
        if distance[d, t] < radius * max(eye_distance(detections[d]), 1.0)
    }


class LandmarkSmoother:
    """One-Euro smoothing of every face's 5-point landmarks, frame by frame.

    Call :meth:`update` once per frame with all the faces detected in it.
    Faces are matched to the previous frame's tracks by landmark centroid;
    a face with no match starts a new track (its landmarks pass through), a
    track with no face this frame ends, and ``cut=True`` ends every track
    first, so nothing is smoothed across a scene cut.
    """

    def __init__(self, params: OneEuroParams | None = None, match_radius: float = DEFAULT_MATCH_RADIUS) -> None:
        if not match_radius > 0:
            raise ConfigError(f"match_radius must be > 0 inter-ocular distances, got {match_radius}")
        self.params = params or OneEuroParams()
        self.match_radius = match_radius
        self.tracks: list[OneEuroState] = []

    def update(self, faces: Sequence[np.ndarray], t: float, *, cut: bool = False) -> list[np.ndarray]:
        """Smoothed (5, 2) landmarks for ``faces`` (same order), detected in the frame shown at ``t`` seconds."""
        detections = [check_landmarks(i, face) for i, face in enumerate(faces)]
        if cut:
            self.reset()
        matches = match_faces([track.value for track in self.tracks], detections, self.match_radius)
        self.tracks = [
            one_euro_step(self.params, self.tracks[matches[i]] if i in matches else None, marks, t)
            for i, marks in enumerate(detections)
        ]
        return [track.value.copy() for track in self.tracks]

    def reset(self) -> None:
        """End every track: the next faces start afresh."""
        self.tracks = []
