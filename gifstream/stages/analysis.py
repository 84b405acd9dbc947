"""Flow and metrics stages: temporal consistency and fidelity, streamed with the frames.

The flow stage computes optical flow between consecutive *input* frames (as
Lai et al. 2018 do, so the output and the input are judged by the same
motion) and attaches it to the frame. The metrics stage then computes, per
frame, fidelity to the input (PSNR, SSIM, LPIPS) and temporal consistency
against the previous frame (E_warp of the output and of the input, tOF,
tLP), appends a CSV row as the frame passes, and keeps only running
summaries.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import BlockingStage, ConfigError, Frame, RunContext
from ..options import ProcessOptions

FLOW_METRICS = {"e_warp", "tof"}


def analysis_stages(options: ProcessOptions) -> list[Any]:
    """The flow and metrics stages ``options`` ask for."""
    stages: list[Any] = []
    if options.flow != "none":
        stages.append(FlowStage(FlowConfig(backend=options.flow, weights_dir=options.weights_dir)))
    if options.stabilize:
        if options.flow == "none":
            raise ConfigError("--stabilize needs optical flow: use --flow dis (or raft_*), not --flow none")
        from .stabilize import StabilizeConfig, StabilizeStage

        stages.append(StabilizeStage(StabilizeConfig(strength=options.stabilize_strength)))
    if options.metrics:
        csv_path = options.csv or (str(Path(options.report).with_suffix(".csv")) if options.report else None)
        config = MetricsConfig(
            metrics=options.metrics,
            flow=options.flow,
            csv=csv_path,
            plot=options.plot,
            weights_dir=options.weights_dir,
        )
        stages.append(MetricsStage(config))
    return stages


@dataclass(frozen=True, slots=True)
class FlowConfig:
    backend: str = "dis"  # dis, dis_fast, dis_ultrafast, raft_small, raft_large
    weights_dir: str | None = None
    max_side: int | None = None  # RAFT only: estimate at most this size, flow scaled back


class FlowStage(BlockingStage):
    """Forward and backward flow between the previous and the current input frame.

    Adds ``meta["flow"] = (forward, backward)``: forward maps the previous
    frame to the current one, backward the current to the previous, both
    (H, W, 2) float32 pixels at the input's geometry. The first frame has none.
    """

    name = "flow"
    needs_previous = True

    def __init__(self, config: FlowConfig | None = None) -> None:
        super().__init__()
        self.config = config or FlowConfig()
        self._estimator: Any = None
        self._cores: Any = None  # the CPU's core share, when RAFT runs on the CPU

    def setup_sync(self, ctx: RunContext) -> None:
        from ..motion import DisFlow, RaftFlow

        backend = self.config.backend
        if backend.startswith("dis"):
            preset = backend.partition("_")[2] or "medium"
            self._estimator = DisFlow(preset=preset)
        else:
            from ..weights import path_for

            variant = backend.removeprefix("raft_")
            weights = path_for(backend, weights_dir=self.config.weights_dir)
            self._estimator = RaftFlow(variant, weights, device=ctx.device, max_side=self.config.max_side)
            if ctx.device == "cpu":
                self._cores = share_the_cpu(self._estimator.model)

    def process_sync(self, batch: list[Frame], previous: Frame | None) -> list[Frame]:
        chain = [previous, *batch]
        pairs = [(a, b) for a, b in itertools.pairwise(chain) if a is not None]
        # A frame that repeats the one before it (a GIF holding a picture) has not moved: its flow is zero,
        # and estimating it would only measure the estimator's noise.
        moving = [(a, b) for a, b in pairs if not identical(input_pixels(a), input_pixels(b))]
        if moving:
            earlier = [input_pixels(a) for a, _ in moving]
            later = [input_pixels(b) for _, b in moving]
            with self._cores.working() if self._cores is not None else contextlib.nullcontext():
                forward, backward = self._estimator.both_ways(earlier, later)
            for (_, frame), fw, bw in zip(moving, forward, backward, strict=True):
                frame.meta["flow"] = (fw, bw)
        for _, frame in pairs:
            if "flow" not in frame.meta:
                height, width = input_pixels(frame).shape[:2]
                frame.meta["flow"] = (
                    np.zeros((height, width, 2), np.float32),
                    np.zeros((height, width, 2), np.float32),
                )
        return batch

    def describe(self) -> dict[str, Any]:
        details: dict[str, Any] = {"backend": self.config.backend, "computed_on": "input frames"}
        if self.config.backend.startswith("raft"):
            details["weights"] = weights_description(self.config.backend, self.config.weights_dir)
        return details


def weights_description(name: str, weights_dir: str | None) -> dict[str, str]:
    """The weight file behind a result, as the registry knows it."""
    from ..weights import cached_path, get_entry

    entry = get_entry(name)
    return {"file": entry.filename, "sha256": entry.sha256, "path": str(cached_path(name, weights_dir))}


def share_the_cpu(model: Any) -> Any:
    """The process's core share, attached to ``model``: it takes its share of the cores layer by layer while
    its work is registered, beside the other stages' networks (see gifstream.restore.threads)."""
    from ..restore.threads import CORE_SHARE

    CORE_SHARE.attach(model)
    return CORE_SHARE


def input_pixels(frame: Frame) -> np.ndarray:
    """The decoded input of a frame (its pixels when no stage replaced them)."""
    return frame.source if frame.source is not None else frame.as_array()


def identical(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    metrics: tuple[str, ...] = ("psnr", "ssim", "e_warp")
    flow: str = "dis"
    csv: str | None = None
    plot: str | None = None
    weights_dir: str | None = None


class RunningSummary:
    """Mean, min, max and p95 of one metric; 4 bytes a frame, so memory stays small."""

    def __init__(self) -> None:
        self.values = array("f")

    def add(self, value: float) -> None:
        if math.isfinite(value):
            self.values.append(value)

    def as_dict(self) -> dict[str, float | int | None]:
        if not self.values:
            return {"count": 0, "mean": None, "min": None, "max": None, "p95": None}
        data = np.frombuffer(self.values, dtype=np.float32).astype(np.float64)
        return {
            "count": int(data.size),
            "mean": float(data.mean()),
            "min": float(data.min()),
            "max": float(data.max()),
            "p95": float(np.percentile(data, 95)),
        }


class MetricsStage(BlockingStage):
    """Per-frame quality and temporal-consistency numbers, streamed to CSV and summarised."""

    name = "metrics"
    needs_previous = True

    def __init__(self, config: MetricsConfig | None = None) -> None:
        super().__init__()
        self.config = config or MetricsConfig()
        self.unavailable: dict[str, str] = {}
        self.summaries: dict[str, RunningSummary] = {}
        self._lpips: Any = None
        self._cores: Any = None  # the CPU's core share, when LPIPS runs on the CPU
        self._csv_file: Any = None
        self._csv: Any = None
        self._columns: list[str] = []

    def setup_sync(self, ctx: RunContext) -> None:
        from .. import metrics  # noqa: F401 - imported here so that the first frame does not pay for it

        wanted = list(self.config.metrics)
        if self.config.flow == "none":
            for name in FLOW_METRICS.intersection(wanted):
                self.unavailable[name] = "needs optical flow (--flow dis or raft_*)"
        if {"lpips", "tlp"}.intersection(wanted):
            self._load_lpips(ctx.device)
            if ctx.device == "cpu" and self._lpips is not None:
                self._cores = share_the_cpu(self._lpips.model)
        self._columns = self._active_columns(wanted)
        if "e_warp" in self._columns:
            from ..metrics.warp_kernel import prepare

            prepare()
        self.summaries = {column: RunningSummary() for column in self._columns}
        if self.config.csv:
            self._csv_file = Path(self.config.csv).open("w", newline="")  # noqa: SIM115 - closed in close_sync
            self._csv = csv.writer(self._csv_file)
            self._csv.writerow(["frame", *self._columns])

    def _load_lpips(self, device: str) -> None:
        from ..metrics import LpipsMetric, MetricUnavailable
        from ..weights import WeightsMissingError, path_for

        try:
            self._lpips = LpipsMetric(path_for("alexnet", weights_dir=self.config.weights_dir), device=device)
        except (MetricUnavailable, WeightsMissingError) as err:
            for name in ("lpips", "tlp"):
                self.unavailable[name] = str(err)

    def _active_columns(self, wanted: list[str]) -> list[str]:
        columns: list[str] = []
        for name in wanted:
            if name in self.unavailable:
                continue
            columns.extend(["e_warp", "e_warp_input", "e_warp_ratio"] if name == "e_warp" else [name])
        return columns

    def process_sync(self, batch: list[Frame], previous: Frame | None) -> list[Frame]:
        for frame in batch:
            with self._cores.working() if self._cores is not None else contextlib.nullcontext():
                values = self._frame_metrics(frame, previous)
            frame.meta["metrics"] = values
            for name, value in values.items():
                self.summaries[name].add(value)
            if self._csv is not None:
                self._csv.writerow([frame.index, *(_cell(values.get(c)) for c in self._columns)])
            previous = frame
        if self._csv_file is not None:
            self._csv_file.flush()
        return batch

    def _frame_metrics(self, frame: Frame, previous: Frame | None) -> dict[str, float]:
        from ..metrics import match_geometry, psnr, ssim, tof, warp_error_pair

        out, ref = frame.as_array(), input_pixels(frame)
        # The output at the input's geometry, made once for every metric that compares the two.
        out_at_ref = match_geometry(ref, out)
        wanted = set(self._columns)
        values: dict[str, float] = {}
        if previous is not None and self._repeats(previous, ref, out):
            # The same input and output as the frame before: the same fidelity numbers, without the work.
            earlier = previous.meta["metrics"]
            values.update({name: earlier[name] for name in ("psnr", "ssim", "lpips") if name in earlier})
        else:
            if "psnr" in wanted:
                values["psnr"] = psnr(ref, out_at_ref)
            if "ssim" in wanted:
                values["ssim"] = ssim(ref, out_at_ref)
            if "lpips" in wanted:
                values["lpips"] = self._lpips(ref, out_at_ref)
        if previous is None:
            return values
        prev_in = input_pixels(previous)
        prev_out = match_geometry(prev_in, previous.as_array())
        flow = frame.meta.get("flow")
        if "e_warp" in wanted and flow is not None:
            pair = warp_error_pair(prev_in, ref, prev_out, out_at_ref, *flow)
            values.update(e_warp=pair.output, e_warp_input=pair.input, e_warp_ratio=pair.ratio)
        if "tof" in wanted:
            values["tof"] = tof(prev_in, ref, prev_out, out_at_ref)
        if "tlp" in wanted:
            values["tlp"] = self._lpips.tlp(prev_in, ref, prev_out, out_at_ref)
        return values

    @staticmethod
    def _repeats(previous: Frame, ref: np.ndarray, out: np.ndarray) -> bool:
        """Whether ``previous`` had this very input and output (and its metrics are known)."""
        return (
            "metrics" in previous.meta
            and identical(input_pixels(previous), ref)
            and identical(previous.as_array(), out)
        )

    def close_sync(self) -> None:
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = self._csv = None
            if self.config.plot:
                plot_metrics(Path(self.config.csv or ""), Path(self.config.plot))

    def describe(self) -> dict[str, Any]:
        return {
            "summary": {name: s.as_dict() for name, s in self.summaries.items()},
            "unavailable": dict(self.unavailable),
            "flow_backend": self.config.flow,
            "lpips_weights": None if self._lpips is None else weights_description("alexnet", self.config.weights_dir),
            "csv": self.config.csv,
            "plot": self.config.plot,
        }


def _cell(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"


def plot_metrics(csv_path: Path, png_path: Path) -> None:
    """Draw every metric column of a metrics CSV against the frame index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = [c for c in (rows[0].keys() if rows else []) if c != "frame"]
    fig, axes = plt.subplots(max(len(columns), 1), 1, figsize=(8, 1.8 * max(len(columns), 1)), sharex=True)
    for ax, column in zip(np.atleast_1d(axes), columns, strict=False):
        points = [(int(r["frame"]), float(r[column])) for r in rows if r[column]]
        if points:
            ax.plot(*zip(*points, strict=True), linewidth=1)
        ax.set_ylabel(column)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[-1].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
