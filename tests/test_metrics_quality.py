"""PSNR/SSIM at matching geometry, and LPIPS built offline from a local AlexNet checkpoint."""

from __future__ import annotations

import inspect
import math
import socket
from pathlib import Path

import cv2
import lpips
import numpy as np
import pytest
import torch
import torchvision
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gifstream.engine.errors import InputError
from gifstream.metrics import LpipsMetric, MetricUnavailable, match_geometry, psnr, ssim


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def upscale_by_repeat(image: np.ndarray, factor: int = 2) -> np.ndarray:
    """Each pixel becomes a factor×factor block, so an area downscale gives the original back exactly."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


@pytest.fixture(scope="module")
def face_crop(shared_testdata: Path) -> np.ndarray:
    face = read_rgb(shared_testdata / "faces-still" / "Adele_crop.png")
    return np.ascontiguousarray(face[192:320, 160:320])  # 160x128 around the eyes


@pytest.fixture(scope="module")
def degraded(face_crop: np.ndarray) -> np.ndarray:
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(face_crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 20])
    assert ok
    return cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# --- PSNR / SSIM -------------------------------------------------------------------------------


def test_psnr_of_a_unit_error_is_48_13_db() -> None:
    reference = np.zeros((8, 8, 3), np.uint8)
    test = np.ones((8, 8, 3), np.uint8)
    assert psnr(reference, test) == pytest.approx(10 * math.log10(255**2), abs=1e-9)  # MSE = 1


@pytest.mark.shared
def test_psnr_and_ssim_equal_scikit_image_at_the_same_size(face_crop: np.ndarray, degraded: np.ndarray) -> None:
    expected_psnr = peak_signal_noise_ratio(face_crop, degraded, data_range=255)
    expected_ssim = structural_similarity(face_crop, degraded, data_range=255, channel_axis=2)

    assert psnr(face_crop, degraded) == expected_psnr
    assert ssim(face_crop, degraded) == pytest.approx(expected_ssim, abs=1e-6)  # computed in float32
    assert 20 < expected_psnr < 45 and 0.3 < expected_ssim < 0.99  # a real, visible degradation


@pytest.mark.shared
def test_2x_output_is_compared_at_the_reference_size(face_crop: np.ndarray, degraded: np.ndarray) -> None:
    # A pixel-repeated 2× copy area-downscales back to the reference exactly.
    assert psnr(face_crop, upscale_by_repeat(face_crop)) == math.inf
    assert ssim(face_crop, upscale_by_repeat(face_crop)) == pytest.approx(1.0)
    # A degraded 2× output scores what the degradation scores at 1×.
    assert psnr(face_crop, upscale_by_repeat(degraded)) == pytest.approx(psnr(face_crop, degraded))
    assert ssim(face_crop, upscale_by_repeat(degraded)) == pytest.approx(ssim(face_crop, degraded))
    # A smooth 2× output follows the INTER_AREA rule.
    smooth = cv2.resize(degraded, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    back = cv2.resize(smooth, (face_crop.shape[1], face_crop.shape[0]), interpolation=cv2.INTER_AREA)
    assert psnr(face_crop, smooth) == peak_signal_noise_ratio(face_crop, back, data_range=255)


def test_aspect_mismatch_raises_instead_of_squashing() -> None:
    reference = np.zeros((40, 60, 3), np.uint8)
    with pytest.raises(InputError, match="aspect ratios differ"):
        psnr(reference, np.zeros((80, 60, 3), np.uint8))
    with pytest.raises(InputError, match="cannot compare a 60x42 image with a 60x40 reference"):
        ssim(reference, np.zeros((42, 60, 3), np.uint8))


def test_rounding_within_one_pixel_is_accepted() -> None:
    reference = np.full((25, 50, 3), 100, np.uint8)
    odd_output = np.full((51, 100, 3), 100, np.uint8)  # 2× width, height rounded up
    assert match_geometry(reference, odd_output).shape == (25, 50, 3)
    assert psnr(reference, odd_output) == math.inf


def test_quality_metrics_reject_non_uint8_and_tiny_images() -> None:
    with pytest.raises(InputError, match="uint8"):
        psnr(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="SSIM needs images of at least 7x7"):
        ssim(np.zeros((6, 20, 3), np.uint8), np.zeros((6, 20, 3), np.uint8))


# --- LPIPS -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to download a checkpoint fails the test loudly."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random AlexNet backbone weights under torchvision's checkpoint names ("features.N.weight").

    Only the ``features.*`` part is written: LPIPS never uses the classifier,
    and torchvision's classifier tensors would make the file 240 MB.
    """
    torch.manual_seed(0)
    with torch.device("meta"):
        template = torchvision.models.alexnet(weights=None)
    features = template.features.to_empty(device="cpu")
    for layer in features:
        if isinstance(layer, torch.nn.Conv2d):
            layer.reset_parameters()
    path = tmp_path_factory.mktemp("torch-hub") / "alexnet-owt-7be5be79.pth"
    torch.save({f"features.{key}": value for key, value in features.state_dict().items()}, path)
    return path


@pytest.fixture(scope="module")
def metric(alexnet_file: Path) -> LpipsMetric:
    return LpipsMetric(alexnet_file)


def test_missing_alexnet_file_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    absent = tmp_path / "alexnet-owt-7be5be79.pth"
    with pytest.raises(MetricUnavailable, match=r"AlexNet's ImageNet weights \(alexnet-owt-7be5be79.pth\)") as info:
        LpipsMetric(absent)
    assert str(absent) in str(info.value)


def test_default_location_is_torch_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    with pytest.raises(MetricUnavailable, match="none were found at") as info:
        LpipsMetric(None)
    assert str(expected) in str(info.value)


def test_a_file_that_is_not_alexnet_is_unavailable(tmp_path: Path) -> None:
    wrong = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(MetricUnavailable, match="not an AlexNet checkpoint"):
        LpipsMetric(wrong)
    wrong.write_bytes(b"not a checkpoint")
    with pytest.raises(MetricUnavailable, match="cannot read AlexNet weights"):
        LpipsMetric(wrong)


def test_weights_come_from_the_file_and_the_lpips_package(metric: LpipsMetric, alexnet_file: Path) -> None:
    saved = torch.load(alexnet_file, map_location="cpu", weights_only=True)
    backbone = metric.model.net.state_dict()
    torch.testing.assert_close(backbone["slice1.0.weight"], saved["features.0.weight"])
    torch.testing.assert_close(backbone["slice5.10.bias"], saved["features.10.bias"])
    bundled = Path(inspect.getfile(lpips)).parent / "weights" / "v0.1" / "alex.pth"
    linear = torch.load(bundled, map_location="cpu", weights_only=True)
    torch.testing.assert_close(metric.model.lin0.model[1].weight, linear["lin0.model.1.weight"])


def test_lpips_is_zero_for_identical_frames_and_positive_otherwise(metric: LpipsMetric) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)

    assert metric(a, a) == 0.0
    distance = metric(a, b)
    assert math.isfinite(distance)
    assert distance > 0
    assert metric(a, upscale_by_repeat(a)) == 0.0  # b is brought to a's geometry first


def test_tlp_compares_input_and_output_change(metric: LpipsMetric) -> None:
    rng = np.random.default_rng(1)
    prev, cur = (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2))

    # Output changes exactly like the input: no temporal difference.
    assert metric.tlp(prev, cur, prev, cur) == 0.0
    # Output frozen while the input changes: the whole input change, ×100.
    assert metric.tlp(prev, cur, prev, prev) == pytest.approx(metric(prev, cur) * 100)
    assert metric.tlp(prev, cur, prev, prev) > 0
