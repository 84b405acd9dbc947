"""Small builders shared by the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture: every patch is distinct, and bilinear sampling of it is accurate."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 1.5)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255
    return smooth.round().astype(np.uint8)


def textured_frames(count: int, width: int = 64, height: int = 48, seed: int = 0) -> list[np.ndarray]:
    """Frames of a blocky texture drifting right, so each differs from the last."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 4 + 1, (width + count * 2) // 4 + 1, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(base, 4, 0), 4, 1)
    return [np.ascontiguousarray(big[:height, 2 * i : 2 * i + width]) for i in range(count)]


def write_reference_gif(path: Path, frames: list[np.ndarray], durations: list[int], loop: int | None) -> None:
    """A GIF written by Pillow itself (independent of gifstream's encoder)."""
    images = [Image.fromarray(f).quantize(256, method=Image.Quantize.MEDIANCUT) for f in frames]
    extra = {} if loop is None else {"loop": loop}
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, disposal=1, **extra)


def read_gif(path: Path | BinaryIO) -> tuple[list[np.ndarray], list[int], int | None]:
    """Frames (RGB), per-frame durations and loop count, as Pillow reads them."""
    with Image.open(path) as image:
        frames, durations = [], []
        for index in range(image.n_frames):
            image.seek(index)
            frames.append(np.asarray(image.convert("RGB")))
            durations.append(image.info.get("duration", 0))
        return frames, durations, image.info.get("loop")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def gifstream_command(
    *args: str, stdin: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """Run the real console entry point in a child process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gifstream.cli", *args], input=stdin, capture_output=True, timeout=timeout, env=env
    )
