"""``gifstream info``: what an input holds, without running a pipeline."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from .io import open_source


def describe_input(
    spec: str | os.PathLike[str] | BinaryIO, size: tuple[int, int] | None = None, fps: float = 10.0
) -> dict[str, Any]:
    """Size, frame count, durations, loop, alpha and audio of an input."""
    source = open_source(spec, size=size, fps=fps)
    try:
        info = source.open()
        durations = list(_durations(source))
    finally:
        source.close()
    total = sum(durations)
    return {
        "format": info.format,
        "size": f"{info.width}x{info.height}",
        "frames": len(durations),
        "duration_ms": round(total, 3),
        "frame_ms": _duration_summary(durations),
        "loop": _loop_text(info.loop) if info.format == "gif" else None,
        "alpha": info.has_alpha,
        "fps": round(info.fps, 3) if info.fps else (round(1000 * len(durations) / total, 3) if total else None),
        "audio": info.audio,
    }


def _durations(source: Any) -> Iterator[float]:
    cheap = getattr(source, "durations_ms", None)
    if cheap is not None:
        yield from cheap()
        return
    for frame in source.frames():
        yield frame.duration_ms or 0.0


def _duration_summary(durations: list[float]) -> str:
    if not durations:
        return "none"
    low, high = min(durations), max(durations)
    if low == high:
        return f"{low:g} each"
    return f"{low:g}–{high:g} (mean {sum(durations) / len(durations):.1f})"


def _loop_text(loop: int | None) -> str:
    if loop is None:
        return "plays once (no loop extension)"
    return "forever" if loop == 0 else f"{loop}"
