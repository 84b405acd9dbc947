"""Restoration options reach the restorer: --precision for GFPGAN, --detect-every for every restorer."""

from __future__ import annotations

import numpy as np
import pytest

from gifstream.api import build_stages
from gifstream.engine import ConfigError
from gifstream.options import PRECISIONS, ProcessOptions
from gifstream.restore.detect import FaceDetection
from gifstream.restore.precision import PRECISION_CHOICES
from gifstream.stages.restore import RestoreConfig, RestoreStage, build_restorer


def test_the_precision_option_offers_what_the_restorer_accepts() -> None:
    assert PRECISIONS == PRECISION_CHOICES
    with pytest.raises(ConfigError, match="--precision must be one of fp32, bf16, auto"):
        ProcessOptions(precision="fp16")


def test_precision_and_detect_every_reach_the_restore_stage() -> None:
    options = ProcessOptions(restorer="classic", precision="auto", detect_every=3, flow="none", metrics=())
    [stage] = build_stages(options)

    assert isinstance(stage, RestoreStage)
    assert (stage.config.precision, stage.config.detect_every) == ("auto", 3)


class CountingDetector:
    def __init__(self) -> None:
        self.frames_seen = 0

    def __call__(self, frames: list[np.ndarray]) -> list[list[FaceDetection]]:
        self.frames_seen += len(frames)
        return [[FaceDetection((8.0, 8.0, 40.0, 40.0))] for _ in frames]


def test_the_classic_restorer_detects_every_kth_frame_and_treats_every_frame() -> None:
    detector = CountingDetector()
    restorer = build_restorer("classic", RestoreConfig(restorer="classic", detector=detector, detect_every=3), "cpu")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(7)]

    restored = [restorer.restore([frame])[0] for frame in frames]

    assert detector.frames_seen == 3  # frames 0, 3 and 6
    assert [r.faces for r in restored] == [1] * 7  # the faces found are carried to the frames between
