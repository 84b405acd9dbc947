"""Face restorers: GFPGAN v1.3 with a Real-ESRGAN background, and an offline classic fallback.

Every restorer takes RGB uint8 frames and gives RGB uint8 frames ``scale``
times the size (:class:`Restorer`). The GFPGAN restorer and its libraries
(torch, basicsr, facexlib, gfpgan, realesrgan) load only when asked for.
"""

from __future__ import annotations

from typing import Any

from .base import Restored, Restorer
from .classic import ClassicRestorer, LanczosRestorer
from .detect import CascadeFaceDetector, Detector, FaceDetection, RetinaFaceDetector

_LAZY = {"GfpganRestorer": "gfpgan", "GfpganNetworks": "gfpgan"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CascadeFaceDetector",
    "ClassicRestorer",
    "Detector",
    "FaceDetection",
    "GfpganNetworks",
    "GfpganRestorer",
    "LanczosRestorer",
    "Restored",
    "Restorer",
    "RetinaFaceDetector",
]
