"""Sources and sinks: the only part of gifstream that knows file formats.

``open_source`` and ``open_sink`` pick the right decoder/encoder from the
input's first bytes and the output's extension (or ``--format``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import BinaryIO

from ..engine import ConfigError, InputError, Sink, Source
from .limits import Limits

OUTPUT_FORMATS = ("gif", "mp4", "webm", "mkv", "png", "raw")
GIF_MAGIC = (b"GIF87a", b"GIF89a")  # a GIF's first six bytes
_EXTENSIONS = {".gif": "gif", ".mp4": "mp4", ".m4v": "mp4", ".mov": "mp4", ".webm": "webm", ".mkv": "mkv"}

PathLike = str | os.PathLike[str]


def is_gif_file(path: PathLike) -> bool:
    """Whether the file at ``path`` starts as a GIF does, whatever its name."""
    with Path(path).open("rb") as handle:
        return handle.read(6) in GIF_MAGIC


def open_source(
    spec: PathLike | BinaryIO,
    *,
    size: tuple[int, int] | None = None,
    fps: float = 10.0,
    limits: Limits | None = None,
) -> Source:
    """A decoder for ``spec``: a file, a folder of images, ``"-"`` (stdin) or a binary stream.

    ``size`` means the stream is raw rgb24 frames of that (width, height).
    """
    limits = limits or Limits()
    if spec == "-":
        spec = sys.stdin.buffer
    if not isinstance(spec, str | os.PathLike):
        return _stream_source(spec, size, fps, limits)
    path = Path(spec)
    if path.is_dir():
        from .folder import FolderSource

        return FolderSource(path, fps=fps, limits=limits)
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if size is not None:
        from .raw import RawSource

        return RawSource(path.open("rb"), size[0], size[1], fps=fps, limits=limits, close_stream=True)
    with path.open("rb") as handle:
        head = handle.read(6)
    if not head:
        raise InputError(f"{path} is empty (0 bytes)")
    if head in GIF_MAGIC:
        from .gif import GifSource

        return GifSource(path, limits=limits)
    if path.suffix.lower() == ".gif":
        raise InputError(f"{path} is not a GIF (it starts with {head!r})")
    from .video import VideoSource

    return VideoSource(path, limits=limits)


def _stream_source(stream: BinaryIO, size: tuple[int, int] | None, fps: float, limits: Limits) -> Source:
    if size is not None:
        from .raw import RawSource

        return RawSource(stream, size[0], size[1], fps=fps, limits=limits)
    head = _peek(stream, 6)
    if head in GIF_MAGIC:
        from .gif import GifSource

        return GifSource(stream, limits=limits)
    if not head:
        raise InputError("standard input is empty")
    from .video import VideoSource

    return VideoSource(stream, limits=limits)


def _peek(stream: BinaryIO, n: int) -> bytes:
    """The first ``n`` bytes of a stream without consuming them (pipes included)."""
    peek = getattr(stream, "peek", None)
    if peek is not None:
        return bytes(peek(n)[:n])
    if stream.seekable():
        position = stream.tell()
        head = stream.read(n)
        stream.seek(position)
        return head
    raise InputError("cannot sniff the format of a non-buffered stream; pass a file or a buffered stream")


def output_format(target: PathLike | BinaryIO, requested: str | None) -> str:
    """The output format: ``requested`` if given, else from the target's extension."""
    if requested is not None:
        if requested not in OUTPUT_FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(OUTPUT_FORMATS)}; got {requested!r}")
        return requested
    if not isinstance(target, str | os.PathLike) or target == "-":
        return "gif"
    path = Path(target)
    if path.is_dir() or str(target).endswith(("/", os.sep)):
        return "png"
    try:
        return _EXTENSIONS[path.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(_EXTENSIONS))
        raise ConfigError(
            f"cannot tell the output format of {path.name!r} from its extension ({known}, or a folder/ for PNG frames);"
            " pass --format"
        ) from None


def open_sink(
    target: PathLike | BinaryIO,
    *,
    format: str | None = None,
    overwrite: bool = False,
    gif_options: object | None = None,
    video_options: object | None = None,
) -> Sink:
    """An encoder writing to ``target``: a path (written atomically), ``"-"`` (stdout) or a binary stream."""
    kind = output_format(target, format)
    if target == "-":
        target = sys.stdout.buffer
    if kind == "gif":
        from .gif import GifOptions, GifSink

        return GifSink(target, gif_options or GifOptions(), overwrite=overwrite)  # type: ignore[arg-type]
    if kind == "raw":
        if isinstance(target, str | os.PathLike):
            raise ConfigError("--format raw writes to standard output only (-o -)")
        from .raw import RawSink

        return RawSink(target)
    if kind == "png":
        if not isinstance(target, str | os.PathLike):
            raise ConfigError("PNG frames are written to a folder, not a stream")
        from .folder import PngFolderSink

        return PngFolderSink(target, overwrite=overwrite)
    from .video import VideoOptions, VideoSink

    return VideoSink(target, kind, video_options or VideoOptions(), overwrite=overwrite)  # type: ignore[arg-type]


__all__ = ["GIF_MAGIC", "OUTPUT_FORMATS", "Limits", "is_gif_file", "open_sink", "open_source", "output_format"]
