"""The error family every part of gifstream raises.

Each error also subclasses the builtin a caller would naturally catch
(``ValueError`` for bad input, ``RuntimeError`` for a failing stage), the way
PyAV's ``InvalidDataError(FFmpegError, ValueError)`` does.
"""

from __future__ import annotations


class GifstreamError(Exception):
    """Base of every error gifstream raises on purpose."""


class ConfigError(GifstreamError, ValueError):
    """An option, flag or config file is invalid."""


class InputError(GifstreamError, ValueError):
    """The input cannot be read: missing, unsupported, corrupt or over a limit."""


class OutputError(GifstreamError, OSError):
    """The output cannot be written (exists, same as input, unwritable...)."""


class LimitExceededError(InputError):
    """The input is over a configured limit (pixels, frames, bytes)."""


class StageError(GifstreamError, RuntimeError):
    """A pipeline stage failed; names the stage and the frame it was working on."""

    def __init__(self, stage: str, frame_index: int | None, cause: BaseException) -> None:
        where = f"frame {frame_index}" if frame_index is not None else "set-up/close"
        super().__init__(f"stage {stage!r} failed at {where}: {type(cause).__name__}: {cause}")
        self.stage = stage
        self.frame_index = frame_index
        self.__cause__ = cause
