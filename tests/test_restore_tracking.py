"""Detection every k frames and landmark smoothing, as detector wrappers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from gifstream.engine import ConfigError
from gifstream.restore.detect import FaceDetection
from gifstream.restore.tracking import EveryKDetector, SmoothedDetector

FACE = np.array([[40, 50], [60, 50], [50, 60], [42, 70], [58, 70]], np.float32)


class ScriptedDetector:
    """Gives the landmarks stored for each frame (the frame's top-left pixel is its number)."""

    def __init__(self, marks: dict[int, np.ndarray]) -> None:
        self.marks = marks
        self.seen: list[int] = []

    def __call__(self, frames: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        out = []
        for frame in frames:
            number = int(frame[0, 0, 0])
            self.seen.append(number)
            marks = self.marks.get(number)
            out.append([] if marks is None else [FaceDetection((30, 40, 70, 80), marks)])
        return out


def frames(numbers: range) -> list[np.ndarray]:
    return [np.full((4, 4, 3), n, np.uint8) for n in numbers]


def test_detection_runs_every_k_frames_across_batches_and_carries_faces_between() -> None:
    inner = ScriptedDetector({n: FACE + n for n in range(10)})
    detector = EveryKDetector(inner, k=3)
    first = detector(frames(range(0, 4)))
    second = detector(frames(range(4, 10)))
    assert inner.seen == [0, 3, 6, 9]
    carried = [faces[0].landmarks[0, 0] for faces in first + second]
    assert carried == [40, 40, 40, 43, 43, 43, 46, 46, 46, 49]
    assert detector.calls == 4


def test_every_frame_when_k_is_one_and_bad_k_is_refused() -> None:
    inner = ScriptedDetector({})
    EveryKDetector(inner, k=1)(frames(range(5)))
    assert inner.seen == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="--detect-every"):
        EveryKDetector(inner, k=0)


def test_smoothing_reduces_landmark_jitter_and_moves_the_box_with_them() -> None:
    rng = np.random.default_rng(0)
    jittered = {n: FACE + rng.normal(0, 1.5, FACE.shape).astype(np.float32) for n in range(60)}
    raw = ScriptedDetector(jittered)
    smoothed = SmoothedDetector(ScriptedDetector(jittered), frame_seconds=0.04)
    raw_marks = np.stack([faces[0].landmarks for faces in raw(frames(range(60)))])
    out = smoothed(frames(range(60)))
    smooth_marks = np.stack([faces[0].landmarks for faces in out])
    # Frame-to-frame motion of the points (what makes an aligned crop jump) falls a lot.
    assert np.abs(np.diff(smooth_marks, axis=0)).mean() < 0.5 * np.abs(np.diff(raw_marks, axis=0)).mean()
    for faces in out:
        x0, y0, _, _ = faces[0].box
        shift = faces[0].landmarks.mean(axis=0) - jittered[0].mean(axis=0)
        assert abs(x0 - 30) < 5 and abs(y0 - 40) < 5 and np.all(np.abs(shift) < 5)


def test_a_face_that_appears_passes_through_unsmoothed() -> None:
    marks = {n: FACE + 30 * (n >= 5) for n in range(8)}
    marks[4] = None  # gone for a frame: its track ends
    detector = SmoothedDetector(ScriptedDetector({k: v for k, v in marks.items() if v is not None}))
    out = detector(frames(range(8)))
    assert out[4] == []
    assert np.allclose(out[5][0].landmarks, FACE + 30)


def test_tracked_detector_composes_the_wrappers_only_when_asked() -> None:
    from gifstream.restore.tracking import tracked_detector

    inner = ScriptedDetector({n: FACE for n in range(6)})
    assert tracked_detector(inner, 1, False, 0.1) is inner  # the default keeps GFPGANer's behaviour
    both = tracked_detector(inner, 2, True, 0.1)
    assert isinstance(both, SmoothedDetector) and isinstance(both.inner, EveryKDetector)
    both(frames(range(6)))
    assert inner.seen == [0, 2, 4]


def test_the_command_line_options_reach_the_gfpgan_restorer(monkeypatch: pytest.MonkeyPatch) -> None:
    from gifstream.api import build_stages
    from gifstream.cli import build_parser, options_from_args
    from gifstream.restore import gfpgan
    from gifstream.stages.restore import build_restorer

    args = build_parser().parse_args(
        ["process", "in.gif", "-o", "o.gif", "--restorer", "gfpgan", "--detect-every", "4", "--smooth-landmarks"]
    )
    (stage,) = [s for s in build_stages(options_from_args(args)) if s.name == "restore"]
    assert (stage.config.detect_every, stage.config.smooth_landmarks) == (4, True)
    seen = {}
    monkeypatch.setattr(gfpgan, "GfpganRestorer", lambda *a, **kw: seen.update(kw) or "restorer")
    monkeypatch.setattr(
        "gifstream.stages.restore.gfpgan_weight_paths",
        lambda config: dict.fromkeys(("gfpgan", "realesrgan", "detection", "parsing"), None),
    )
    assert build_restorer("gfpgan", stage.config, "cpu") == "restorer"
    assert (seen["detect_every"], seen["smooth_landmarks"]) == (4, True)
