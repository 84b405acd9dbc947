"""Input limits that keep hostile files from spending memory or time."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.errors import LimitExceededError


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds checked before the memory for a frame is spent.

    Each is configurable on the command line; the error names the option.
    """

    max_frame_pixels: int = 64_000_000  # one 8K frame (--max-frame-pixels)
    max_frames: int = 1_000_000  # --max-frames
    max_input_bytes: int = 8 * 1024**3  # --max-input-bytes
    max_total_pixels: int = 2_000_000_000_000  # decoded pixels over the whole stream (--max-total-pixels)

    def check_frame_size(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise LimitExceededError(f"frame size {width}x{height} is empty")
        if width * height > self.max_frame_pixels:
            pixels = width * height
            raise LimitExceededError(
                f"frame size {width}x{height} = {pixels} pixels exceeds --max-frame-pixels {self.max_frame_pixels}"
            )

    def check_frame_count(self, count: int) -> None:
        if count > self.max_frames:
            raise LimitExceededError(f"input has more than --max-frames {self.max_frames} frames")

    def check_input_bytes(self, size: int) -> None:
        if size > self.max_input_bytes:
            raise LimitExceededError(f"input is {size} bytes, over --max-input-bytes {self.max_input_bytes}")

    def check_total_pixels(self, total: int) -> None:
        if total > self.max_total_pixels:
            raise LimitExceededError(f"decoded pixels exceed --max-total-pixels {self.max_total_pixels}")
