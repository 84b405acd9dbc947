"""One frame of lookahead: small one-frame spikes taken out before a frame is quantised.

Video codecs leave small overshoots that last a single frame: ringing at a
moving edge, a block's shade that jumps and comes back. Written to a GIF
they cost bytes and show as shimmer (gifski's denoiser looks five frames
ahead for the same reason). :func:`despiked` clamps each pixel into the
range its two neighbours in time span, per channel (the median of the
three), when that moves no channel by more than ``limit`` levels.

A pixel inside that range, whatever motion it is part of as long as it goes
one way, is left exactly as it is; so is one that leaves the range by more
than the limit (a flash, a cut, a frame that differs for real).
:class:`SpikeFilter` holds the one frame of lookahead a stream needs.
"""

from __future__ import annotations

from typing import Generic, NamedTuple, TypeVar

import cv2
import numpy as np

from .planner import ALPHA_THRESHOLD

Payload = TypeVar("Payload")


def despiked(
    previous: np.ndarray,
    current: np.ndarray,
    following: np.ndarray,
    limit: float,
    opaque: np.ndarray | None = None,
) -> np.ndarray:
    """``current`` (H, W, 3) uint8 with its one-frame spikes of at most ``limit`` levels removed.

    ``opaque`` (H, W) bool limits the change to pixels that are opaque in all
    three frames: a see-through pixel's colour means nothing.
    """
    if not previous.shape == current.shape == following.shape:
        raise ValueError(f"frames of different shapes: {previous.shape}, {current.shape}, {following.shape}")
    low, high = cv2.min(previous, following), cv2.max(previous, following)
    median = cv2.min(cv2.max(current, low), high)
    # A pixel is clamped when no channel moves by more than the limit (OpenCV: this runs on every frame).
    _, over = cv2.threshold(cv2.absdiff(current, median), limit, 255, cv2.THRESH_BINARY)
    # Grey is a weighted sum with every weight above 1/9: non-zero exactly when some channel is over.
    clamp = (cv2.cvtColor(over, cv2.COLOR_RGB2GRAY) == 0).view(np.uint8)
    if opaque is not None:
        clamp[~opaque] = 0
    if cv2.countNonZero(clamp) == 0:
        return current
    result = current.copy()
    cv2.copyTo(median, clamp, result)
    return result


def opaque_in_all(alphas: tuple[np.ndarray | None, ...]) -> np.ndarray | None:
    """Pixels opaque in every frame (None: every frame is wholly opaque)."""
    masks = [alpha >= ALPHA_THRESHOLD for alpha in alphas if alpha is not None]
    if not masks:
        return None
    opaque: np.ndarray = np.logical_and.reduce(masks)
    return opaque


class Ready(NamedTuple, Generic[Payload]):
    """A frame ready to write: despiked RGB, its alpha and what travels with it."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    payload: Payload


class SpikeFilter(Generic[Payload]):
    """Frames in, the same frames despiked out, one frame later (the last one at :meth:`drain`).

    Each frame travels with a ``payload`` (what the caller needs to write it).
    The frames are copied: a caller may reuse its buffers once ``push`` returns.
    With ``limit`` 0 nothing is held and frames pass through at once.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._previous: Ready[Payload] | None = None
        self._pending: Ready[Payload] | None = None

    def push(self, rgb: np.ndarray, alpha: np.ndarray | None, payload: Payload) -> list[Ready[Payload]]:
        """The frames now ready to write (none after the first), despiked by their neighbours."""
        if self.limit <= 0:
            return [Ready(rgb, alpha, payload)]
        arrived = Ready(rgb.copy(), None if alpha is None else alpha.copy(), payload)
        pending, previous, self._pending = self._pending, self._previous, arrived
        if pending is None:
            return []
        self._previous = pending
        if previous is None:
            return [pending]
        # Held frames stay as received: a spike is judged against the input, not an earlier clean-up.
        opaque = opaque_in_all((previous.alpha, pending.alpha, arrived.alpha))
        return [pending._replace(rgb=despiked(previous.rgb, pending.rgb, arrived.rgb, self.limit, opaque))]

    def drain(self) -> list[Ready[Payload]]:
        """The frame still held, as it is (it has no following frame)."""
        pending, self._pending, self._previous = self._pending, None, None
        return [] if pending is None else [pending]
