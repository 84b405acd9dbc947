"""Animated GIF in and out, through Pillow, one frame at a time.

:class:`GifSource` yields frames composited exactly as Pillow composites them
(disposal, transparency, sub-rectangles, local palettes), cropped to the
logical screen. :class:`GifSink` writes a GIF incrementally: the header goes
out with the first frame and every frame is encoded and flushed as it arrives.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import GifImagePlugin, Image

from ..engine.errors import ConfigError, InputError, LimitExceededError, OutputError
from ..engine.frame import Frame, StreamInfo
from .atomic import AtomicFile, check_target
from .limits import Limits
from .raw import frame_planes

_DEFAULT_LIMITS = Limits()
_GIF_MAGIC = (b"GIF87a", b"GIF89a")
_SCREEN_DESCRIPTOR_BYTES = 13
_SPOOL_CHUNK_BYTES = 1 << 20
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


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class _ScreenHeader:
    """The logical screen descriptor and global colour table of a GIF."""

    width: int
    height: int
    background: int
    global_palette: bytes  # empty when the file has no global colour table
    blocks_start: int  # offset of the first block after the header

    def background_rgb(self) -> tuple[int, int, int] | None:
        start = self.background * 3
        if start + 3 > len(self.global_palette):
            return None
        r, g, b = self.global_palette[start : start + 3]
        return (r, g, b)


@dataclass(frozen=True, slots=True)
class _FrameRecord:
    """What the block structure says about one frame, without decoding it."""

    delay_cs: int  # 0 when the frame has no graphic control extension
    transparent: bool
    disposal: int  # 0-1 leave in place, 2 restore to background, 3 restore to previous
    right: int  # image descriptor extent: left + width
    bottom: int  # top + height


@dataclass(frozen=True, slots=True)
class _Survey:
    frame_count: int
    transparent: bool  # composited frames can show transparent pixels


class _Cursor:
    """Reads a file from its own position.

    A scan can then run on the same file object Pillow decodes from (a spooled
    pipe has no second handle) without either disturbing the other.
    """

    def __init__(self, file: BinaryIO, position: int) -> None:
        self._file = file
        self._position = position

    def read(self, size: int) -> bytes:
        self._file.seek(self._position)
        data = self._file.read(size)
        self._position += len(data)
        return data

    def skip(self, size: int) -> None:
        self._position += size

    def sub_block(self) -> bytes | None:
        """The next data sub-block, or None at a block terminator or the end of the file."""
        length = self.read(1)
        if length and length[0]:
            return self.read(length[0])
        return None

    def skip_sub_blocks(self) -> None:
        while True:
            length = self.read(1)
            if not length or not length[0]:
                return
            self.skip(length[0])


def _read_screen_header(file: BinaryIO, name: str) -> _ScreenHeader:
    head = file.read(_SCREEN_DESCRIPTOR_BYTES)
    if not head:
        raise InputError(f"{name} is empty (0 bytes)")
    if not head.startswith(_GIF_MAGIC):
        raise InputError(f"{name} is not a GIF (starts with {head[:6]!r})")
    if len(head) < _SCREEN_DESCRIPTOR_BYTES:
        raise InputError(f"{name} is truncated: its GIF header has {len(head)} of {_SCREEN_DESCRIPTOR_BYTES} bytes")
    width, height, flags, background = struct.unpack_from("<HHBB", head, 6)
    palette = b""
    if flags & 0x80:
        palette_size = 3 << ((flags & 7) + 1)
        palette = file.read(palette_size)
        if len(palette) < palette_size:
            raise InputError(f"{name} is truncated inside its global colour table")
    return _ScreenHeader(width, height, background, palette, _SCREEN_DESCRIPTOR_BYTES + len(palette))


def _scan_frames(cursor: _Cursor) -> Iterator[_FrameRecord]:
    """Walk the blocks the way Pillow's GIF reader does, skipping the image data undecoded.

    Pillow has no way to read a frame's delay or transparency without
    decoding the frame before it, so this walk is what lets ``open`` check
    every frame's extent against the limits and know whether the GIF uses
    transparency, and what ``durations_ms`` reads. Like Pillow, it skips bytes
    that start no known block and ends at the trailer or the end of the file.

    It costs what Pillow's own ``n_frames`` does (which also parses without
    decoding): 2.6 vs 2.3 ms for a 259-frame 750 KB GIF, 4.3 vs 3.8 ms for a
    380-frame one, against 560 and 136 ms to decode them; so ``open`` reports
    the frame count.
    """
    delay_cs, transparent, disposal = 0, False, 0
    while True:
        introducer = cursor.read(1)
        if not introducer or introducer == b";":
            return
        if introducer == b"!":
            if cursor.read(1) == b"\xf9":
                block = cursor.sub_block()
                if block is None:
                    continue  # an empty extension: its terminator is already read
                if len(block) >= 4:
                    # Graphic control extension: packed flags, delay (cs, little-endian), transparent index.
                    transparent = transparent or bool(block[0] & 1)
                    disposal = (block[0] >> 2) & 7
                    delay_cs = block[1] | block[2] << 8
            cursor.skip_sub_blocks()
        elif introducer == b",":
            descriptor = cursor.read(9)
            if len(descriptor) < 9:
                return
            left, top, width, height, flags = struct.unpack("<HHHHB", descriptor)
            if flags & 0x80:
                cursor.skip(3 << ((flags & 7) + 1))  # local colour table
            cursor.skip(1)  # LZW minimum code size
            cursor.skip_sub_blocks()
            yield _FrameRecord(delay_cs, transparent, disposal, left + width, top + height)
            delay_cs, transparent, disposal = 0, False, 0


def _check_canvas(width: int, height: int, limits: Limits) -> None:
    """Refuse a canvas over our limit, or over Pillow's, before Pillow allocates it."""
    limits.check_frame_size(width, height)
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if pillow_limit is not None and width * height > pillow_limit:
        # Pillow would warn (DecompressionBombWarning) or refuse; we refuse first.
        raise LimitExceededError(
            f"frame size {width}x{height} = {width * height} pixels exceeds"
            f" Pillow's Image.MAX_IMAGE_PIXELS {pillow_limit}"
        )


def _shows_transparency(record: _FrameRecord, first: bool) -> bool:
    """Whether this frame can leave transparent pixels on the composited canvas.

    A transparent index on the first frame shows through; on a later frame it
    normally just keeps the previous frame's pixels (encoders use it to store
    only what changed), so it shows only where the frame is disposed to the
    background (disposal 2), which Pillow clears to transparent.
    """
    return record.transparent and (first or record.disposal == 2)


def _survey(records: Iterator[_FrameRecord], header: _ScreenHeader, limits: Limits, name: str) -> _Survey:
    """Count the frames and check how far they grow Pillow's canvas, before anything is decoded."""
    canvas_width, canvas_height = header.width, header.height
    count, transparent = 0, False
    for record in records:
        count += 1
        try:
            limits.check_frame_count(count)
            if record.right > canvas_width or record.bottom > canvas_height:
                # Pillow grows its canvas to hold a frame that extends past the screen.
                canvas_width, canvas_height = max(canvas_width, record.right), max(canvas_height, record.bottom)
                _check_canvas(canvas_width, canvas_height, limits)
        except LimitExceededError as exc:
            raise LimitExceededError(f"{name}: frame {count - 1}: {exc}") from exc
        transparent = transparent or _shows_transparency(record, first=count == 1)
    if count == 0:
        raise InputError(f"{name} holds no image (a GIF header and no frames)")
    return _Survey(count, transparent)


def _spool(stream: BinaryIO, limits: Limits) -> BinaryIO:
    """Copy a pipe into an anonymous temporary file, which the system removes when it is closed."""
    # Not a `with` block: the open spool is handed to the source, which closes it.
    spool = tempfile.TemporaryFile(prefix="gifstream-", suffix=".gif")  # noqa: SIM115
    try:
        total = 0
        while chunk := stream.read(_SPOOL_CHUNK_BYTES):
            total += len(chunk)
            limits.check_input_bytes(total)
            spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def _is_seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError, OSError):
        return False


class GifSource:
    """Decodes a GIF file or stream into composited RGB frames (plus alpha when it uses transparency).

    A non-seekable stream (a pipe) is first spooled to an anonymous temporary
    file, never into memory. Only the current canvas (and Pillow's disposal
    copy) is held while decoding.
    """

    def __init__(self, src: str | os.PathLike[str] | BinaryIO, limits: Limits = _DEFAULT_LIMITS) -> None:
        self._src = src
        self._limits = limits
        self._file: BinaryIO | None = None
        self._owns_file = False
        self._image: Image.Image | None = None
        self._header: _ScreenHeader | None = None
        self._info: StreamInfo | None = None

    @property
    def name(self) -> str:
        """How messages name the input."""
        if isinstance(self._src, str | os.PathLike):
            return str(self._src)
        stream_name = getattr(self._src, "name", None)
        if stream_name in (0, "<stdin>"):
            return "standard input"
        return "input stream" if stream_name is None else f"input {stream_name}"

    def open(self) -> StreamInfo:
        try:
            return self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> StreamInfo:
        file = self._open_bytes()
        header = _read_screen_header(file, self.name)
        if header.width == 0 or header.height == 0:
            raise InputError(f"{self.name} has an empty logical screen ({header.width}x{header.height})")
        try:
            _check_canvas(header.width, header.height, self._limits)
        except LimitExceededError as exc:
            raise LimitExceededError(f"{self.name}: logical screen: {exc}") from exc
        survey = _survey(_scan_frames(_Cursor(file, header.blocks_start)), header, self._limits, self.name)
        self._header = header
        self._image = self._open_with_pillow(file)
        background = header.background_rgb()
        self._info = StreamInfo(
            width=header.width,
            height=header.height,
            format="gif",
            frame_count=survey.frame_count,
            loop=self._image.info.get("loop"),
            has_alpha=survey.transparent,
            path=str(self._src) if isinstance(self._src, str | os.PathLike) else None,
            extra={} if background is None else {"background": background},
        )
        return self._info

    def _open_bytes(self) -> BinaryIO:
        """A seekable binary file at offset 0 holding the whole GIF; its size checked against the limits."""
        if isinstance(self._src, str | os.PathLike):
            path = Path(self._src)
            try:
                file: BinaryIO = path.open("rb")
            except FileNotFoundError:
                raise InputError(f"input {path} does not exist") from None
            except OSError as exc:
                raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
            self._file, self._owns_file = file, True
            self._limits.check_input_bytes(os.fstat(file.fileno()).st_size)
            return file
        stream = self._src
        if _is_seekable(stream):
            size = stream.seek(0, os.SEEK_END)
            self._limits.check_input_bytes(size)
            # Pillow reads a GIF from offset 0 of the stream it is given.
            stream.seek(0)
            self._file, self._owns_file = stream, False
            return stream
        spool = _spool(stream, self._limits)
        self._file, self._owns_file = spool, True
        return spool

    def _open_with_pillow(self, file: BinaryIO) -> Image.Image:
        try:
            return Image.open(file, formats=["GIF"])
        except Image.DecompressionBombError as exc:
            raise LimitExceededError(f"{self.name}: {exc}") from exc
        except (OSError, SyntaxError, EOFError, ValueError, struct.error) as exc:
            raise InputError(f"{self.name} cannot be read as a GIF: {exc}") from exc

    def frames(self) -> Iterator[Frame]:
        """Every frame, composited, cropped to the logical screen, with its own delay.

        A frame whose data is cut short or broken raises InputError naming it
        (no partial frame is ever yielded). A file that ends *between* frames
        (no trailer) ends the stream after its last complete frame, as
        browsers show it.
        """
        image, info = self._opened()
        total_pixels = 0
        elapsed_ms = 0.0
        for index in itertools.count():
            if not self._seek(image, index):
                return
            try:
                self._limits.check_frame_count(index + 1)
                # Pillow's canvas can be larger than the screen; that is what gets decoded.
                total_pixels += image.width * image.height
                self._limits.check_total_pixels(total_pixels)
            except LimitExceededError as exc:
                raise LimitExceededError(f"{self.name}: frame {index}: {exc}") from exc
            pixels, alpha = self._decode(image, index, info)
            duration = float(image.info.get("duration", 0))
            yield Frame(index, pixels, duration_ms=duration, pts=elapsed_ms / 1000, alpha=alpha)
            elapsed_ms += duration

    def _seek(self, image: Image.Image, index: int) -> bool:
        """Move Pillow to frame ``index`` (parses its blocks, decodes nothing); False past the last frame."""
        try:
            image.seek(index)
        except EOFError:
            return False
        except Image.DecompressionBombError as exc:
            raise LimitExceededError(f"{self.name}: frame {index}: {exc}") from exc
        except (OSError, SyntaxError, ValueError, IndexError, struct.error) as exc:
            raise InputError(f"{self.name}: frame {index} is truncated or corrupt ({exc})") from exc
        return True

    def _decode(self, image: Image.Image, index: int, info: StreamInfo) -> tuple[np.ndarray, np.ndarray | None]:
        """The composited frame, cropped to the logical screen, as RGB and (for GIFs with transparency) alpha."""
        try:
            # Pillow raises on a frame whose LZW data is cut short or broken
            # (ImageFile.LOAD_TRUNCATED_IMAGES is off). That stays an error: a
            # partial frame would show the previous frame where data is missing.
            image.load()
            canvas = np.asarray(image.convert("RGBA" if info.has_alpha else "RGB"))
        except Image.DecompressionBombError as exc:
            raise LimitExceededError(f"{self.name}: frame {index}: {exc}") from exc
        except (OSError, SyntaxError, ValueError, IndexError, struct.error) as exc:
            raise InputError(f"{self.name}: frame {index} is truncated or corrupt ({exc})") from exc
        # Browsers show only the logical screen of a frame that extends past it.
        canvas = canvas[: info.height, : info.width]
        # Fresh arrays: Pillow's buffer is read-only, and stages may work in place.
        pixels = np.array(canvas[..., :3], order="C")
        alpha = np.array(canvas[..., 3], order="C") if info.has_alpha else None
        return pixels, alpha

    def durations_ms(self) -> Iterator[float]:
        """Each frame's delay in milliseconds, read from the block structure without decoding pixels."""
        self._opened()
        assert self._file is not None and self._header is not None
        for record in _scan_frames(_Cursor(self._file, self._header.blocks_start)):
            yield record.delay_cs * 10.0

    def _opened(self) -> tuple[Image.Image, StreamInfo]:
        if self._image is None or self._info is None:
            raise InputError(f"{self.name}: GifSource.open() must be called before reading frames")
        return self._image, self._info

    def close(self) -> None:
        image, file, owns_file = self._image, self._file, self._owns_file
        self._image, self._file, self._info = None, None, None
        if image is not None:
            image.close()
        if file is not None and owns_file:
            file.close()


# --------------------------------------------------------------------------- writing


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


__all__ = ["GifOptions", "GifSink", "GifSource", "centiseconds_due"]
