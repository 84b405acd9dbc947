"""Animated GIF output through Pillow, one frame at a time.

:class:`GifSink` writes a GIF incrementally: the header goes out with the
first frame and every frame is encoded and flushed as it arrives.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import GifImagePlugin, Image

from ..engine.errors import ConfigError, OutputError
from ..engine.frame import Frame, StreamInfo
from .atomic import AtomicFile, check_target
from .raw import frame_planes

_MAX_DELAY_CS = 0xFFFF
_MAX_SIDE = 0xFFFF
# Pixels with less alpha than this are written as the transparent index.
_ALPHA_THRESHOLD = 128

# Palette generation for "adaptive" and for the first frame of "global".
# Measured on 30 frames each of three real clips (shared testdata: carphone
# 176x144, Big Buck Bunny 320x180, asl_thanks 640x480), 255 colours, PSNR
# against the RGB input / time per frame on a shared 2-core CPU:
#   MEDIANCUT    38.1 / 32.5 / 38.5 dB   19 / 59 / 125 ms
#   MAXCOVERAGE  36.3 / 31.1 / 34.7 dB   33 / 158 / 182 ms
#   FASTOCTREE   37.3 / 32.9 / 37.5 dB   1.2 / 4.1 / 9.7 ms
# FASTOCTREE is within 1 dB of the best (ahead on one clip) at 10-15x the
# speed; with Floyd-Steinberg it keeps 37.0 / 33.1 / 36.4 dB, where MEDIANCUT
# drops to 35.6 / 30.4 / 34.7 dB. LIBIMAGEQUANT is absent from this Pillow.
_QUANTIZE_METHOD = Image.Quantize.FASTOCTREE


Loop = int | None | Literal["keep"]


@dataclass(frozen=True)
class GifOptions:
    """How GIF output is quantised and whether it loops.

    ``loop``: ``"keep"`` writes the input's loop count (no loop extension when
    the input had none); an int writes that count (0 = forever); None writes
    no loop extension (plays once).
    """

    colors: int = 256
    dither: str = "none"  # "none" | "floyd-steinberg"
    palette: str = "adaptive"  # "adaptive" (one per frame) | "global" (from the first frame)
    loop: Loop = "keep"

    def __post_init__(self) -> None:
        if isinstance(self.colors, bool) or not isinstance(self.colors, int) or not 2 <= self.colors <= 256:
            raise ConfigError(f"--gif-colors must be an integer from 2 to 256; got {self.colors!r}")
        if self.dither not in ("none", "floyd-steinberg"):
            raise ConfigError(f"--gif-dither must be 'none' or 'floyd-steinberg'; got {self.dither!r}")
        if self.palette not in ("adaptive", "global"):
            raise ConfigError(f"--gif-palette must be 'adaptive' or 'global'; got {self.palette!r}")
        if not _is_loop_setting(self.loop):
            raise ConfigError(f"GIF loop must be 'keep', None or a count from 0 (forever) to 65535; got {self.loop!r}")


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


def _hide_transparent(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Paint see-through pixels in a colour the frame already shows, so they cost no palette entry."""
    if alpha is None:
        return rgb
    see_through = alpha < _ALPHA_THRESHOLD
    visible = np.flatnonzero(~see_through)
    if not see_through.any() or visible.size == 0:
        return rgb
    rgb = rgb.copy()
    rgb[see_through] = rgb.reshape(-1, 3)[visible[0]]
    return rgb


def _quantize(rgb: np.ndarray, colors: int, dither: Image.Dither, palette: Image.Image | None) -> Image.Image:
    """``rgb`` as a P image on ``palette``, or on its own palette of at most ``colors`` entries."""
    image = Image.fromarray(rgb)
    if palette is None:
        own = image.quantize(colors, method=_QUANTIZE_METHOD)
        if dither == Image.Dither.NONE:
            return own
        palette = own  # Pillow dithers only when mapping onto a given palette.
    return image.quantize(palette=palette, dither=dither)


def _with_transparent_index(indexed: Image.Image, alpha: np.ndarray) -> tuple[Image.Image, int]:
    """Add a transparent entry after the palette's colours and point see-through pixels at it."""
    colors = indexed.getpalette() or []
    transparent = len(colors) // 3
    out = indexed.copy()
    out.putpalette([*colors, 0, 0, 0])
    mask = Image.fromarray(np.where(alpha < _ALPHA_THRESHOLD, 255, 0).astype(np.uint8))
    out.paste(transparent, mask=mask)
    return out, transparent


class GifSink:
    """Writes frames to an animated GIF as they arrive.

    A path is written through a temporary file beside it, renamed into place
    by :meth:`finish`; a binary stream (stdout) is written directly and
    flushed after every frame. The logical screen is the first frame's size.
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
        self._dither = Image.Dither.FLOYDSTEINBERG if options.dither == "floyd-steinberg" else Image.Dither.NONE
        self._atomic: AtomicFile | None = None
        self._out: BinaryIO | None = None
        self._info: StreamInfo | None = None
        self._size: tuple[int, int] | None = None
        self._global_palette: Image.Image | None = None
        self._global_reserves_transparency = False
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
        height, width = rgb.shape[:2]
        first = self._size is None
        if first:
            if width > _MAX_SIDE or height > _MAX_SIDE:
                raise OutputError(f"frame {frame.index} is {width}x{height}; a GIF side is at most {_MAX_SIDE} pixels")
            self._size = (width, height)
        elif (width, height) != self._size:
            screen_width, screen_height = self._size or (0, 0)
            raise OutputError(
                f"frame {frame.index} is {width}x{height} but {self.name} is {screen_width}x{screen_height};"
                " every frame of a GIF has the first frame's size"
            )
        if alpha is None and info.has_alpha:
            # Every frame of a stream with alpha declares its transparent index, even an
            # opaque one: decoders (Pillow among them) decide from the first frame
            # whether the GIF has transparency at all.
            alpha = np.full(rgb.shape[:2], 255, np.uint8)
        indexed, transparency, local_table = self._indexed(rgb, alpha, first, info)
        chunks: list[bytes] = []
        if first:
            chunks += self._header(indexed, info)
        chunks += GifImagePlugin.getdata(
            indexed,
            duration=self._delay_cs(frame, info) * 10,
            # Disposal 2 clears a frame before the next is drawn, so the
            # transparent areas of the next frame show the background rather
            # than this frame; frames are full-size, so opaque streams need none.
            disposal=2 if alpha is not None else 1,
            transparency=transparency,
            include_color_table=local_table,
        )
        self._emit(chunks)

    def _indexed(
        self, rgb: np.ndarray, alpha: np.ndarray | None, first: bool, info: StreamInfo
    ) -> tuple[Image.Image, int | None, bool]:
        """The frame as a P image, its transparent index (if any) and whether it carries a local colour table."""
        visible = _hide_transparent(rgb, alpha)
        if self._options.palette == "global":
            if first:
                self._start_global_palette(visible, alpha is not None or info.has_alpha)
            if alpha is None or self._global_reserves_transparency:
                return self._indexed_on_global(visible, alpha, first)
            # A see-through frame in a stream that reserved no transparent entry gets its own palette.
        indexed = _quantize(visible, self._options.colors - (alpha is not None), self._dither, None)
        transparent = None
        if alpha is not None:
            indexed, transparent = _with_transparent_index(indexed, alpha)
        # The first frame's palette is the global colour table; later frames carry their own.
        return indexed, transparent, not first

    def _start_global_palette(self, first_rgb: np.ndarray, reserve_transparency: bool) -> None:
        """The palette of the first frame, kept (on a 1x1 image) to map every later frame onto."""
        colors = self._options.colors - (1 if reserve_transparency else 0)
        palette = Image.new("P", (1, 1))
        palette.putpalette(_quantize(first_rgb, colors, Image.Dither.NONE, None).getpalette() or [0, 0, 0])
        self._global_palette = palette
        self._global_reserves_transparency = reserve_transparency

    def _indexed_on_global(
        self, visible: np.ndarray, alpha: np.ndarray | None, first: bool
    ) -> tuple[Image.Image, int | None, bool]:
        indexed = _quantize(visible, self._options.colors, self._dither, self._global_palette)
        if alpha is not None:
            indexed, transparent = _with_transparent_index(indexed, alpha)
            return indexed, transparent, False
        if first and self._global_reserves_transparency:
            # The first frame's palette becomes the global colour table: keep the reserved entry in it.
            indexed.putpalette([*(indexed.getpalette() or []), 0, 0, 0])
        return indexed, None, False

    def _header(self, first: Image.Image, info: StreamInfo) -> list[bytes]:
        loop = info.loop if self._options.loop == "keep" else self._options.loop
        first.info["version"] = b"89a"  # graphic control extensions (delays) need GIF89a
        header, _ = GifImagePlugin.getheader(first, None, {} if loop is None else {"loop": loop})
        return header

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
        if self._size is None:
            raise OutputError(f"no frames to write to {self.name}; a GIF needs at least one frame")
        self._emit([b";"])
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
