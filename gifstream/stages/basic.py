"""Stages that need no model: pass-through and Lanczos resize."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..engine import BlockingStage, ConfigError, Frame
from .registry import register


@register("identity")
class IdentityStage(BlockingStage):
    """Passes frames on untouched (a baseline for measuring the engine itself)."""

    name = "identity"

    def process_sync(self, batch: list[Frame], previous: Frame | None) -> list[Frame]:
        return batch


@dataclass(frozen=True, slots=True)
class ResizeConfig:
    scale: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 16:
            raise ConfigError(f"--scale must be in (0, 16], got {self.scale}")


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The output size for ``scale``, keeping the aspect ratio (never squashing)."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_lanczos(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Lanczos resize of an (H, W, 3) or (H, W) uint8 array to ``size`` = (width, height)."""
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


@register("resize")
class ResizeStage(BlockingStage):
    """Resizes every frame (and its alpha) by ``scale`` with Lanczos."""

    name = "resize"

    def __init__(self, config: ResizeConfig | None = None, **options: float) -> None:
        super().__init__()
        self.config = config or ResizeConfig(**options)

    def process_sync(self, batch: list[Frame], previous: Frame | None) -> list[Frame]:
        for frame in batch:
            size = scaled_size(frame.width, frame.height, self.config.scale)
            pixels = frame.as_array()
            if frame.source is None:
                frame.source = pixels
            frame.pixels = resize_lanczos(pixels, size)
            if frame.alpha is not None:
                frame.alpha = resize_lanczos(frame.alpha, size)
        return batch
