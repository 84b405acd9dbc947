"""The fast metric paths give the reference numbers: PSNR to the bit, E_warp as with torch's grid_sample."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from gifstream.metrics import psnr, warp_error_pair
from gifstream.motion.warp import FlowSampler, inside_frame


@pytest.mark.parametrize("seed", range(6))
def test_psnr_is_scikit_images_to_the_last_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = rng.integers(7, 400, 2)
    reference = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    noise = rng.normal(0, rng.uniform(0.5, 60), reference.shape)
    test = np.clip(reference + noise, 0, 255).astype(np.uint8)

    assert psnr(reference, test) == peak_signal_noise_ratio(reference, test, data_range=255)


def test_psnr_of_the_largest_possible_error_is_exact() -> None:
    black, white = np.zeros((300, 400, 3), np.uint8), np.full((300, 400, 3), 255, np.uint8)
    assert psnr(black, white) == 0.0  # MSE = 255², so 10 log10(1)


def test_numpy_sampler_reads_what_grid_sample_reads() -> None:
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (37, 53, 5)).astype(np.float32)
    flow = rng.normal(0, 6, (37, 53, 2)).astype(np.float32)  # many samples land outside: border reads
    ys, xs = np.mgrid[0:37, 0:53].astype(np.float32)
    grid = np.stack([2 * (xs + flow[..., 0]) / 52 - 1, 2 * (ys + flow[..., 1]) / 36 - 1], axis=-1)
    expected = F.grid_sample(
        torch.from_numpy(image.transpose(2, 0, 1))[None],
        torch.from_numpy(grid)[None],
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )[0].numpy()

    np.testing.assert_allclose(FlowSampler(flow).warp_planes(image), expected, atol=2e-3)


def test_warp_error_of_a_pure_translation_is_zero_on_the_pixels_that_stay_inside() -> None:
    rng = np.random.default_rng(4)
    scene = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    frame_t, frame_t1 = scene[:, :-3], scene[:, 3:]  # the camera moves right: content moves 3 px left
    forward = np.zeros((60, 77, 2), np.float32)
    forward[..., 0] = -3.0
    backward = -forward

    pair = warp_error_pair(frame_t, frame_t1, frame_t, frame_t1, forward, backward)

    assert inside_frame(forward).sum() == 60 * 74
    assert pair.input == 0.0 and pair.output == 0.0 and pair.ratio == 1.0
