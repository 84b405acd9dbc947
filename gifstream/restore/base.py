"""What every restorer shares: the result type, the protocol, and skipping repeated frames."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..engine import InputError


@dataclass(frozen=True, slots=True)
class Restored:
    """One restored frame: RGB uint8 pixels at the output size and how many faces were treated."""

    pixels: np.ndarray
    faces: int
    reused: bool = False  # the input repeated the frame before it, so its output was reused


class Restorer(Protocol):
    """Turns RGB uint8 frames into restored RGB uint8 frames ``scale`` times the size."""

    name: str

    def restore(self, frames: Sequence[np.ndarray]) -> list[Restored]: ...

    def restore_batch(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class PendingPaste:
    """A frame whose faces are restored but not yet pasted back onto its background.

    ``finish()`` does the paste-back and gives the frame's :class:`Restored`.
    It may run on another thread than the one that made this object, while
    that thread restores the next frame: that is what it is for.
    """

    finish: Callable[[], Restored]
    faces: int


@runtime_checkable
class PastesLater(Protocol):
    """A restorer whose paste-back can be left for later (GFPGAN's: ParseNet masks every pasted face)."""

    def restore_faces(self, frames: Sequence[np.ndarray]) -> list[PendingPaste]:
        """One PendingPaste per frame (repeated frames included): every step but the paste-back."""
        ...


def repeats_previous(frames: Sequence[np.ndarray]) -> list[bool]:
    """For each frame, whether it is pixel-identical to the frame just before it.

    Animated GIFs often hold a picture for several frames; restoring it once
    saves the cost and keeps the repeats identical (no flicker between them).
    """
    return [i > 0 and same_pixels(frames[i - 1], frames[i]) for i in range(len(frames))]


def same_pixels(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is not None and b is not None and a.shape == b.shape and bool(np.array_equal(a, b))


def expand_repeats(unique: list[Restored], repeats: list[bool]) -> list[Restored]:
    """Outputs for every frame, given the outputs of the non-repeated frames in order."""
    results: list[Restored] = []
    fresh = iter(unique)
    for repeated in repeats:
        if repeated:
            last = results[-1]
            results.append(Restored(last.pixels.copy(), last.faces, reused=True))
        else:
            results.append(next(fresh))
    return results


def check_rgb(frame: np.ndarray, index: int) -> np.ndarray:
    """``frame`` as a contiguous (H, W, 3) uint8 array, or an InputError naming what is wrong."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputError(
            f"restorer input {index}: expected an (H, W, 3) uint8 RGB array, got {frame.shape} {frame.dtype}"
        )
    return np.ascontiguousarray(frame)
