"""Run reports: per-frame timing summaries and the JSON file."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine import Frame


@dataclass
class FrameSummary:
    """Running totals over the output frames (constant memory however long the input)."""

    count: int = 0
    total_ms: float = 0.0
    min_ms: float = math.inf
    max_ms: float = 0.0
    width: int | None = None
    height: int | None = None

    def add(self, frame: Frame) -> None:
        self.count += 1
        duration = frame.duration_ms or 0.0
        self.total_ms += duration
        self.min_ms = min(self.min_ms, duration)
        self.max_ms = max(self.max_ms, duration)
        self.width, self.height = frame.width, frame.height

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "width": self.width,
            "height": self.height,
            "duration_ms_total": round(self.total_ms, 3),
            "duration_ms_min": None if self.count == 0 else round(self.min_ms, 3),
            "duration_ms_max": None if self.count == 0 else round(self.max_ms, 3),
        }


def write_report(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``report`` as JSON, atomically (a reader never sees half a file)."""
    target = Path(path)
    temp = target.with_name(f".{target.name}.part")
    temp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(temp, target)
