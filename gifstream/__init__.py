"""gifstream: streaming face enhancement for animated GIFs and video clips.

``gifstream.process(input, output, **options)`` runs a whole file;
``gifstream.stream(frames, **options)`` enhances frames as they come;
``gifstream.estimate_flow(a, b)`` is the optical flow used for the temporal metrics.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .engine import (
    ConfigError,
    Frame,
    GifstreamError,
    InputError,
    LimitExceededError,
    OutputError,
    StageError,
    StreamInfo,
)

_LAZY = {
    "process": ("api", "process"),
    "process_async": ("api", "process_async"),
    "stream": ("api", "stream"),
    "ProcessOptions": ("options", "ProcessOptions"),
    "estimate_flow": ("motion", "estimate_flow"),
}


def __getattr__(name: str) -> Any:
    # Heavy parts (torch, OpenCV, PyAV) load only when first used.
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attribute)
    raise AttributeError(f"module 'gifstream' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "Frame",
    "GifstreamError",
    "InputError",
    "LimitExceededError",
    "OutputError",
    "ProcessOptions",
    "StageError",
    "StreamInfo",
    "estimate_flow",
    "process",
    "process_async",
    "stream",
]
