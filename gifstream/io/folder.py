"""Folders of still images: a numbered image sequence in, PNG frames plus their durations out."""

from __future__ import annotations

import contextlib
import csv
import math
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image

from ..engine.errors import ConfigError, InputError, LimitExceededError, OutputError
from ..engine.frame import Frame, StreamInfo
from .atomic import check_target
from .limits import Limits
from .raw import frame_planes

_DEFAULT_LIMITS = Limits()
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
DURATIONS_FILE = "frames.csv"
_DURATION_COLUMNS = ("index", "duration_ms")
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key that orders embedded numbers by value: frame2 before frame10."""
    parts = re.split(r"(\d+)", name)
    # re.split with a group alternates text (even positions) and digits (odd), so
    # every position compares like with like.
    return tuple(int(part) if i % 2 else part.casefold() for i, part in enumerate(parts)), name


def list_images(folder: Path) -> list[Path]:
    """The image files of ``folder`` in natural order (hidden files skipped)."""
    images = [
        entry
        for entry in folder.iterdir()
        if entry.suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".") and entry.is_file()
    ]
    return sorted(images, key=lambda entry: natural_key(entry.name))


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or "transparency" in image.info


@dataclass(frozen=True, slots=True)
class _Probe:
    width: int
    height: int
    has_alpha: bool


def _probe(path: Path, limits: Limits) -> _Probe:
    """Size and alpha from the image's header, without decoding its pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            has_alpha = _has_alpha(image)
    except Image.DecompressionBombError as exc:
        raise LimitExceededError(f"{path}: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path} cannot be read as an image: {exc}") from exc
    try:
        limits.check_frame_size(width, height)
    except LimitExceededError as exc:
        raise LimitExceededError(f"{path}: {exc}") from exc
    return _Probe(width, height, has_alpha)


def _decode(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode))
    except Image.DecompressionBombError as exc:
        raise LimitExceededError(f"{path}: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path} cannot be decoded: {exc}") from exc


def read_durations(path: Path, count: int) -> list[float | None]:
    """Per-frame durations from a ``frames.csv`` (index,duration_ms); an empty cell means "not recorded"."""
    durations: dict[int, float | None] = {}
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            if reader.fieldnames is None or not set(_DURATION_COLUMNS) <= set(reader.fieldnames):
                raise InputError(f"{path} must start with the header line {','.join(_DURATION_COLUMNS)}")
            for row in reader:
                index, duration = _duration_row(row, path, reader.line_num)
                durations[index] = duration
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    if sorted(durations) != list(range(count)):
        raise InputError(
            f"{path} lists {len(durations)} frame durations but the folder holds {count} images;"
            " it must have one row per image, indexed from 0 in file-name order"
        )
    return [durations[index] for index in range(count)]


def _duration_row(row: dict[str, str | None], path: Path, line: int) -> tuple[int, float | None]:
    try:
        index = int(row["index"] or "")
        cell = (row["duration_ms"] or "").strip()
        duration = float(cell) if cell else None
    except ValueError:
        raise InputError(f"{path} line {line}: expected an integer index and a duration in ms; got {row}") from None
    if duration is not None and (not math.isfinite(duration) or duration < 0):
        raise InputError(f"{path} line {line}: duration {duration} ms is not a finite number ≥ 0")
    return index, duration


class FolderSource:
    """Reads the images of a folder as frames, in natural file-name order.

    All images must share one size. Images with alpha (RGBA, or a palette with
    transparency) give every frame an alpha plane. Durations come from a
    ``frames.csv`` beside the images when there is one (PngFolderSink writes
    it), else ``1000 / fps`` each.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float = 10.0, limits: Limits = _DEFAULT_LIMITS) -> None:
        if not math.isfinite(fps) or fps <= 0:
            raise ConfigError(f"--fps must be a positive number; got {fps}")
        self._folder = Path(path)
        self._fps = float(fps)
        self._limits = limits
        self._files: list[Path] = []
        self._durations: list[float | None] = []
        self._info: StreamInfo | None = None

    def open(self) -> StreamInfo:
        folder = self._folder
        if not folder.exists():
            raise InputError(f"input folder {folder} does not exist")
        if not folder.is_dir():
            raise InputError(f"input {folder} is not a folder")
        files = list_images(folder)
        if not files:
            raise InputError(f"folder {folder} holds no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)})")
        try:
            self._limits.check_frame_count(len(files))
            self._limits.check_input_bytes(sum(file.stat().st_size for file in files))
        except LimitExceededError as exc:
            raise LimitExceededError(f"folder {folder}: {exc}") from exc
        first = _probe(files[0], self._limits)
        has_alpha = first.has_alpha
        for file in files[1:]:
            probe = _probe(file, self._limits)
            if (probe.width, probe.height) != (first.width, first.height):
                raise InputError(
                    f"{file} is {probe.width}x{probe.height} but {files[0].name} is {first.width}x{first.height};"
                    " all images of a folder must have the same size"
                )
            has_alpha = has_alpha or probe.has_alpha
        durations_file = folder / DURATIONS_FILE
        self._durations = read_durations(durations_file, len(files)) if durations_file.is_file() else []
        self._files = files
        self._info = StreamInfo(
            width=first.width,
            height=first.height,
            format="folder",
            frame_count=len(files),
            fps=None if self._durations else self._fps,
            has_alpha=has_alpha,
            path=str(folder),
        )
        return self._info

    def frames(self) -> Iterator[Frame]:
        info = self._info
        if info is None:
            raise InputError(f"{self._folder}: FolderSource.open() must be called before reading frames")
        elapsed_ms = 0.0
        for index, (path, duration) in enumerate(zip(self._files, self.durations_ms(), strict=True)):
            try:
                self._limits.check_total_pixels((index + 1) * info.width * info.height)
            except LimitExceededError as exc:
                raise LimitExceededError(f"{path}: {exc}") from exc
            canvas = _decode(path, "RGBA" if info.has_alpha else "RGB")
            if canvas.shape[:2] != (info.height, info.width):
                raise InputError(
                    f"{path} changed size while it was being read (now {canvas.shape[1]}x{canvas.shape[0]})"
                )
            # Fresh arrays: Pillow's buffer is read-only, and stages may work in place.
            pixels = np.array(canvas[..., :3], order="C")
            alpha = np.array(canvas[..., 3], order="C") if info.has_alpha else None
            yield Frame(index, pixels, duration_ms=duration, pts=elapsed_ms / 1000, alpha=alpha)
            elapsed_ms += duration

    def durations_ms(self) -> Iterator[float]:
        """Each frame's duration (from frames.csv, else 1000 / fps), without decoding any image."""
        default_ms = 1000.0 / self._fps
        recorded = self._durations or [None] * len(self._files)
        for duration in recorded:
            yield default_ms if duration is None else duration

    def close(self) -> None:
        self._info = None


def _make_hidden_sibling(target: Path, tag: str) -> Path:
    """A new empty folder beside ``target``, with the default permissions (unlike ``mkdtemp``'s 0700)."""
    while True:
        candidate = target.parent / f".{target.name}.{secrets.token_hex(4)}.{tag}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, replacing what is there only once the new folder is complete."""
    if not target.exists():
        os.replace(staging, target)
        return
    # A folder cannot be renamed over a non-empty folder: move the old output aside first.
    aside = _make_hidden_sibling(target, "old")
    os.replace(target, aside / target.name)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(aside / target.name, target)  # put the old output back
        aside.rmdir()
        raise
    _remove(aside)


class PngFolderSink:
    """Writes frame_000000.png, frame_000001.png, ... and ``frames.csv`` (index,duration_ms) into a folder.

    Everything goes into a hidden folder beside the target, renamed into place
    by :meth:`finish`; an existing target (with ``overwrite``) is replaced
    only then. :meth:`abort` removes the hidden folder.
    """

    def __init__(self, target: str | os.PathLike[str], overwrite: bool = False, *, compress_level: int = 6) -> None:
        if not 0 <= compress_level <= 9:
            raise ConfigError(f"PNG compress_level must be from 0 to 9; got {compress_level}")
        self._target = Path(target)
        self._overwrite = overwrite
        self._compress_level = compress_level
        self._staging: Path | None = None
        self._csv_file: TextIO | None = None
        self._count = 0
        self._size: tuple[int, int] | None = None

    def open(self, info: StreamInfo) -> None:
        target = self._target
        check_target(target, overwrite=self._overwrite, inputs=(Path(info.path),) if info.path else ())
        if target.exists() and not target.is_dir():
            raise OutputError(f"output {target} exists and is not a folder; PNG frames are written to a folder")
        try:
            self._staging = _make_hidden_sibling(target, "part")
            self._csv_file = (self._staging / DURATIONS_FILE).open("w", newline="", encoding="utf-8")
        except OSError as exc:
            self.abort()
            raise OutputError(f"cannot create a temporary folder beside {target}: {exc.strerror or exc}") from exc
        csv.writer(self._csv_file).writerow(_DURATION_COLUMNS)
        self._count = 0
        self._size = None

    def write(self, frame: Frame) -> None:
        staging, csv_file = self._staging, self._csv_file
        if staging is None or csv_file is None:
            raise OutputError(f"{self._target}: PngFolderSink.open() must be called before writing")
        rgb, alpha = frame_planes(frame, "PNG output")
        self._check_size(frame.index, rgb)
        image = Image.fromarray(rgb if alpha is None else np.dstack((rgb, alpha)))
        # Numbered by position, so names stay contiguous whatever the frames' own indices.
        path = staging / f"frame_{self._count:06d}.png"
        duration = "" if frame.duration_ms is None else repr(float(frame.duration_ms))
        try:
            image.save(path, format="PNG", compress_level=self._compress_level)
            csv.writer(csv_file).writerow((self._count, duration))
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        self._count += 1

    def _check_size(self, index: int, rgb: np.ndarray) -> None:
        """Every frame of a folder has the first frame's size: FolderSource reads back no other folder."""
        height, width = rgb.shape[:2]
        if self._size is None:
            self._size = (width, height)
        elif (width, height) != self._size:
            first_width, first_height = self._size
            raise OutputError(
                f"frame {index} is {width}x{height} but {self._target} started at {first_width}x{first_height};"
                " the frames of a folder all share one size"
            )

    def finish(self) -> None:
        staging, csv_file = self._staging, self._csv_file
        if staging is None or csv_file is None:
            return  # already finished or aborted
        target = self._target
        try:
            csv_file.close()
        except OSError as exc:
            raise OutputError(f"cannot write {staging / DURATIONS_FILE}: {exc.strerror or exc}") from exc
        if target.exists() and not self._overwrite:
            raise OutputError(f"output {target} appeared while it was being written; it was left as it is")
        try:
            _move_into_place(staging, target)
        except OSError as exc:
            raise OutputError(f"cannot move the PNG frames into {target}: {exc.strerror or exc}") from exc
        self._staging, self._csv_file = None, None

    def abort(self) -> None:
        staging, csv_file = self._staging, self._csv_file
        self._staging, self._csv_file = None, None
        if csv_file is not None:
            with contextlib.suppress(OSError):
                csv_file.close()
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


__all__ = [
    "DURATIONS_FILE",
    "IMAGE_SUFFIXES",
    "FolderSource",
    "PngFolderSink",
    "list_images",
    "natural_key",
    "read_durations",
]
