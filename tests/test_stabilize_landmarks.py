"""One-Euro filter and per-face landmark smoothing: jitter falls, steps are followed, tracks reset."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gifstream.engine.errors import ConfigError, InputError
from gifstream.stabilize import LandmarkSmoother, OneEuroFilter, OneEuroParams

FPS = 30.0


def face(x: float, y: float, eye_distance: float = 40.0) -> np.ndarray:
    """Five facexlib-ordered landmarks of a face centred near (x, y)."""
    half = eye_distance / 2
    return np.array(
        [[x - half, y - 10], [x + half, y - 10], [x, y + 5], [x - half * 0.8, y + 20], [x + half * 0.8, y + 20]]
    )


def test_jitter_on_a_constant_signal_is_reduced_as_a_low_pass_predicts() -> None:
    rng = np.random.default_rng(0)
    samples = 100.0 + rng.normal(0.0, 1.0, 3000)
    filt = OneEuroFilter(min_cutoff=1.0, beta=0.0)

    out = np.array([filt(x, i / FPS) for i, x in enumerate(samples)]).ravel()

    # With beta 0 the filter is an exponential average of weight a = 1 / (1 + tau / dt), tau = 1 / (2π fc),
    # whose output variance is a / (2 − a) of white noise's.
    a = 1.0 / (1.0 + (1.0 / (2 * math.pi * 1.0)) / (1.0 / FPS))
    ratio = out[100:].var() / samples[100:].var()
    assert ratio == pytest.approx(a / (2 - a), rel=0.25)
    assert ratio < 0.15
    assert abs(out[100:].mean() - 100.0) < 0.2


def test_speed_raises_the_cutoff_so_a_step_is_followed_quickly() -> None:
    adaptive = OneEuroFilter(min_cutoff=1.0, beta=0.05)
    fixed = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    signal = [0.0] * 10 + [100.0] * 20

    def frames_to_reach_90(filt: OneEuroFilter) -> int:
        out = [float(filt(x, i / FPS)) for i, x in enumerate(signal)]
        return next(i for i, v in enumerate(out) if v >= 90.0) - 10

    assert frames_to_reach_90(adaptive) <= 4
    assert frames_to_reach_90(fixed) >= 10  # a plain 1 Hz low-pass lags by about 12 frames


def test_after_reset_the_next_sample_passes_through() -> None:
    filt = OneEuroFilter()
    for i in range(10):
        filt(np.zeros(2), i / FPS)
    assert np.all(filt(np.array([50.0, -20.0]), 10 / FPS) < 40)  # still smoothing

    filt.reset()

    np.testing.assert_array_equal(filt(np.array([80.0, 10.0]), 11 / FPS), [80.0, 10.0])


def test_timestamps_must_increase() -> None:
    filt = OneEuroFilter()
    filt(1.0, 0.5)

    with pytest.raises(InputError, match="timestamps must increase"):
        filt(1.0, 0.5)


def test_invalid_parameters_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="min_cutoff must be > 0"):
        OneEuroParams(min_cutoff=0)
    with pytest.raises(ConfigError, match="beta must be >= 0"):
        OneEuroParams(beta=-1)


def test_each_face_is_smoothed_on_its_own_track_whatever_the_detection_order() -> None:
    rng = np.random.default_rng(1)
    smoother = LandmarkSmoother()
    left, right = face(60, 80), face(200, 80)
    raw_errors, smoothed_errors = [], []
    for i in range(60):
        noisy_left = left + rng.normal(0, 1.5, (5, 2))
        noisy_right = right + rng.normal(0, 1.5, (5, 2))
        order = [noisy_left, noisy_right] if i % 2 else [noisy_right, noisy_left]
        out = smoother.update(order, i / FPS)
        got_left, got_right = (out[1], out[0]) if i % 2 == 0 else (out[0], out[1])
        if i >= 20:
            raw_errors.append(np.abs(noisy_left - left).mean())
            smoothed_errors.append(np.abs(got_left - left).mean())
        assert np.abs(got_right - right).max() < 8  # never pulled towards the other face

    assert np.mean(smoothed_errors) < 0.5 * np.mean(raw_errors)


def test_tracks_restart_when_a_face_appears_reappears_or_at_a_cut() -> None:
    smoother = LandmarkSmoother()
    a = face(60, 80)
    for i in range(5):
        smoother.update([a], i / FPS)

    moved = a + 3.0
    newcomer = face(220, 90)
    out = smoother.update([moved, newcomer], 5 / FPS)
    assert np.abs(out[0] - moved).max() > 0.5  # the known face is smoothed
    np.testing.assert_array_equal(out[1], newcomer)  # a new face starts from its detection

    smoother.update([newcomer], 6 / FPS)  # the first face is gone for a frame...
    np.testing.assert_array_equal(smoother.update([moved, newcomer], 7 / FPS)[0], moved)  # ...and restarts

    after_cut = [a + 5.0, newcomer + 5.0]
    out = smoother.update(after_cut, 8 / FPS, cut=True)
    np.testing.assert_array_equal(out[0], after_cut[0])
    np.testing.assert_array_equal(out[1], after_cut[1])


def test_a_face_replacing_another_far_away_starts_its_own_track() -> None:
    smoother = LandmarkSmoother()
    for i in range(5):
        smoother.update([face(60, 80)], i / FPS)

    elsewhere = face(200, 150)  # the only face now, 150 px from the old one (eyes 40 px apart)

    np.testing.assert_array_equal(smoother.update([elsewhere], 5 / FPS)[0], elsewhere)


def test_landmarks_must_be_five_points() -> None:
    with pytest.raises(InputError, match=r"face 0: landmarks must be a \(5, 2\) array"):
        LandmarkSmoother().update([np.zeros((68, 2))], 0.0)
