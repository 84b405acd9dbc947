"""Precision of the GFPGAN restorer on the CPU: float32, bfloat16 autocast per network, and "auto" by CPU features."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from gifstream.restore.compat import install_torchvision_shim

install_torchvision_shim()
pytest.importorskip("gfpgan")
pytest.importorskip("realesrgan")

from helpers import psnr, texture  # noqa: E402
from standins import tiny_networks  # noqa: E402

from gifstream.benchmark import random_state, with_landmarks  # noqa: E402
from gifstream.engine import ConfigError  # noqa: E402
from gifstream.restore import FaceDetection, GfpganNetworks, GfpganRestorer  # noqa: E402
from gifstream.restore import gfpgan as gfpgan_module  # noqa: E402
from gifstream.restore.gfpgan import ChannelsLast  # noqa: E402
from gifstream.restore.precision import BF16_NETWORKS, NETWORKS, has_native_bf16, resolve_precision  # noqa: E402
from gifstream.weights import get_entry  # noqa: E402

pytestmark = pytest.mark.models

# bfloat16 keeps 8 significant bits: each rounding is off by at most 2^-9 (0.2 %) of the value. Through a few
# layers and onto 255 levels that is about a level per pixel at worst, a PSNR above 40 dB; 35 dB leaves room.
# (bench/model_levers.py measured 47.2 dB for the real networks with random weights, all three in bfloat16.)
BF16_MIN_PSNR = 35.0
# torch.cpu.get_capabilities() as three kinds of CPU report it (only the features that matter here).
AVX2_ONLY = {"avx2": True, "avx512_f": False, "avx512_bf16": False, "amx_bf16": False}
AVX512_BF16 = {"avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_bf16": False}
AMX = {"avx2": True, "avx512_f": True, "avx512_bf16": False, "amx_bf16": True}


def one_face_frame() -> tuple[np.ndarray, FaceDetection]:
    """A 64x64 textured frame and one face filling most of it (template landmarks, eyes 16 pixels apart)."""
    return texture(64, 64, seed=3), with_landmarks(FaceDetection((12.0, 8.0, 52.0, 56.0), None, 0.99))


def first_convolution(networks: GfpganNetworks, role: str) -> nn.Module:
    net = getattr(networks, role)
    net = net.net if isinstance(net, ChannelsLast) else net
    return next(module for module in net.modules() if isinstance(module, nn.Conv2d))


def record_dtypes(networks: GfpganNetworks) -> dict[str, list[torch.dtype]]:
    """The dtype each network's first convolution computes in, per call, from now on (whichever thread calls)."""
    seen: dict[str, list[torch.dtype]] = {role: [] for role in NETWORKS}
    for role in NETWORKS:
        first_convolution(networks, role).register_forward_hook(
            lambda _module, _args, output, role=role: seen[role].append(output.dtype)
        )
    return seen


@pytest.fixture
def standin_restorer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., tuple[GfpganRestorer, dict]]:
    """Builds a GfpganRestorer on fresh stand-ins (one injected face per frame); gives it and its dtype record."""
    # Empty files in place of the weights (the stand-ins load none), so describe() can fingerprint them.
    files = [tmp_path / name for name in ("gfpgan.pth", "realesrgan.pth", "parsenet.pth")]
    for file in files:
        file.touch()

    def build(**options: Any) -> tuple[GfpganRestorer, dict[str, list[torch.dtype]]]:
        networks = tiny_networks()
        seen = record_dtypes(networks)
        monkeypatch.setattr(gfpgan_module, "load_networks", lambda *args: networks)
        _, face = one_face_frame()
        restorer = GfpganRestorer(
            files[0],
            files[1],
            None,
            files[2],
            detector=lambda frames: [[face] for _ in frames],
            **options,
        )
        return restorer, seen

    return build


def capabilities(monkeypatch: pytest.MonkeyPatch, reported: dict[str, bool]) -> None:
    """Make torch report ``reported`` as this CPU's features."""
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: dict(reported))


def restored(restorer: GfpganRestorer, frame: np.ndarray) -> np.ndarray:
    torch.manual_seed(0)  # the same decoder noise for both precisions (the stand-ins draw none; GFPGAN does)
    [result] = restorer.restore([frame])
    assert result.faces == 1
    return result.pixels


def test_bf16_runs_each_network_in_bfloat16_and_stays_close_to_fp32(standin_restorer) -> None:
    frame, _ = one_face_frame()
    fp32, fp32_seen = standin_restorer(precision="fp32")
    bf16, bf16_seen = standin_restorer(precision="bf16")

    expected, got = restored(fp32, frame), restored(bf16, frame)

    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert bf16.bf16_networks == BF16_NETWORKS
    # Autocast is per thread: the background (on a thread of its own) and the parser (called by facexlib's
    # paste-back) must run in bfloat16 too, not only GFPGAN on the calling thread.
    assert fp32_seen == {role: [torch.float32] for role in NETWORKS}
    assert bf16_seen == {role: [torch.bfloat16 if role in BF16_NETWORKS else torch.float32] for role in NETWORKS}
    assert got.shape == expected.shape == (128, 128, 3)
    assert not np.array_equal(got, expected)  # bfloat16 rounding shows somewhere
    assert psnr(got, expected) >= BF16_MIN_PSNR


@pytest.mark.parametrize(
    ("reported", "expected"),
    [(AVX2_ONLY, "fp32"), (AVX512_BF16, "bf16"), (AMX, "bf16")],
    ids=["avx2-only", "avx512-bf16", "amx"],
)
def test_auto_is_bf16_only_on_a_cpu_with_native_bfloat16(
    standin_restorer, monkeypatch: pytest.MonkeyPatch, reported: dict[str, bool], expected: str
) -> None:
    capabilities(monkeypatch, reported)
    restorer, seen = standin_restorer(precision="auto")
    frame, _ = one_face_frame()

    restored(restorer, frame)

    assert has_native_bf16() is (expected == "bf16")
    assert restorer.precision == expected and restorer.describe()["precision"] == expected
    dtype = torch.bfloat16 if expected == "bf16" else torch.float32
    assert seen["background"] == seen["parser"] == seen["face"] == [dtype]


@pytest.mark.parametrize(
    ("reported", "expected"), [(AVX2_ONLY, frozenset()), (AMX, BF16_NETWORKS)], ids=["avx2-only", "amx"]
)
def test_the_default_is_bf16_where_the_cpu_has_it_natively_and_fp32_elsewhere(
    standin_restorer, monkeypatch: pytest.MonkeyPatch, reported: dict[str, bool], expected: frozenset[str]
) -> None:
    capabilities(monkeypatch, reported)
    restorer, _ = standin_restorer()
    assert restorer.bf16_networks == expected
    assert restorer.precision == ("bf16" if expected else "fp32")


def test_bf16_on_a_cpu_that_would_emulate_it_warns_and_still_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    capabilities(monkeypatch, AVX2_ONLY)
    with pytest.warns(UserWarning, match=r"emulated, about 8x slower"):
        assert resolve_precision("bf16", "cpu") == "bf16"
    capabilities(monkeypatch, AVX512_BF16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", "cpu") == resolve_precision("auto", "cpu") == "bf16"


@pytest.mark.parametrize("wrong", ["fp16", "BF16", "", "float32"])
def test_an_unknown_precision_is_a_config_error_naming_the_allowed_values(standin_restorer, wrong: str) -> None:
    with pytest.raises(ConfigError, match=rf"precision must be one of 'fp32', 'bf16', 'auto'; got {wrong!r}"):
        standin_restorer(precision=wrong)


def test_bf16_is_refused_on_a_gpu_and_auto_keeps_the_gpu_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    capabilities(monkeypatch, AMX)  # the host CPU's bfloat16 says nothing about the GPU's networks
    with pytest.raises(ConfigError, match=r"precision 'bf16' is for the CPU; on cuda"):
        resolve_precision("bf16", "cuda")
    assert resolve_precision("auto", "cuda") == resolve_precision("fp32", "cuda") == "fp32"
    assert resolve_precision("auto", "cpu") == "bf16"


# --- The real networks (random weights in the release formats). ---


@pytest.fixture(scope="module")
def random_model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-weight GFPGAN v1.3, Real-ESRGAN x2plus and ParseNet files, under their release names."""
    folder = tmp_path_factory.mktemp("random-weights")
    torch.manual_seed(0)
    paths = {}
    for name in ("gfpgan_v1.3", "realesrgan_x2plus", "parsenet"):
        paths[name] = folder / get_entry(name).filename
        torch.save(random_state(name), paths[name])
    return paths


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not has_native_bf16(), reason="bfloat16 is emulated on this CPU (a GFPGAN forward takes minutes)")
def test_bf16_real_networks_stay_close_to_fp32(random_model_files: dict[str, Path]) -> None:
    frame, face = one_face_frame()

    def build(precision: str) -> GfpganRestorer:
        return GfpganRestorer(
            random_model_files["gfpgan_v1.3"],
            random_model_files["realesrgan_x2plus"],
            None,
            random_model_files["parsenet"],
            detector=lambda frames: [[face] for _ in frames],
            precision=precision,
        )

    expected = restored(build("fp32"), frame)
    got = restored(build("bf16"), frame)

    assert got.shape == expected.shape == (128, 128, 3)
    assert not np.array_equal(got, expected)
    assert psnr(got, expected) >= BF16_MIN_PSNR
