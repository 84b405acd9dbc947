"""A streaming GIF encoder: palettes kept while they fit, only changed pixels written, stable dithering.

:class:`FramePlanner` decides what each frame writes (sub-rectangle, indices,
colour table, disposal); :mod:`.blocks` turns that into GIF bytes;
:mod:`.palette` builds palettes and maps pixels onto them; :mod:`.despike`
takes small one-frame spikes out of each frame first (one frame of lookahead).
"""

from __future__ import annotations

from . import blocks
from .despike import SpikeFilter, despiked
from .palette import NearestColour, build_palette
from .planner import ALPHA_THRESHOLD, DITHERS, PALETTES, FramePlanner, PlannedFrame, PlannerSettings

__all__ = [
    "ALPHA_THRESHOLD",
    "DITHERS",
    "PALETTES",
    "FramePlanner",
    "NearestColour",
    "PlannedFrame",
    "PlannerSettings",
    "SpikeFilter",
    "blocks",
    "build_palette",
    "despiked",
]
