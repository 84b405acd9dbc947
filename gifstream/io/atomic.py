"""Output files that appear only when complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from ..engine.errors import OutputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def check_target(target: Path, *, overwrite: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse to clobber an existing file, or to write over an input."""
    if any(_same_file(source, target) for source in inputs):
        raise OutputError(f"output {target} is the input file; choose another output path")
    if target.exists() and not overwrite:
        raise OutputError(f"output {target} exists; pass --overwrite to replace it")
    if not target.parent.exists():
        raise OutputError(f"output folder {target.parent} does not exist")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


class AtomicFile:
    """A temporary file beside ``target``, renamed over it by :meth:`commit`.

    Until ``commit`` nothing exists at ``target``; :meth:`discard` (also run by
    a failed ``with`` block) removes the temporary, so a failed or interrupted
    run leaves neither a partial output nor a stray temporary behind.
    """

    def __init__(self, target: Path | str) -> None:
        self.target = Path(target)
        fd, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".part", dir=self.target.parent or ".")
        # mkstemp creates the file 0600; a finished output gets the usual umask-based mode.
        os.chmod(fd, 0o666 & ~_UMASK)
        self.temp_path = Path(name)
        self.file: BinaryIO = os.fdopen(fd, "w+b")

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.temp_path, self.target)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp_path.unlink()

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.discard()
