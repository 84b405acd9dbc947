"""The unit that flows through a pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(slots=True)
class Frame:
    """One decoded frame and everything stages learn about it.

    ``pixels`` is RGB, either a ``uint8`` numpy array of shape (H, W, 3) or a
    tensor a stage left on its device; stages that need numpy call
    :meth:`as_array`. ``alpha`` is an optional (H, W) ``uint8`` mask (255 =
    opaque) kept beside the colour so RGB-only models never see it.
    ``duration_ms`` is how long the frame is shown; ``pts`` its presentation
    time in seconds when the container has one. ``meta`` is free for stages
    to add to (detections, metrics, ...); ``source`` optionally keeps the
    decoded input pixels for stages that compare output to input.
    """

    index: int
    pixels: Any
    duration_ms: float | None = None
    pts: float | None = None
    alpha: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    source: np.ndarray | None = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def as_array(self) -> np.ndarray:
        """The pixels as a contiguous (H, W, 3) uint8 numpy array."""
        pixels = self.pixels
        if not isinstance(pixels, np.ndarray):
            # A tensor (kept generic so the engine imports no torch).
            pixels = pixels.detach().to("cpu").numpy()
        return np.ascontiguousarray(pixels)


@dataclass(slots=True)
class StreamInfo:
    """What a source knows about the whole stream before its first frame."""

    width: int
    height: int
    format: str
    frame_count: int | None = None
    loop: int | None = None  # GIF NETSCAPE loop count; 0 = forever, None = no loop extension
    fps: float | None = None
    has_alpha: bool = False
    audio: dict[str, Any] | None = None  # description of an audio stream, if any
    path: str | None = None  # where the input lives, when it is a file (audio pass-through)
    extra: dict[str, Any] = field(default_factory=dict)
