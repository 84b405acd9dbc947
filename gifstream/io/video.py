"""Video clips in and out through PyAV (FFmpeg): MP4, WebM, MKV and whatever else FFmpeg reads.

:class:`VideoSource` decodes one frame at a time to RGB with the clip's own
colour matrix and range, and keeps variable frame rate by deriving every
frame's duration from the presentation timestamps. :class:`VideoSink`
encodes with per-frame timestamps (so GIF delays survive) and passes the
input's audio through, copied when the output container accepts its codec.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np

from ..engine.errors import ConfigError, InputError, LimitExceededError, OutputError
from ..engine.frame import Frame, StreamInfo
from .atomic import AtomicFile, check_target
from .limits import Limits

PIPE_HINT = "from a pipe needs a streamable container (WebM, MKV, fragmented MP4, y4m); save it to a file first"

# Demuxers that turn any text file into "video" (ANSI art, BinText): a text file
# handed to gifstream by mistake must be refused, not rendered as glyphs.
_TEXT_DEMUXERS = frozenset({"tty", "bin", "xbin", "adf", "idf"})

# FFmpeg's own VP8/VP9 decoders drop the alpha plane WebM keeps in BlockAdditional; libvpx decodes it.
_ALPHA_DECODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}

# How far a packet's timestamp can be out of presentation order (B-frames), in packets.
_REORDER_WINDOW = 32

_DEFAULT_LIMITS = Limits()

# Duration of a frame nothing else tells us about (no timestamps, no frame rate): 10 fps.
_FALLBACK_DURATION_S = 0.1


# --------------------------------------------------------------------------- reading


def _seekable(stream: BinaryIO) -> bool:
    seekable = getattr(stream, "seekable", None)
    return bool(seekable()) if seekable is not None else False


def _stream_name(stream: BinaryIO) -> str:
    name = getattr(stream, "name", None)
    if name == "<stdin>":
        return "standard input"
    return name if isinstance(name, str) else "the input stream"


def _head_of_stream(stream: BinaryIO, size: int) -> bytes | None:
    """The first bytes of a stream without consuming them, or None when that is impossible."""
    peek = getattr(stream, "peek", None)
    if peek is not None:
        return bytes(peek(size)[:size])
    if _seekable(stream):
        position = stream.tell()
        head = stream.read(size)
        stream.seek(position)
        return head
    return None


def _short_format(format_name: str, head: bytes) -> str:
    """A short container name: FFmpeg names demuxers by family ("matroska,webm")."""
    names = format_name.split(",")
    if "mov" in names:
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if "matroska" in names:
        # The EBML header's DocType says which one this file is.
        return "webm" if b"webm" in head[:64] else "mkv"
    return names[0]


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The first video stream that is a moving picture (not a cover image)."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _ffmpeg_reason(error: av.FFmpegError) -> str:
    return error.strerror or str(error)


def _audio_description(container: av.container.InputContainer) -> dict[str, Any] | None:
    if not container.streams.audio:
        return None
    stream = container.streams.audio[0]
    context = stream.codec_context
    return {
        "codec": context.name if context is not None else "unknown",
        "sample_rate": context.sample_rate if context is not None else None,
        "channels": context.channels if context is not None else None,
        "index": stream.index,
    }


def _average_fps(stream: av.video.stream.VideoStream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


def _default_duration_ticks(stream: av.video.stream.VideoStream) -> int:
    """One frame at the stream's average rate, in its time base (used where timestamps are missing)."""
    fps = _average_fps(stream)
    seconds = 1.0 / fps if fps else _FALLBACK_DURATION_S
    return max(1, round(seconds / stream.time_base))


def _matrix_for(frame: av.VideoFrame) -> str:
    """The YUV→RGB matrix of a frame: its own tag, else what players assume for its size."""
    tagged = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
    if frame.colorspace in tagged:
        return tagged[frame.colorspace]
    # Untagged: HD material is BT.709, SD is BT.601 (the rule mpv and most players follow).
    return "ITU709" if frame.width >= 1280 or frame.height > 576 else "ITU601"


def _range_for(frame: av.VideoFrame) -> str:
    """Full ("JPEG") range when the frame says so or its pixel format is a yuvj one, else limited."""
    if frame.color_range == 2 or frame.format.name.startswith("yuvj"):
        return "JPEG"
    return "MPEG"


def _flags_alpha(stream: av.video.stream.VideoStream) -> bool:
    """Whether Matroska's AlphaMode is set (a tag of the same name may have replaced the key's case)."""
    return any(key.lower() == "alpha_mode" and value.strip() == "1" for key, value in stream.metadata.items())


def _has_alpha_plane(frame: av.VideoFrame) -> bool:
    return any(component.is_alpha for component in frame.format.components)


def frame_to_rgb(frame: av.VideoFrame, with_alpha: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert a decoded frame to contiguous RGB uint8 (and its alpha when asked), honouring matrix and range."""
    options: dict[str, Any] = {}
    if not frame.format.is_rgb:
        options = {"src_colorspace": _matrix_for(frame), "src_color_range": _range_for(frame)}
    if not with_alpha:
        return np.ascontiguousarray(frame.to_ndarray(format="rgb24", **options)), None
    if not _has_alpha_plane(frame):
        rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24", **options))
        return rgb, np.full(rgb.shape[:2], 255, np.uint8)
    rgba = frame.to_ndarray(format="rgba", **options)
    return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])


def _frame_ticks(frame: av.VideoFrame, previous: tuple[int, int] | None, default_ticks: int) -> tuple[int, int]:
    """(pts, own duration) of a decoded frame in stream ticks; a frame without a pts follows the previous one."""
    own = frame.duration if frame.duration and frame.duration > 0 else default_ticks
    if frame.pts is not None:
        return frame.pts, own
    if previous is None:
        return 0, own
    return previous[0] + previous[1], own


class _CountedPipe:
    """A pipe FFmpeg reads through, its bytes counted against --max-input-bytes as they arrive.

    It has no ``seek``, so FFmpeg treats it as the pipe it is; and no ``close``:
    the stream belongs to the caller.
    """

    def __init__(self, stream: BinaryIO, limits: Limits, name: str) -> None:
        self._stream = stream
        self._limits = limits
        self._name = name
        self._count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._count += len(data)
        try:
            self._limits.check_input_bytes(self._count)
        except LimitExceededError as exc:
            raise LimitExceededError(f"{self._name}: {exc}") from exc
        return data


class VideoSource:
    """Decodes any container FFmpeg reads, frame by frame, to RGB ``Frame`` objects.

    A path is opened directly; a binary stream (standard input) works when its
    container can be read front to back (WebM, MKV, fragmented MP4, y4m).
    """

    def __init__(self, src: str | os.PathLike[str] | BinaryIO, limits: Limits = _DEFAULT_LIMITS) -> None:
        self._src: Path | BinaryIO = Path(src) if isinstance(src, str | os.PathLike) else src
        self._limits = limits
        self._name = str(self._src) if isinstance(self._src, Path) else _stream_name(self._src)
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._decoder: av.CodecContext | None = None
        self._packets: Iterator[av.Packet] | None = None
        self._has_alpha = False

    # -- opening

    def _from_pipe(self) -> bool:
        return not isinstance(self._src, Path) and not _seekable(self._src)

    def _check_file(self, path: Path) -> None:
        if not path.exists():
            raise InputError(f"input {path} does not exist")
        if not path.is_file():
            raise InputError(f"input {path} is not a file")
        size = path.stat().st_size
        if size == 0:
            raise InputError(f"input {path} is empty (0 bytes)")
        try:
            self._limits.check_input_bytes(size)
        except LimitExceededError as exc:
            raise LimitExceededError(f"{path}: {exc}") from exc

    def _head(self) -> bytes:
        """The first bytes (to tell WebM from MKV); refuses an empty stream before FFmpeg sees it."""
        if isinstance(self._src, Path):
            with self._src.open("rb") as handle:
                return handle.read(64)
        head = _head_of_stream(self._src, 64)
        if head == b"":
            raise InputError(f"{self._name} is empty")
        return head or b""

    def _checked_stream(self, stream: BinaryIO) -> BinaryIO | _CountedPipe:
        """The stream FFmpeg is to read: a seekable one is measured now, a pipe counted as it is read."""
        if not _seekable(stream):
            return _CountedPipe(stream, self._limits, self._name)
        position = stream.tell()
        size = stream.seek(0, os.SEEK_END) - position
        stream.seek(position)
        try:
            self._limits.check_input_bytes(size)
        except LimitExceededError as exc:
            raise LimitExceededError(f"{self._name}: {exc}") from exc
        return stream

    def _open_container(self) -> av.container.InputContainer:
        source = str(self._src) if isinstance(self._src, Path) else self._checked_stream(self._src)
        try:
            # Tags in a legacy encoding must not stop a clip from playing.
            container = av.open(source, mode="r", metadata_errors="replace")
        except av.FFmpegError as error:
            reason = _ffmpeg_reason(error)
            message = f"{self._name} cannot be read as a video (unknown format, truncated or corrupt): {reason}"
            raise InputError(message) from None
        if container.format.name in _TEXT_DEMUXERS:
            container.close()
            raise InputError(f"{self._name} looks like a text file, not a video")
        return container

    def _choose_decoder(self, stream: av.video.stream.VideoStream) -> tuple[av.CodecContext, bool]:
        """The stream's decoder, or libvpx where it keeps a WebM alpha channel FFmpeg's own decoder drops."""
        context = stream.codec_context
        alpha_decoder = _ALPHA_DECODERS.get(context.name)
        if _flags_alpha(stream) and alpha_decoder in av.codecs_available:
            return av.CodecContext.create(alpha_decoder, "r"), True
        return context, False

    def open(self) -> StreamInfo:
        if isinstance(self._src, Path):
            self._check_file(self._src)
        head = self._head()
        self._container = self._open_container()
        try:
            info = self._describe(self._container, head)
            self._packets = self._first_packet_checked(self._container.demux(self._stream))
        except BaseException:
            self.close()
            raise
        return info

    def _describe(self, container: av.container.InputContainer, head: bytes) -> StreamInfo:
        stream = _video_stream(container)
        if stream is None and not container.streams:
            raise InputError(f"{self._name} holds no streams at all (truncated or corrupt?)")
        if stream is None:
            raise InputError(f"{self._name} has no video stream")
        if stream.codec_context is None:
            raise InputError(f"{self._name}: its video codec is not supported by this FFmpeg build")
        context = stream.codec_context
        try:
            if context.width and context.height:  # 0 = not in the header; every decoded frame is checked anyway
                self._limits.check_frame_size(context.width, context.height)
            if stream.frames:
                self._limits.check_frame_count(stream.frames)
        except LimitExceededError as exc:
            raise LimitExceededError(f"{self._name}: {exc}") from exc
        self._stream = stream
        self._decoder, self._has_alpha = self._choose_decoder(stream)
        return StreamInfo(
            width=context.width,
            height=context.height,
            format=_short_format(container.format.name, head),
            frame_count=stream.frames or None,
            fps=_average_fps(stream),
            has_alpha=self._has_alpha,
            audio=_audio_description(container),
            path=str(self._src) if isinstance(self._src, Path) else None,
            extra={"codec": context.name, "pix_fmt": context.pix_fmt},
        )

    def _first_packet_checked(self, packets: Iterator[av.Packet]) -> Iterator[av.Packet]:
        """From a pipe, read the first packet now: an MP4 with its index at the end fails here, before any frame."""
        if not self._from_pipe():
            return packets
        try:
            first = next(packets)
        except StopIteration:
            return iter(())
        except av.FFmpegError as error:
            raise self._read_error(error, 0) from None
        return itertools.chain([first], packets)

    def _read_error(self, error: av.FFmpegError, frame_index: int) -> InputError:
        container = self._container
        format_name = container.format.name if container is not None else ""
        # An MP4 whose index follows its data opens from a pipe but fails on its very first packet.
        if frame_index == 0 and self._from_pipe() and "mov" in format_name.split(","):
            return InputError(f"reading an MP4/MOV {PIPE_HINT} (FFmpeg: {_ffmpeg_reason(error)})")
        return InputError(f"{self._name}: cannot decode frame {frame_index}: {_ffmpeg_reason(error)}")

    # -- decoding

    def _decoded_frames(self) -> Iterator[av.VideoFrame]:
        assert self._packets is not None and self._decoder is not None
        decoded = 0
        try:
            for packet in self._packets:
                for frame in self._decoder.decode(packet):
                    yield frame
                    decoded += 1
        except av.FFmpegError as error:
            raise self._read_error(error, decoded) from None

    def frames(self) -> Iterator[Frame]:
        """Frames in presentation order; each duration is the gap to the next frame's timestamp."""
        if self._stream is None:
            raise InputError(f"{self._name}: open() must be called before frames()")
        time_base = self._stream.time_base
        default_ticks = _default_duration_ticks(self._stream)
        first_pts: int | None = None
        pending: tuple[Frame, int, int] | None = None  # a decoded frame waiting for the next one's timestamp
        total_pixels = 0
        for index, decoded in enumerate(self._decoded_frames()):
            total_pixels += decoded.width * decoded.height
            self._check_frame_limits(index, decoded, total_pixels)
            previous = (pending[1], pending[2]) if pending is not None else None
            pts, own_ticks = _frame_ticks(decoded, previous, default_ticks)
            if first_pts is None:
                first_pts = pts
            if pending is not None:
                yield _with_duration(pending, pts, time_base)
            pixels, alpha = frame_to_rgb(decoded, self._has_alpha)
            frame = Frame(index, pixels, pts=float((pts - first_pts) * time_base), alpha=alpha)
            pending = (frame, pts, own_ticks)
        if pending is None:
            # Said here, not left to the encoder's "no frames to write", which would blame the output.
            raise InputError(f"{self._name} holds no video frame that can be decoded (truncated or corrupt?)")
        frame, last_pts, own_ticks = pending
        frame.duration_ms = float(_last_duration_ticks(self._stream, last_pts, own_ticks) * time_base * 1000)
        yield frame

    def _check_frame_limits(self, index: int, decoded: av.VideoFrame, total_pixels: int) -> None:
        try:
            self._limits.check_frame_count(index + 1)
            self._limits.check_frame_size(decoded.width, decoded.height)
            self._limits.check_total_pixels(total_pixels)
        except LimitExceededError as exc:
            raise LimitExceededError(f"{self._name}: frame {index}: {exc}") from exc

    def durations_ms(self) -> Iterator[float]:
        """Per-frame durations from the packets' timestamps, without decoding (file inputs only)."""
        if not isinstance(self._src, Path):
            raise InputError(f"{self._name}: durations without decoding need a file input; decode frames() instead")
        self._check_file(self._src)
        with self._open_container() as container:
            stream = _video_stream(container)
            if stream is None:
                raise InputError(f"{self._name} has no video stream")
            ticks = _presentation_ticks(container.demux(stream), self._name)
            try:
                yield from _durations_from_ticks(ticks, stream, _default_duration_ticks(stream))
            except av.FFmpegError as error:
                raise InputError(f"{self._name}: cannot read packets: {_ffmpeg_reason(error)}") from None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = None
        self._stream = None
        self._packets = None
        self._decoder = None


def _last_duration_ticks(stream: av.video.stream.VideoStream, last_pts: int, own_ticks: int) -> int:
    """How long the last frame (which has no successor) shows, in stream ticks.

    An MP4/MOV track without frame reordering ends exactly where its last frame
    does, which is more trustworthy than the frame's duration field (FFmpeg's
    VP9 parser, for one, replaces it with 1/frame rate). Otherwise: the frame's
    own duration field, or one frame at the average rate.
    """
    is_mov = "mov" in stream.container.format.name.split(",")
    reorders = bool(stream.codec_context.has_b_frames)
    if is_mov and not reorders and stream.duration and stream.duration > 0:
        end = (stream.start_time or 0) + stream.duration
        if end > last_pts:
            return end - last_pts
    return own_ticks


def _with_duration(pending: tuple[Frame, int, int], next_pts: int, time_base: Fraction) -> Frame:
    frame, pts, own_ticks = pending
    gap = next_pts - pts
    # A timestamp that does not move forward (broken muxing) gets the frame's own duration instead.
    frame.duration_ms = float((gap if gap > 0 else own_ticks) * time_base * 1000)
    return frame


def _presentation_ticks(packets: Iterator[av.Packet], name: str) -> Iterator[tuple[int, int]]:
    """(pts, duration) of every video packet in presentation order, through a small reorder window."""
    window: list[tuple[int, int]] = []
    for packet in packets:
        if packet.size == 0 or packet.is_discard:
            continue
        pts = packet.pts if packet.pts is not None else packet.dts
        if pts is None:
            raise InputError(f"{name}: its packets carry no timestamps; decode frames() to get durations")
        heapq.heappush(window, (pts, packet.duration or 0))
        if len(window) > _REORDER_WINDOW:
            yield heapq.heappop(window)
    while window:
        yield heapq.heappop(window)


def _durations_from_ticks(
    ticks: Iterator[tuple[int, int]], stream: av.video.stream.VideoStream, default_ticks: int
) -> Iterator[float]:
    """Milliseconds between presentation timestamps, by the same rules as decoded frames."""
    time_base = stream.time_base
    previous: tuple[int, int] | None = None
    for pts, duration in ticks:
        own = duration if duration > 0 else default_ticks
        if previous is not None:
            gap = pts - previous[0]
            yield float((gap if gap > 0 else previous[1]) * time_base * 1000)
        previous = (pts, own)
    if previous is not None:
        yield float(_last_duration_ticks(stream, previous[0], previous[1]) * time_base * 1000)


# --------------------------------------------------------------------------- writing

_MUXERS = {"mp4": "mp4", "webm": "webm", "mkv": "matroska"}
_DEFAULT_CODECS = {"mp4": "libx264", "mkv": "libx264", "webm": "libvpx-vp9"}
_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")


@dataclass(frozen=True)
class _Encoder:
    containers: tuple[str, ...]
    default_crf: int
    max_crf: int


_ENCODERS = {
    "libx264": _Encoder(("mp4", "mkv"), default_crf=23, max_crf=51),
    "libx265": _Encoder(("mp4", "mkv"), default_crf=28, max_crf=51),
    "libvpx-vp9": _Encoder(("webm", "mkv", "mp4"), default_crf=31, max_crf=63),
    "libvpx": _Encoder(("webm", "mkv"), default_crf=10, max_crf=63),
}

# libvpx speed (cpu-used) for each x264-style preset name: faster presets, higher speed.
_VPX_SPEED = {name: str(speed) for name, speed in zip(_PRESETS, (8, 7, 6, 5, 4, 3, 2, 1, 0, 0), strict=True)}

# Audio codecs each container takes as they are (stream copy); anything else is re-encoded.
_COPYABLE_AUDIO = {
    "mp4": frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}),
    "webm": frozenset({"opus", "vorbis"}),
    "mkv": frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac", "vorbis", "pcm_s16le", "pcm_s24le"}),
}
_AUDIO_ENCODERS = {"mp4": "aac", "webm": "libopus", "mkv": "libopus"}

# Output colour: limited range, BT.709 matrix tagged in the bitstream and container so players agree.
# VP8 cannot signal a matrix and is always decoded as BT.601, so it is encoded that way.
_AVCOL_BT709, _AVCOL_BT470BG, _AVCOL_RANGE_MPEG = 1, 5, 1
_OUTPUT_MATRIX = {"libvpx": ("ITU601", _AVCOL_BT470BG)}
_DEFAULT_OUTPUT_MATRIX = ("ITU709", _AVCOL_BT709)


@dataclass(frozen=True)
class VideoOptions:
    """Encoder settings for MP4/WebM/MKV output.

    ``codec`` None picks libx264 for MP4/MKV and libvpx-vp9 for WebM; ``crf``
    None picks the codec's usual default; ``preset`` uses x264's names (mapped
    to libvpx's cpu-used speeds); ``audio`` passes the input's audio through.
    """

    codec: str | None = None
    crf: int | None = None
    preset: str = "medium"
    pix_fmt: str = "yuv420p"
    audio: bool = True

    def __post_init__(self) -> None:
        if self.codec is not None:
            _check_codec(self.codec)
        max_crf = _ENCODERS[self.codec].max_crf if self.codec is not None else 63
        if self.crf is not None and (isinstance(self.crf, bool) or not isinstance(self.crf, int)):
            raise ConfigError(f"--crf must be an integer; got {self.crf!r}")
        if self.crf is not None and not 0 <= self.crf <= max_crf:
            raise ConfigError(f"--crf must be between 0 and {max_crf}; got {self.crf}")
        if self.preset not in _PRESETS:
            raise ConfigError(f"--preset must be one of {', '.join(_PRESETS)}; got {self.preset!r}")
        try:
            av.VideoFormat(self.pix_fmt)
        except (ValueError, TypeError):
            raise ConfigError(f"--pix-fmt {self.pix_fmt!r} is not a pixel format FFmpeg knows") from None
        if not isinstance(self.audio, bool):
            raise ConfigError(f"audio must be True or False; got {self.audio!r}")


def _check_codec(codec: str) -> None:
    if codec not in _ENCODERS:
        raise ConfigError(f"--codec must be one of {', '.join(_ENCODERS)}; got {codec!r}")
    if codec not in av.codecs_available:
        raise ConfigError(f"--codec {codec} is not available in this FFmpeg build")


def _resolve_codec(container: str, options: VideoOptions) -> str:
    """The encoder for ``container``, checked against the container and the pixel format."""
    if container not in _MUXERS:
        raise ConfigError(f"video container must be one of {', '.join(_MUXERS)}; got {container!r}")
    codec = options.codec or _DEFAULT_CODECS[container]
    _check_codec(codec)
    if container not in _ENCODERS[codec].containers:
        raise ConfigError(f"--codec {codec} cannot be written into {container}; use {_DEFAULT_CODECS[container]}")
    formats = av.Codec(codec, "w").video_formats or []
    if options.pix_fmt not in {fmt.name for fmt in formats}:
        raise ConfigError(f"--pix-fmt {options.pix_fmt} is not supported by {codec}")
    return codec


def _encoder_options(codec: str, crf: int, preset: str) -> dict[str, str]:
    if codec in ("libvpx-vp9", "libvpx"):
        # Constant quality: crf with no bitrate target for VP9; VP8 needs a ceiling to honour crf at all.
        options = {"crf": str(crf), "deadline": "good", "cpu-used": _VPX_SPEED[preset]}
        if codec == "libvpx-vp9":
            options |= {"b": "0", "row-mt": "1"}
        else:
            options |= {"b": "20M"}
        return options
    options = {"crf": str(crf), "preset": preset}
    if codec == "libx265":
        options["x265-params"] = "log-level=error"  # x265 otherwise prints its own banner and statistics
    return options


def _even_padded(pixels: np.ndarray, even_width: bool, even_height: bool) -> np.ndarray:
    """Pad to even width/height by repeating the last column/row: 4:2:0 chroma needs pixel pairs."""
    pad_rows = pixels.shape[0] % 2 if even_height else 0
    pad_cols = pixels.shape[1] % 2 if even_width else 0
    if not pad_rows and not pad_cols:
        return pixels
    widths = [(0, pad_rows), (0, pad_cols)] + [(0, 0)] * (pixels.ndim - 2)
    return np.pad(pixels, widths, mode="edge")


def _subsampling(pix_fmt: str) -> tuple[bool, bool]:
    """Whether ``pix_fmt`` halves chroma horizontally / vertically (so sizes must be even)."""
    fmt = av.VideoFormat(pix_fmt)
    return fmt.chroma_width(2) < 2, fmt.chroma_height(2) < 2


def _encoder_rate(fps: float | None) -> Fraction:
    """The nominal rate rate control assumes; timestamps, not this, decide when frames show."""
    if fps and fps > 0:
        return Fraction(fps).limit_denominator(1001)
    return Fraction(25)


def _first_video_time(path: str) -> float:
    """When the first video frame is shown, in seconds (stream start times can be the file's, not the stream's)."""
    with av.open(path, mode="r", metadata_errors="replace") as container:
        stream = _video_stream(container)
        if stream is None:
            return 0.0
        first = next(_presentation_ticks(container.demux(stream), path), None)
        return float(first[0] * stream.time_base) if first is not None else 0.0


class _AudioPassThrough:
    """The input's audio, read packet by packet beside the video and muxed up to each video frame's time.

    Copied when the output container accepts the codec, re-encoded otherwise;
    times are shifted so the input's first video frame is time zero.
    """

    def __init__(self, source_path: str, stream_index: int, output: av.container.OutputContainer, kind: str) -> None:
        self._input = av.open(source_path, mode="r", metadata_errors="replace")
        try:
            self._in_stream = self._input.streams[stream_index]
            if self._in_stream.type != "audio":
                raise InputError(f"{source_path}: stream {stream_index} is not audio")
            self._offset = round(_first_video_time(source_path) / self._in_stream.time_base)
            context = self._in_stream.codec_context
            codec = context.name if context is not None else None
            self._copy = codec in _COPYABLE_AUDIO[kind]
            if not self._copy and context is None:
                raise InputError(f"{source_path}: its audio codec can be neither copied into {kind} nor decoded")
            self._output = output
            self._out_stream = self._add_output_stream(output, kind)
            self._packets: Iterator[av.Packet] = self._input.demux(self._in_stream)
            self._pending: av.Packet | None = None
        except BaseException:
            self._input.close()
            raise

    def _add_output_stream(self, output: av.container.OutputContainer, kind: str) -> av.stream.Stream:
        if self._copy:
            return output.add_stream_from_template(self._in_stream)
        encoder = _AUDIO_ENCODERS[kind]
        context = self._in_stream.codec_context
        rates = av.Codec(encoder, "w").audio_rates
        rate = context.sample_rate if not rates or context.sample_rate in rates else 48000
        stream = output.add_stream(encoder, rate=rate)
        stream.codec_context.layout = context.layout if context.channels <= 2 else "stereo"
        stream.codec_context.time_base = Fraction(1, rate)
        return stream

    def _starts_at(self, packet: av.Packet) -> float:
        ticks = packet.pts if packet.pts is not None else packet.dts
        return float(((ticks or 0) - self._offset) * self._in_stream.time_base)

    def mux_until(self, seconds: float | None) -> None:
        """Mux every audio packet that starts at or before ``seconds`` (None: all that remain)."""
        while True:
            packet = self._pending if self._pending is not None else next(self._packets, None)
            self._pending = None
            if packet is None:
                return
            if packet.size and seconds is not None and self._starts_at(packet) > seconds:
                self._pending = packet
                return
            self._mux(packet)

    def _mux(self, packet: av.Packet) -> None:
        if not packet.size:
            # Demuxing ended: drain the decoder (copy mode has nothing to drain).
            if not self._copy:
                self._encode_frames(self._in_stream.codec_context.decode(None))
            return
        if self._ends_before_video(packet):
            return
        if not self._copy:
            self._encode_frames(self._in_stream.codec_context.decode(packet))
            return
        if packet.pts is not None:
            packet.pts -= self._offset
        if packet.dts is not None:
            packet.dts -= self._offset
        packet.stream = self._out_stream
        self._output.mux(packet)

    def _ends_before_video(self, packet: av.Packet) -> bool:
        """Audio that is over before the first video frame, when the input's audio starts earlier than its video.

        With no such lead, nothing is dropped: packets dated below zero are then
        encoder priming the decoder needs.
        """
        if self._offset <= 0:
            return False
        start = self._starts_at(packet)
        if not packet.duration:  # unknown length: drop it only when it starts before the video
            return start < 0
        return start + float(packet.duration * self._in_stream.time_base) <= 0

    def _encode_frames(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            if frame.pts is not None:
                frame.pts -= self._offset
            for packet in self._out_stream.encode(frame):
                self._output.mux(packet)

    def finish(self) -> None:
        """Mux the rest of the audio and drain the encoder."""
        self.mux_until(None)
        if not self._copy:
            for packet in self._out_stream.encode(None):
                self._output.mux(packet)

    def close(self) -> None:
        self._input.close()


class VideoSink:
    """Encodes frames into an MP4, WebM or MKV file (written atomically) or a binary stream.

    Every frame's timestamp is the sum of the durations before it, so variable
    frame rates and GIF delays are kept exactly (to the millisecond).
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        container: str,
        options: VideoOptions = VideoOptions(),
        overwrite: bool = False,
    ) -> None:
        self._codec = _resolve_codec(container, options)
        self._kind = container
        self._options = options
        self._overwrite = overwrite
        self._target: Path | BinaryIO = Path(target) if isinstance(target, str | os.PathLike) else target
        if isinstance(self._target, Path):
            check_target(self._target, overwrite=overwrite)
        self._even_width, self._even_height = _subsampling(options.pix_fmt)
        self._alpha = any(component.is_alpha for component in av.VideoFormat(options.pix_fmt).components)
        self._time_base = Fraction(1, 1000) if container in ("webm", "mkv") else Fraction(1, 90000)
        self._atomic: AtomicFile | None = None
        self._output: av.container.OutputContainer | None = None
        self._video: av.video.stream.VideoStream | None = None
        self._audio: _AudioPassThrough | None = None
        self._default_duration_ms = 100.0
        self._written = 0
        self._elapsed_ms = 0.0
        self._last_pts = -1
        self._durations_by_pts: dict[int, int] = {}

    @property
    def _name(self) -> str:
        return str(self._target) if isinstance(self._target, Path) else "the output stream"

    # -- opening

    def open(self, info: StreamInfo) -> None:
        try:
            self._output = self._open_output(info)
            self._video = self._add_video_stream(self._output, info)
            self._audio = self._open_audio(info, self._output)
        except BaseException:
            self.abort()
            raise
        if info.fps:
            self._default_duration_ms = 1000.0 / info.fps

    def _open_output(self, info: StreamInfo) -> av.container.OutputContainer:
        muxer = _MUXERS[self._kind]
        if isinstance(self._target, Path):
            inputs = (Path(info.path),) if info.path else ()
            check_target(self._target, overwrite=self._overwrite, inputs=inputs)
            self._atomic = AtomicFile(self._target)
            # Moving the MP4 index to the front lets players start before the whole file has arrived.
            options = {"movflags": "+faststart"} if self._kind == "mp4" else {}
            destination: str | BinaryIO = str(self._atomic.temp_path)
        else:
            # A stream cannot be rewound to write the MP4 index at the end: fragment it instead.
            options = {"movflags": "frag_keyframe+empty_moov+default_base_moof"} if self._kind == "mp4" else {}
            destination = self._target
        try:
            return av.open(destination, mode="w", format=muxer, options=options)
        except av.FFmpegError as error:
            raise OutputError(f"cannot write {self._name}: {_ffmpeg_reason(error)}") from None

    def _add_video_stream(self, output: av.container.OutputContainer, info: StreamInfo) -> av.video.stream.VideoStream:
        crf = self._options.crf if self._options.crf is not None else _ENCODERS[self._codec].default_crf
        stream = output.add_stream(
            self._codec,
            rate=_encoder_rate(info.fps),
            options=_encoder_options(self._codec, crf, self._options.preset),
        )
        context = stream.codec_context
        context.width = info.width + (info.width % 2 if self._even_width else 0)
        context.height = info.height + (info.height % 2 if self._even_height else 0)
        context.pix_fmt = self._options.pix_fmt
        context.time_base = self._time_base
        stream.time_base = self._time_base
        context.colorspace = _OUTPUT_MATRIX.get(self._codec, _DEFAULT_OUTPUT_MATRIX)[1]
        context.color_primaries = _AVCOL_BT709
        context.color_trc = _AVCOL_BT709
        context.color_range = _AVCOL_RANGE_MPEG
        if self._kind == "mp4":
            # MP4 keeps only decode-order time deltas: with B-frames the last frame's display
            # duration is lost. Without them every frame's duration (GIF delays) survives.
            context.max_b_frames = 0
        if self._kind == "mp4" and self._codec == "libx265":
            context.codec_tag = "hvc1"  # the HEVC tag Apple players require
        return stream

    def _open_audio(self, info: StreamInfo, output: av.container.OutputContainer) -> _AudioPassThrough | None:
        if not self._options.audio or not info.audio:
            return None
        if not info.path:
            warnings.warn(
                "the input's audio is not passed through: it was read from a stream, and audio needs a file input",
                stacklevel=3,
            )
            return None
        try:
            return _AudioPassThrough(info.path, int(info.audio["index"]), output, self._kind)
        except (av.FFmpegError, ValueError) as error:
            raise OutputError(f"cannot pass the audio of {info.path} into {self._name}: {error}") from None

    # -- writing

    def write(self, frame: Frame) -> None:
        if self._output is None or self._video is None:
            raise OutputError(f"{self._name}: write() before open() or after finish()")
        picture = self._to_video_frame(frame)
        duration_ms = frame.duration_ms if frame.duration_ms is not None else self._default_duration_ms
        pts = max(round(self._elapsed_ms / 1000 / self._time_base), self._last_pts + 1)
        picture.pts = pts
        picture.time_base = self._time_base
        self._durations_by_pts[pts] = max(1, round(duration_ms / 1000 / self._time_base))
        try:
            if self._audio is not None:
                self._audio.mux_until(self._elapsed_ms / 1000)
            self._mux_video(self._video.encode(picture))
        except av.FFmpegError as error:
            raise OutputError(f"{self._name}: cannot encode frame {frame.index}: {_ffmpeg_reason(error)}") from None
        self._elapsed_ms += max(duration_ms, 0.0)
        self._last_pts = pts
        self._written += 1

    def _to_video_frame(self, frame: Frame) -> av.VideoFrame:
        pixels = frame.as_array()
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise OutputError(f"{self._name}: frame {frame.index} is not (H, W, 3) uint8 RGB: {pixels.shape}")
        if self._alpha:
            alpha = frame.alpha if frame.alpha is not None else np.full(pixels.shape[:2], 255, np.uint8)
            pixels = np.dstack([pixels, alpha])
        pixels = _even_padded(pixels, self._even_width, self._even_height)
        self._check_size(frame.index, pixels.shape[1], pixels.shape[0])
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgba" if self._alpha else "rgb24")
        matrix = _OUTPUT_MATRIX.get(self._codec, _DEFAULT_OUTPUT_MATRIX)[0]
        return picture.reformat(format=self._options.pix_fmt, dst_colorspace=matrix, dst_color_range="MPEG")

    def _check_size(self, index: int, width: int, height: int) -> None:
        assert self._video is not None
        context = self._video.codec_context
        if (width, height) == (context.width, context.height):
            return
        if self._written == 0 and not context.is_open:
            # Stages may rescale: the first frame, not the input's header, fixes the video size.
            context.width, context.height = width, height
            return
        raise OutputError(
            f"{self._name}: frame {index} is {width}x{height} but the video is {context.width}x{context.height}"
        )

    def _mux_video(self, packets: list[av.Packet]) -> None:
        assert self._output is not None
        for packet in packets:
            # Encoders drop frame durations; the last frame's (and every Matroska block's) duration needs them.
            if packet.pts is not None:
                packet.duration = self._durations_by_pts.pop(packet.pts, packet.duration)
            self._output.mux(packet)

    # -- finishing

    def finish(self) -> None:
        if self._output is None or self._video is None:
            raise OutputError(f"{self._name}: finish() before open() or after finish()")
        if self._written == 0:
            raise OutputError(f"{self._name}: no frames to write")
        try:
            self._mux_video(self._video.encode(None))
            if self._audio is not None:
                self._audio.finish()
            output, self._output = self._output, None
            output.close()
        except av.FFmpegError as error:
            raise OutputError(f"{self._name}: cannot finish the video: {_ffmpeg_reason(error)}") from None
        self._close_audio()
        if self._atomic is not None:
            self._atomic.commit()
            self._atomic = None
        elif not isinstance(self._target, Path):
            self._target.flush()

    def abort(self) -> None:
        self._close_audio()
        output, self._output = self._output, None
        if output is not None:
            with contextlib.suppress(Exception):
                output.close()
        if self._atomic is not None:
            self._atomic.discard()
            self._atomic = None

    def _close_audio(self) -> None:
        audio, self._audio = self._audio, None
        if audio is not None:
            audio.close()


__all__ = ["PIPE_HINT", "VideoOptions", "VideoSink", "VideoSource", "frame_to_rgb"]
