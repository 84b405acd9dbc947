"""The restore stage: the BlockingStage contract, alpha, reuse of repeats, and choosing a restorer."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from gifstream.engine import ConfigError, Frame, RunContext
from gifstream.restore import compat
from gifstream.stages import create
from gifstream.stages.restore import RestoreConfig, RestoreStage, scale_alpha, select_restorer
from gifstream.weights import WeightsMissingError
from gifstream.weights.testing import install_fake, override_registry

GFPGAN_NAMES = ("gfpgan_v1.3", "realesrgan_x2plus", "retinaface_resnet50", "parsenet")


@pytest.fixture(scope="module")
def face_frame() -> np.ndarray:
    """The astronaut at 160x160: her face is about 30 pixels wide, big enough for the cascade."""
    return cv2.resize(data.astronaut(), (160, 160), interpolation=cv2.INTER_AREA)


def half_transparent(height: int, width: int) -> np.ndarray:
    alpha = np.full((height, width), 255, np.uint8)
    alpha[:, : width // 2] = 0
    return alpha


async def run_stage(stage: RestoreStage, batches: list[list[Frame]]) -> list[Frame]:
    """Feed ``batches`` the way the runner does: each batch gets a snapshot of the previous output."""
    await stage.setup(RunContext(device="cpu"))
    out: list[Frame] = []
    previous = None
    try:
        for batch in batches:
            result = await stage.process(batch, previous)
            out.extend(result)
            previous = dataclasses.replace(result[-1], meta=dict(result[-1].meta))
    finally:
        await stage.close()
    return out


async def test_classic_stage_doubles_frames_and_alpha_and_records_faces(face_frame: np.ndarray) -> None:
    frames = [
        Frame(0, face_frame.copy(), duration_ms=40, alpha=half_transparent(160, 160)),
        Frame(1, face_frame[:, ::-1].copy(), duration_ms=60),
    ]
    inputs = [f.pixels for f in frames]
    stage = RestoreStage(RestoreConfig(restorer="classic", max_batch=2))
    assert (stage.name, stage.max_batch) == ("restore", 2)

    out = await run_stage(stage, [frames])

    assert [f.index for f in out] == [0, 1] and [f.duration_ms for f in out] == [40, 60]
    for frame, original in zip(out, inputs, strict=True):
        assert frame.pixels.shape == (320, 320, 3) and frame.pixels.dtype == np.uint8
        assert frame.source is original  # the input, kept for the metrics
        assert frame.meta["restore"]["restorer"] == "classic"
        assert frame.meta["restore"]["faces"] == 1
        assert frame.meta["restore"]["reused"] is False
    assert out[0].alpha is not None and out[0].alpha.shape == (320, 320)
    assert np.array_equal(out[0].alpha, half_transparent(320, 320))  # a binary mask stays binary and crisp
    assert out[1].alpha is None
    details = stage.describe()
    assert (details["restorer"], details["requested"], details["frames"], details["faces"]) == (
        "classic",
        "classic",
        2,
        2,
    )


async def test_repeated_frame_reuses_the_previous_output_across_batches(face_frame: np.ndarray) -> None:
    stage = RestoreStage(RestoreConfig(restorer="classic"))
    batches = [[Frame(0, face_frame.copy())], [Frame(1, face_frame.copy())], [Frame(2, face_frame[::-1].copy())]]

    out = await run_stage(stage, batches)

    assert [f.meta["restore"]["reused"] for f in out] == [False, True, False]
    assert np.array_equal(out[1].pixels, out[0].pixels)
    assert out[1].meta["restore"]["faces"] == out[0].meta["restore"]["faces"]
    assert stage.describe()["reused_frames"] == 1


async def test_source_set_by_an_earlier_stage_is_kept() -> None:
    earlier_input = np.zeros((8, 8, 3), np.uint8)
    frame = Frame(0, np.full((8, 8, 3), 77, np.uint8), source=earlier_input)

    [out] = await run_stage(RestoreStage(RestoreConfig(restorer="none", scale=2)), [[frame]])

    assert out.source is earlier_input
    assert np.array_equal(out.pixels, np.full((16, 16, 3), 77, np.uint8))
    assert out.meta["restore"] == {"restorer": "none", "faces": 0, "reused": False, "input_kept": False}


def test_soft_alpha_keeps_its_gradations() -> None:
    ramp = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (4, 1))
    scaled = scale_alpha(ramp, (32, 8))
    expected = np.asarray(Image.fromarray(ramp).resize((32, 8), Image.Resampling.LANCZOS))
    assert np.array_equal(scaled, expected)
    assert len(np.unique(scaled)) > 10


def test_auto_without_gfpgan_weights_picks_classic_and_says_how_to_fetch(tmp_path) -> None:
    name, reason = select_restorer(RestoreConfig(restorer="auto", weights_dir=str(tmp_path)))
    assert name == "classic"
    assert "\n" not in reason
    assert reason.startswith("GFPGAN weights not cached (GFPGANv1.3.pth, RealESRGAN_x2plus.pth,")
    assert "using the offline classic restorer" in reason
    assert "gifstream models fetch gfpgan_v1.3 realesrgan_x2plus retinaface_resnet50 parsenet" in reason


def test_auto_names_only_the_missing_file(tmp_path) -> None:
    with override_registry():
        for name in GFPGAN_NAMES[:3]:
            install_fake(name, b"stand-in", tmp_path)
        name, reason = select_restorer(RestoreConfig(restorer="auto", weights_dir=str(tmp_path)))
    assert name == "classic"
    assert "(parsing_parsenet.pth)" in reason and "models fetch parsenet --weights-dir" in reason


def test_auto_with_every_gfpgan_weight_cached_picks_gfpgan(tmp_path, monkeypatch) -> None:
    # Importing basicsr & co. takes seconds; whether they import is the next test's subject.
    monkeypatch.setattr(compat, "model_libraries_missing", lambda: None)
    with override_registry():
        for name in GFPGAN_NAMES:
            install_fake(name, b"stand-in", tmp_path)
        selected = select_restorer(RestoreConfig(restorer="auto", weights_dir=str(tmp_path)))
    assert selected == ("gfpgan", "GFPGAN weights cached")


def test_auto_with_weights_but_without_the_model_libraries_picks_classic(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(compat, "model_libraries_missing", lambda: "the GFPGAN restorer needs the 'gfpgan' package")
    with override_registry():
        for name in GFPGAN_NAMES:
            install_fake(name, b"stand-in", tmp_path)
        name, reason = select_restorer(RestoreConfig(restorer="auto", weights_dir=str(tmp_path)))
    assert name == "classic"
    assert reason == (
        "GFPGAN unavailable: the GFPGAN restorer needs the 'gfpgan' package; using the offline classic restorer"
    )


def test_gfpgan_without_weights_is_a_one_line_weights_missing_error(tmp_path) -> None:
    config = RestoreConfig(restorer="gfpgan", weights_dir=str(tmp_path))
    with pytest.raises(WeightsMissingError, match=r"GFPGANv1\.3\.pth .*gifstream models fetch gfpgan_v1\.3") as err:
        select_restorer(config)
    assert "\n" not in str(err.value)


async def test_gfpgan_stage_set_up_without_weights_fails_with_that_error(tmp_path) -> None:
    stage = RestoreStage(RestoreConfig(restorer="gfpgan", weights_dir=str(tmp_path)))
    with pytest.raises(WeightsMissingError):
        await stage.setup(RunContext(device="cpu"))
    await stage.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"restorer": "codeformer"}, "--restorer must be one of auto, gfpgan, classic, none"),
        ({"scale": 0}, r"--scale must be in \(0, 16\]"),
        ({"max_batch": 0}, "--batch must be >= 1"),
        ({"max_faces_per_batch": 0}, "max_faces_per_batch must be >= 1"),
        ({"gfpgan_model": "gfpgan_v9"}, "GFPGAN model must be one of gfpgan_v1.3, gfpgan_v1.4"),
    ],
)
def test_bad_config_is_a_config_error(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RestoreConfig(**options)


def test_stage_is_registered_by_name() -> None:
    stage = create("restore", restorer="classic", scale=3)
    assert isinstance(stage, RestoreStage) and stage.config.scale == 3
