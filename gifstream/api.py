"""The Python API: one call for files, and a streaming interface for services."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from . import __version__
from .engine import ConfigError, Frame, OutputError, Pipeline, RunContext, RunnerConfig, Stage, StreamInfo, run
from .io import Limits, open_sink, open_source, output_format
from .io.atomic import check_target
from .options import ProcessOptions
from .report import FrameSummary, write_report

Input = str | os.PathLike[str] | BinaryIO
Output = str | os.PathLike[str] | BinaryIO


def as_options(options: ProcessOptions | None = None, **overrides: Any) -> ProcessOptions:
    base = options or ProcessOptions()
    return base.merged(overrides, "keyword arguments") if overrides else base


def resolve_device(requested: str, needs_torch: bool) -> str:
    """``auto`` → ``cuda`` when a CUDA device exists, else ``cpu``; ``cuda`` without one is an error."""
    if requested == "cpu" or (requested == "auto" and not needs_torch):
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise ConfigError("--device cuda was asked for, but no CUDA device is available")
    return "cuda" if available else "cpu"


def build_stages(options: ProcessOptions) -> list[Stage]:
    """The stages a run needs, in order: restore (or resize), paste (GFPGAN's paste-back), flow, metrics."""
    stages: list[Stage] = []
    if options.restorer != "none":
        from .stages.restore import PasteStage, RestoreConfig, RestoreStage

        # GFPGAN's paste-back gets a stage of its own, to run beside the next frame's restoration.
        defer_paste = _may_use_gfpgan(options)

        stages.append(
            RestoreStage(
                RestoreConfig(
                    restorer=options.restorer,
                    scale=options.output_scale,
                    weights_dir=options.weights_dir,
                    max_batch=options.batch,
                    fetch=options.fetch_weights,
                    detect_every=options.detect_every,
                    smooth_landmarks=options.smooth_landmarks,
                    precision=options.precision,
                    defer_paste=defer_paste,
                )
            )
        )
        if defer_paste:
            stages.append(PasteStage(max_batch=options.batch))
    elif options.output_scale != 1:
        from .stages.basic import ResizeConfig, ResizeStage

        stages.append(ResizeStage(ResizeConfig(scale=options.output_scale)))
    stages.extend(_analysis_stages(options))
    return stages


def _analysis_stages(options: ProcessOptions) -> list[Stage]:
    if options.flow == "none" and not options.metrics and not options.stabilize:
        return []
    from .stages.analysis import analysis_stages

    return analysis_stages(options)


def _needs_torch(options: ProcessOptions) -> bool:
    """Whether a stage of this run will use torch (only then is torch imported to look for a GPU)."""
    if options.flow.startswith("raft") or {"lpips", "tlp"}.intersection(options.metrics):
        return True
    # Without GFPGAN's weights an ``auto`` run falls back to the classic restorer, which needs no torch:
    # importing it only to find the device would cost a second and some 450 MB.
    return _may_use_gfpgan(options)


def _may_use_gfpgan(options: ProcessOptions) -> bool:
    """Whether the run's restorer is (or, for ``auto``, will likely be) GFPGAN."""
    if options.restorer == "auto":
        return options.fetch_weights or _gfpgan_weights_cached(options)
    return options.restorer == "gfpgan"


def _gfpgan_weights_cached(options: ProcessOptions) -> bool:
    from .stages.restore import RestoreConfig, unavailable_gfpgan_weights

    missing, _ = unavailable_gfpgan_weights(RestoreConfig(restorer="auto", weights_dir=options.weights_dir))
    return not missing


def limits_of(options: ProcessOptions) -> Limits:
    return Limits(
        max_frame_pixels=options.max_frame_pixels,
        max_frames=options.max_frames,
        max_input_bytes=options.max_input_bytes,
        max_total_pixels=options.max_total_pixels,
    )


def _sink_options(options: ProcessOptions, kind: str) -> tuple[Any, Any]:
    """Encoder settings for the output format ``kind`` (only the one that is used is built)."""
    if kind == "gif":
        from .io.gif import GifOptions

        gif = GifOptions(
            colors=options.gif_colors,
            dither=options.gif_dither,
            palette=options.gif_palette,
            quality=options.gif_quality,
        )
        return gif, None
    if kind in {"mp4", "webm", "mkv"}:
        from .io.video import VideoOptions

        return None, VideoOptions(codec=options.video_codec, crf=options.crf, audio=options.audio)
    return None, None


def process(input: Input, output: Output, options: ProcessOptions | None = None, **overrides: Any) -> dict[str, Any]:
    """Enhance ``input`` into ``output`` and return the run's report.

    ``input``/``output`` are paths, ``"-"`` for stdin/stdout, or binary streams;
    keyword arguments are the options of ``gifstream process`` (``restorer``,
    ``scale``, ``flow``, ``metrics``, ``overwrite``, ...).
    """
    return asyncio.run(process_async(input, output, as_options(options, **overrides)))


async def process_async(
    input: Input,
    output: Output,
    options: ProcessOptions,
    progress: Callable[[StreamInfo], Callable[[Frame], None]] | None = None,
    extra_stages: Sequence[Stage] = (),
) -> dict[str, Any]:
    """The coroutine behind :func:`process`.

    ``progress`` builds a per-frame callback once the input is open;
    ``extra_stages`` (your own :class:`~gifstream.engine.Stage` objects) run
    after the built-in ones, before the encoder.
    """
    _refuse_output_over_input(input, output, options)
    source = open_source(input, size=options.size, fps=options.fps, limits=limits_of(options))
    kind = output_format(output, options.format)
    gif_options, video_options = _sink_options(options, kind)
    sink = open_sink(
        output,
        format=kind,
        overwrite=options.overwrite,
        gif_options=gif_options,
        video_options=video_options,
    )
    stages = [*build_stages(options), *extra_stages]
    ctx = RunContext(device=resolve_device(options.device, _needs_torch(options)), options={"quiet": options.quiet})
    summary = FrameSummary()
    callbacks: list[Callable[[Frame], None]] = [summary.add]
    infos: list[StreamInfo] = []

    def on_open(info: StreamInfo) -> None:
        infos.append(info)
        if progress is not None:
            callbacks.append(progress(info))

    def on_frame(frame: Frame) -> None:
        for callback in callbacks:
            callback(frame)

    started = time.perf_counter()
    stats = await run(
        source,
        stages,
        sink,
        ctx,
        RunnerConfig(queue_depth=options.queue_depth, batch_size=options.batch),
        on_open=on_open,
        on_frame=on_frame,
    )
    report = _report(input, output, options, infos[0] if infos else None, summary, stats.as_dict(), stages)
    report["wall_s"] = round(time.perf_counter() - started, 6)
    if options.report:
        write_report(report, options.report)
    return report


def _refuse_output_over_input(input: Input, output: Output, options: ProcessOptions) -> None:
    if isinstance(input, str | os.PathLike) and isinstance(output, str | os.PathLike) and "-" not in (input, output):
        if output_format(output, options.format) != "png":
            check_target(Path(output), overwrite=options.overwrite, inputs=(Path(input),))
        elif Path(output).resolve() == Path(input).resolve():
            raise OutputError(f"output {output} is the input folder; choose another output path")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _report(
    input: Input,
    output: Output,
    options: ProcessOptions,
    info: StreamInfo | None,
    summary: FrameSummary,
    stats: dict[str, Any],
    stages: list[Stage],
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "gifstream": __version__,
        "input": _describe_io(input),
        "output": _describe_io(output),
        "input_info": None
        if info is None
        else {
            "format": info.format,
            "width": info.width,
            "height": info.height,
            "loop": info.loop,
            "fps": info.fps,
            "has_alpha": info.has_alpha,
            "audio": info.audio,
        },
        "frames": summary.as_dict(),
        "throughput": {k: stats[k] for k in ("frames", "elapsed_s", "frames_per_s", "first_output_s")},
        "stages": stats["stages"],
        "peak_rss_mb": peak_rss_mb(),
        "options": {k: v for k, v in vars(options).items() if k != "extra"},
    }
    for stage in stages:
        describe = getattr(stage, "describe", None)
        if describe is None:
            continue
        details = describe()
        report.setdefault("stage_details", {})[stage.name] = details
        if "summary" in details:
            report["summary"] = details["summary"]
            report["metrics_unavailable"] = details.get("unavailable", {})
    return report


def _describe_io(target: Input | Output) -> str:
    if isinstance(target, str | os.PathLike):
        return "-" if target == "-" else str(Path(target))
    return f"<stream {getattr(target, 'name', type(target).__name__)}>"


@contextlib.asynccontextmanager
async def stream(
    frames: Iterable[np.ndarray | Frame] | AsyncIterable[np.ndarray | Frame],
    options: ProcessOptions | None = None,
    **overrides: Any,
) -> AsyncIterator[AsyncIterator[Frame]]:
    """Enhance frames as they come, for services that hold frames rather than files::

        async with gifstream.stream(camera_frames(), restorer="classic") as enhanced:
            async for frame in enhanced:
                send(frame.pixels)

    ``frames`` yields (H, W, 3) uint8 RGB arrays or :class:`Frame` objects; the
    output frames come in the same order, each as soon as it is done.
    """
    opts = as_options(options, **overrides)
    ctx = RunContext(device=resolve_device(opts.device, _needs_torch(opts)))
    pipeline = Pipeline(
        _as_frames(frames, opts.fps), build_stages(opts), ctx, RunnerConfig(opts.queue_depth, opts.batch)
    )
    async with pipeline as out:
        yield out


async def _as_frames(
    items: Iterable[np.ndarray | Frame] | AsyncIterable[np.ndarray | Frame], fps: float
) -> AsyncIterator[Frame]:
    duration = 1000.0 / fps
    index = 0
    async for item in _aiter(items):
        if isinstance(item, Frame):
            yield item
        else:
            yield Frame(index, _checked_rgb(item, index), duration_ms=duration, pts=index * duration / 1000)
        index += 1


async def _aiter(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def _checked_rgb(array: np.ndarray, index: int) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ConfigError(f"frame {index}: expected an (H, W, 3) uint8 RGB array, got {array.shape} {array.dtype}")
    return np.ascontiguousarray(array)
