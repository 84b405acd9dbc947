"""Raw rgb24 frames on a byte stream (``ffmpeg -f rawvideo -pix_fmt rgb24``), in and out."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from ..engine.errors import ConfigError, InputError, LimitExceededError, OutputError
from ..engine.frame import Frame, StreamInfo
from .limits import Limits

_DEFAULT_LIMITS = Limits()


def read_exactly(stream: BinaryIO, size: int) -> bytearray:
    """Up to ``size`` bytes, fewer only at the end of the stream.

    A pipe returns whatever the writer has sent so far, so one ``read`` is
    not enough; the loop stops only at end of stream (an empty read).
    """
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    readinto = getattr(stream, "readinto", None)
    while got < size:
        if readinto is not None:
            count = readinto(view[got:])
        else:
            chunk = stream.read(size - got)
            count = len(chunk)
            view[got : got + count] = chunk
        if not count:
            break
        got += count
    view.release()
    del buffer[got:]
    return buffer


def frame_planes(frame: Frame, output: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A frame's (H, W, 3) uint8 RGB and (H, W) alpha (or None), checked before ``output`` encodes them."""
    pixels = frame.as_array()
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise OutputError(f"frame {frame.index} is {pixels.dtype} {pixels.shape}; {output} needs (H, W, 3) uint8 RGB")
    alpha = frame.alpha
    if alpha is not None and (alpha.dtype != np.uint8 or alpha.shape != pixels.shape[:2]):
        raise OutputError(
            f"frame {frame.index} has alpha {alpha.dtype} {alpha.shape} for pixels {pixels.shape[:2]};"
            f" {output} needs (H, W) uint8 alpha"
        )
    return pixels, alpha


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class RawSource:
    """Reads consecutive ``width*height*3``-byte rgb24 frames from a stream until it ends.

    The stream belongs to the caller and stays open, unless ``close_stream``
    is set (for a file this source was handed to read on its own).
    """

    def __init__(
        self,
        stream: BinaryIO,
        width: int,
        height: int,
        fps: float = 10.0,
        limits: Limits = _DEFAULT_LIMITS,
        *,
        close_stream: bool = False,
    ) -> None:
        if not (_is_positive_int(width) and _is_positive_int(height)):
            raise ConfigError(f"--size must be two positive integers WIDTHxHEIGHT; got {width!r}x{height!r}")
        if not math.isfinite(fps) or fps <= 0:
            raise ConfigError(f"--fps must be a positive number; got {fps}")
        self._stream = stream
        self._width = width
        self._height = height
        self._fps = float(fps)
        self._limits = limits
        self._close_stream = close_stream

    @property
    def frame_bytes(self) -> int:
        return self._width * self._height * 3

    def open(self) -> StreamInfo:
        try:
            self._limits.check_frame_size(self._width, self._height)
        except LimitExceededError as exc:
            raise LimitExceededError(f"raw rgb24 stream: {exc}") from exc
        return StreamInfo(width=self._width, height=self._height, format="rawvideo", fps=self._fps)

    def frames(self) -> Iterator[Frame]:
        duration = 1000.0 / self._fps
        size = self.frame_bytes
        for index in itertools.count():
            # Read first: a stream that ends right at a limit is within it. Reading one frame
            # before checking costs no more than the frame size checked by open().
            data = read_exactly(self._stream, size)
            if not data:
                if index == 0:
                    raise InputError(
                        f"raw rgb24 stream is empty: no bytes for frame 0"
                        f" (expected {size} bytes per {self._width}x{self._height} frame)"
                    )
                return
            try:
                self._limits.check_frame_count(index + 1)
                self._limits.check_total_pixels((index + 1) * self._width * self._height)
                self._limits.check_input_bytes(index * size + len(data))
            except LimitExceededError as exc:
                raise LimitExceededError(f"raw rgb24 stream: frame {index}: {exc}") from exc
            if len(data) < size:
                raise InputError(
                    f"raw rgb24 stream ended mid-frame: got {len(data)} of {size} bytes for frame {index}"
                    " (is --size right?)"
                )
            pixels = np.frombuffer(data, dtype=np.uint8).reshape(self._height, self._width, 3)
            yield Frame(index, pixels, duration_ms=duration, pts=index / self._fps)

    def close(self) -> None:
        if self._close_stream:
            self._stream.close()


class RawSink:
    """Writes each frame's rgb24 bytes (alpha dropped) to a stream the caller owns."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._size: tuple[int, int] | None = None

    def open(self, info: StreamInfo) -> None:
        self._size = None

    def write(self, frame: Frame) -> None:
        pixels, _ = frame_planes(frame, "rgb24 output")
        height, width = pixels.shape[:2]
        if self._size is None:
            self._size = (width, height)
        elif (width, height) != self._size:
            # A raw stream has no header: its reader relies on one size throughout.
            raise OutputError(
                f"frame {frame.index} is {width}x{height} but the raw stream started at"
                f" {self._size[0]}x{self._size[1]}; rgb24 frames all share one size"
            )
        try:
            self._stream.write(pixels.data)  # the array's own buffer: no copy
        except OSError as exc:
            raise OutputError(f"cannot write the raw rgb24 stream: {exc.strerror or exc}") from exc

    def finish(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise OutputError(f"cannot write the raw rgb24 stream: {exc.strerror or exc}") from exc

    def abort(self) -> None:
        """Bytes already sent cannot be taken back; the stream is the caller's and stays open."""


__all__ = ["RawSink", "RawSource", "frame_planes", "read_exactly"]
