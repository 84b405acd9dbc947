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


def numpy_backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """The reference bilinear warp in plain numpy: ``image`` (H, W[, C]) read at x + flow(x), border-clamped.

    gifstream's compiled sampler must match it to the bit: positions in
    float32, clamped to the frame, floor and fractional weights in float32,
    values turned float32 before weighting, corners summed top-left,
    top-right, bottom-left, bottom-right; a non-finite flow reads NaN.
    """
    height, width = flow.shape[:2]
    flow = flow.astype(np.float32, copy=False)
    with np.errstate(invalid="ignore"):
        x = np.clip(np.arange(width, dtype=np.float32) + flow[..., 0], 0, width - 1)
        y = np.clip(np.arange(height, dtype=np.float32)[:, None] + flow[..., 1], 0, height - 1)
        x0, y0 = np.floor(x), np.floor(y)
        wx, wy = x - x0, y - y0
        finite = np.isfinite(x) & np.isfinite(y)
        left = np.where(finite, x0, 0).astype(np.intp)
        top = np.where(finite, y0, 0).astype(np.intp)
    right, bottom = np.minimum(left + 1, width - 1), np.minimum(top + 1, height - 1)
    planes = image.reshape(height, width, -1)
    out = np.empty(planes.shape, np.float32)
    for c in range(planes.shape[2]):
        plane = planes[..., c]
        value = plane[top, left].astype(np.float32) * ((1 - wx) * (1 - wy))
        value += plane[top, right].astype(np.float32) * (wx * (1 - wy))
        value += plane[bottom, left].astype(np.float32) * ((1 - wx) * wy)
        value += plane[bottom, right].astype(np.float32) * (wx * wy)
        out[..., c] = value
    return out.reshape(image.shape)


def run_python(script: str, cwd: Path) -> None:
    """Run ``script`` in a fresh interpreter (what a new process sees); fail with its stderr."""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stderr


# Prelude for run_python scripts: which argument types numba has compiled (or loaded) for the loops of
# some modules, and a check that a run added none to those a warm-up made ready.
COMPILED_SIGNATURES = (
    "def signatures(*modules):\n"
    "    loops = [getattr(m, n) for m in modules for n in dir(m)]\n"
    "    return {l.__name__: set(map(str, l.signatures)) for l in loops if hasattr(l, 'signatures')}\n"
    "def assert_nothing_new(warmed, *modules):\n"
    "    new = {name: sigs - warmed.get(name, set()) for name, sigs in signatures(*modules).items()}\n"
    "    assert warmed, 'no compiled loops found'\n"
    "    assert not any(new.values()), new\n"
)
