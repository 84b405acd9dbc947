"""Helpers shared by the benchmark scripts (run as `python bench/NAME.py`, so this folder is on sys.path)."""

from __future__ import annotations

import cv2
import numpy as np


def shrink(frame: np.ndarray, max_side: int) -> np.ndarray:
    """``frame`` scaled down (INTER_AREA) so its longer side is at most ``max_side``; never enlarged."""
    height, width = frame.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return frame
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.ascontiguousarray(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
