"""Animated GIF output, one frame at a time.

:class:`GifSink` writes a GIF incrementally: the header goes out with the
first frame and every frame is encoded and flushed once the next one has
arrived (one frame of lookahead takes out one-frame spikes, see
:mod:`~gifstream.io.gifenc.despike`), the last one at :meth:`GifSink.finish`. What each
frame writes is decided by :class:`~gifstream.io.gifenc.FramePlanner`:
pixels the previous frames already show well enough stay transparent, each
frame is cropped to the rectangle that changed, and a palette is kept while
it still fits the pixels being written.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from ..engine.errors import ConfigError, OutputError
from ..engine.frame import Frame, StreamInfo
from .atomic import AtomicFile, check_target
from .gifenc import DITHERS, PALETTES, FramePlanner, PlannerSettings, SpikeFilter, blocks
from .raw import frame_planes

_MAX_DELAY_CS = 0xFFFF
_MAX_SIDE = 0xFFFF

DEFAULT_QUALITY = 90
_NOISE_MULTIPLE = 1.2
# One-frame spikes up to this many times the base tolerance are taken out (see gifenc.despike):
# at quality 90 that is 6.7 levels, chosen by bench/gif_quality.py (BENCHMARKS.md).
_SPIKE_MULTIPLE = 2.0

Loop = int | None | Literal["keep"]


@dataclass(frozen=True)
class GifOptions:
    """How GIF output is quantised and whether it loops.

    ``quality`` (1-100): 100 rewrites every pixel the new frame's colours
    bring closer to the input; lower values let a pixel keep the colour
    already shown unless a rewrite brings it closer by more than a tolerance
    (``(100 - quality) / 3`` levels RMS a channel, plus a little more than
    the noise measured in the stream), which makes files smaller and calmer.
    The tolerance covers change in motion only: the frame a pixel's input
    comes to rest, it is rewritten if the palette shows it three times
    closer (RMS) than the screen does, so nothing lingers within the
    tolerance on still content.

    ``despike``: a pixel that leaves the range its neighbouring frames span,
    for one frame, by at most this many levels on every channel (a codec's
    ringing, a shade that jumps and comes back) is clamped into that range
    before it is quantised; for that each frame is written once the next one
    arrives. None (the default) takes twice the base tolerance (6.7 levels
    at quality 90, none at 100); 0 turns it off, and frames are written as
    they arrive.

    ``colors``: entries of each colour table, the transparent one included.

    ``dither``: ``"none"`` (the default: it scores best on PSNR and size on
    every clip of bench/gif_quality.py), ``"ordered"`` (a fixed Bayer pattern
    anchored to the screen, so it does not crawl) or ``"floyd-steinberg"``
    (error diffusion over the pixels being rewritten only).

    ``palette``: ``"adaptive"`` keeps a palette while it fits and builds a
    new one when the content changes; ``"global"`` maps every frame onto the
    first frame's palette (smallest and fastest, for short clips whose
    colours do not change).

    ``loop``: ``"keep"`` writes the input's loop count (no loop extension
    when the input had none); an int writes that count (0 = forever); None
    writes no loop extension (plays once).
    """

    colors: int = 256
    dither: str = "none"
    palette: str = "adaptive"
    loop: Loop = "keep"
    quality: int = DEFAULT_QUALITY
    despike: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.colors, bool) or not isinstance(self.colors, int) or not 2 <= self.colors <= 256:
            raise ConfigError(f"--gif-colors must be an integer from 2 to 256; got {self.colors!r}")
        if self.dither not in DITHERS:
            raise ConfigError(f"--gif-dither must be one of {', '.join(DITHERS)}; got {self.dither!r}")
        if self.palette not in PALETTES:
            raise ConfigError(f"--gif-palette must be 'adaptive' or 'global'; got {self.palette!r}")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise ConfigError(f"--gif-quality must be an integer from 1 to 100; got {self.quality!r}")
        if self.despike is not None and (
            isinstance(self.despike, bool) or not isinstance(self.despike, int | float) or not 0 <= self.despike <= 255
        ):
            raise ConfigError(f"GIF despike must be None or a number of levels from 0 to 255; got {self.despike!r}")
        if not _is_loop_setting(self.loop):
            raise ConfigError(f"GIF loop must be 'keep', None or a count from 0 (forever) to 65535; got {self.loop!r}")

    def spike_limit(self) -> float:
        """Largest one-frame spike (levels) taken out before quantising (0: none, and no lookahead)."""
        if self.despike is not None:
            return float(self.despike)
        return _SPIKE_MULTIPLE * tolerances_for(self.quality)[0]

    def planner_settings(self) -> PlannerSettings:
        tolerance, noise_tolerance = tolerances_for(self.quality)
        return PlannerSettings(
            colors=self.colors,
            tolerance=tolerance,
            noise_tolerance=noise_tolerance,
            dither=self.dither,
            palette=self.palette,
        )


def tolerances_for(quality: int) -> tuple[float, float]:
    """How far a kept pixel may be from the input at ``quality``: a base (levels RMS a channel) and a noise multiple.

    The base is ``(100 - quality) / 3`` levels. On top of it a pixel may be
    off by 1.2 times the stream's measured noise (a fraction of that above
    quality 90), since re-sending noise only adds bytes and flicker. At 100
    both are 0. The numbers come from bench/gif_quality.py: at quality 90,
    with one-frame spikes taken out first (:meth:`GifOptions.spike_limit`),
    they keep gifski q90's PSNR on every real clip there while writing less
    and flickering no more. The noise is measured on the despiked frames,
    the ones encoded.
    """
    slack = 100 - quality
    return slack / 3, _NOISE_MULTIPLE * min(1.0, slack / 10)


def _is_loop_setting(loop: object) -> bool:
    if loop == "keep" or loop is None:
        return True
    return isinstance(loop, int) and not isinstance(loop, bool) and 0 <= loop <= 0xFFFF


_DEFAULT_GIF_OPTIONS = GifOptions()


def centiseconds_due(shown_ms: float, written_cs: int) -> int:
    """The delay (cs) for a frame that ends ``shown_ms`` after the start, ``written_cs`` having been written.

    Rounding the running total rather than each delay carries every frame's
    rounding remainder to the next, so the total playback time stays exact
    (33.3 ms video frames become 3, 4, 3 cs) and multiples of 10 ms stay exact.
    """
    return math.floor(shown_ms / 10 + 0.5) - written_cs


def compile_encoder() -> None:
    """Have the encoder's compiled loops ready: numba compiles them on first use (seconds) and caches them.

    Encodes a few frames to memory: small ones, with and without
    transparency, and ones with more pixels than the encoder looks at in full
    (it then passes strided samples, which numba compiles separately). The
    set-up script calls this so the first real GIF does not wait for the
    compiler; a service may call it at start-up.
    """
    rng = np.random.default_rng(0)
    alpha = np.full((16, 24), 255, np.uint8)
    alpha[:4] = 0
    for shape, see_through in (((16, 24), None), ((16, 24), alpha), ((272, 256), None)):
        frames = rng.integers(0, 256, (4, *shape, 3), dtype=np.uint8)
        frames[2] = frames[1]  # a still frame, and pixels that come to rest
        sink = GifSink(io.BytesIO())
        sink.open(
            StreamInfo(width=shape[1], height=shape[0], format="gif", fps=10.0, has_alpha=see_through is not None)
        )
        for index, pixels in enumerate(frames):
            sink.write(Frame(index, pixels, duration_ms=100.0, alpha=see_through))
        sink.finish()


class GifSink:
    """Writes frames to an animated GIF as they arrive.

    A path is written through a temporary file beside it, renamed into place
    by :meth:`finish`; a binary stream (stdout) is written directly and
    flushed after every frame (each frame goes out when the next arrives,
    or at once with ``quality=100`` or ``despike=0``). The logical screen is the first frame's size.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        options: GifOptions = _DEFAULT_GIF_OPTIONS,
        overwrite: bool = False,
    ) -> None:
        self._target = target
        self._options = options
        self._overwrite = overwrite
        self._atomic: AtomicFile | None = None
        self._out: BinaryIO | None = None
        self._info: StreamInfo | None = None
        self._planner: FramePlanner | None = None
        self._size: tuple[int, int] | None = None
        self._spikes: SpikeFilter[int] = SpikeFilter(options.spike_limit())
        self._shown_ms = 0.0
        self._written_cs = 0

    @property
    def name(self) -> str:
        if isinstance(self._target, str | os.PathLike):
            return str(self._target)
        stream_name = getattr(self._target, "name", None)
        if stream_name in (1, "<stdout>"):
            return "standard output"
        return "output stream" if stream_name is None else f"output {stream_name}"

    @property
    def frames_held(self) -> int:
        """How many frames a frame's bytes wait for: 1 with the spike filter's lookahead, else 0."""
        return 1 if self._spikes.limit > 0 else 0

    def open(self, info: StreamInfo) -> None:
        if isinstance(self._target, str | os.PathLike):
            target = Path(self._target)
            inputs = (Path(info.path),) if info.path else ()
            check_target(target, overwrite=self._overwrite, inputs=inputs)
            try:
                self._atomic = AtomicFile(target)
            except OSError as exc:
                raise OutputError(f"cannot create a temporary file beside {target}: {exc.strerror or exc}") from exc
            self._out = self._atomic.file
        else:
            self._out = self._target
        self._info = info

    def write(self, frame: Frame) -> None:
        info = self._opened()
        rgb, alpha = frame_planes(frame, "GIF output")
        self._check_size(frame.index, rgb)
        delay = self._delay_cs(frame, info)
        for ready in self._spikes.push(rgb, alpha, delay):
            self._encode(*ready)

    def _check_size(self, index: int, rgb: np.ndarray) -> None:
        height, width = rgb.shape[:2]
        if self._size is None:
            if width > _MAX_SIDE or height > _MAX_SIDE:
                raise OutputError(f"frame {index} is {width}x{height}; a GIF side is at most {_MAX_SIDE} pixels")
            self._size = (width, height)
        elif (width, height) != self._size:
            raise OutputError(
                f"frame {index} is {width}x{height} but {self.name} is {self._size[0]}x{self._size[1]};"
                " every frame of a GIF has the first frame's size"
            )

    def _encode(self, rgb: np.ndarray, alpha: np.ndarray | None, delay: int) -> None:
        info = self._opened()
        planner = self._planner
        first = planner is None
        if planner is None:
            height, width = rgb.shape[:2]
            planner = FramePlanner(width, height, self._options.planner_settings(), with_alpha=info.has_alpha)
        planned = planner.plan(rgb, alpha)
        chunks: list[bytes] = []
        if first:
            self._planner = planner
            chunks.append(self._header(planner, info))
        table = planned.palette
        chunks.extend(
            blocks.frame_pieces(
                planned.indices,
                planned.left,
                planned.top,
                delay,
                planned.disposal,
                planned.transparent,
                table if planned.local_table else None,
                len(table),
            )
        )
        self._emit(chunks)

    def _header(self, planner: FramePlanner, info: StreamInfo) -> bytes:
        loop = info.loop if self._options.loop == "keep" else self._options.loop
        table = planner.global_table
        # Streams with see-through pixels clear frames to the background: make it the transparent entry.
        background = len(table) - 1 if planner.with_alpha else 0
        return blocks.header(planner.width, planner.height, table, background, loop)

    def _delay_cs(self, frame: Frame, info: StreamInfo) -> int:
        duration = frame.duration_ms
        if duration is None:
            # No duration: the stream's frame rate, else the 100 ms browsers use for delay-less frames.
            duration = 1000.0 / info.fps if info.fps else 100.0
        if duration < 0 or not math.isfinite(duration):
            raise OutputError(f"frame {frame.index} has duration {duration} ms; a GIF delay is 0 or more")
        self._shown_ms += duration
        delay = centiseconds_due(self._shown_ms, self._written_cs)
        if delay > _MAX_DELAY_CS:
            raise OutputError(f"frame {frame.index} lasts {duration} ms; a GIF frame lasts at most {_MAX_DELAY_CS}0 ms")
        self._written_cs += delay
        return delay

    def _emit(self, chunks: list[bytes]) -> None:
        out = self._out
        assert out is not None
        try:
            for chunk in chunks:
                out.write(chunk)
            # Each frame reaches the file (or the pipe's reader) as soon as it is encoded.
            out.flush()
        except OSError as exc:
            raise OutputError(f"cannot write {self.name}: {exc.strerror or exc}") from exc

    def _opened(self) -> StreamInfo:
        if self._out is None or self._info is None:
            raise OutputError(f"{self.name}: GifSink.open() must be called before writing (or it was finished)")
        return self._info

    def finish(self) -> None:
        if self._out is None:
            return  # already finished or aborted: the trailer is written once
        for ready in self._spikes.drain():
            self._encode(*ready)
        if self._planner is None:
            raise OutputError(f"no frames to write to {self.name}; a GIF needs at least one frame")
        self._emit([blocks.TRAILER])
        atomic = self._atomic
        self._out, self._atomic = None, None
        if atomic is not None:
            try:
                atomic.commit()
            except OSError as exc:
                atomic.discard()
                raise OutputError(f"cannot write {self.name}: {exc.strerror or exc}") from exc

    def abort(self) -> None:
        """Remove the partial file; a stream is left as it is (and not closed: the caller owns it)."""
        atomic = self._atomic
        self._out, self._atomic = None, None
        if atomic is not None:
            atomic.discard()
