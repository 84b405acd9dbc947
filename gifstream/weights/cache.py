"""Where weight files live, and whether the cached ones are the right files.

Two caches: gifstream's own (``$GIFSTREAM_HOME/weights``, else the platform's
user cache folder) and torch's checkpoint folder, where torchvision and
lpips look for their files, so one download serves both libraries.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from ..engine.errors import InputError
from .registry import REGISTRY, WeightFile, resolve_entry

PathLike = str | os.PathLike[str]


def gifstream_cache_dir(weights_dir: PathLike | None = None) -> Path:
    """``weights_dir`` if given, else ``$GIFSTREAM_HOME/weights``, else the user cache dir of gifstream + /weights."""
    if weights_dir is not None:
        return Path(weights_dir).expanduser()
    home = os.environ.get("GIFSTREAM_HOME")
    if home:
        return Path(home).expanduser() / "weights"
    # appauthor=False: on Windows the folder is ...\gifstream\Cache, not ...\gifstream\gifstream\Cache.
    return platformdirs.user_cache_path("gifstream", appauthor=False) / "weights"


def torch_hub_dir() -> Path:
    """torch.hub.get_dir(): ``$TORCH_HOME/hub``, else ``$XDG_CACHE_HOME/torch/hub``, else ``~/.cache/torch/hub``."""
    hub = sys.modules.get("torch.hub")
    if hub is not None:
        # torch is already loaded: ask it, so a torch.hub.set_dir() made by the caller counts too.
        return Path(hub.get_dir())
    # The same expression as torch.hub._get_torch_home, so that importing torch is not needed here.
    default = os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", default))) / "hub"


def torch_checkpoints_dir(weights_dir: PathLike | None = None) -> Path:
    """``weights_dir`` if given, else the folder torchvision downloads checkpoints to (``<hub dir>/checkpoints``)."""
    if weights_dir is not None:
        return Path(weights_dir).expanduser()
    return torch_hub_dir() / "checkpoints"


def cached_path(name: str | WeightFile, weights_dir: PathLike | None = None) -> Path:
    """Where the file of ``name`` is, or would be once fetched."""
    entry = resolve_entry(name)
    folder = torch_checkpoints_dir(weights_dir) if entry.location == "torch" else gifstream_cache_dir(weights_dir)
    return folder / entry.filename


def part_path(path: Path) -> Path:
    """The partial download of ``path``, kept between attempts so a download can resume."""
    return path.with_name(path.name + ".part")


def fetch_command(name: str, weights_dir: PathLike | None = None) -> str:
    """The command line that downloads ``name`` into the same folder ``weights_dir`` selects."""
    command = f"gifstream models fetch {shlex.quote(name)}"
    if weights_dir is not None:
        command += f" --weights-dir {shlex.quote(str(weights_dir))}"
    return command


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (weight files are hundreds of MB)."""
    try:
        with path.open("rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as err:
        raise InputError(f"cannot read weights file {path}: {err.strerror or err}") from err


def file_problem(entry: WeightFile, path: Path, *, check_hash: bool) -> str | None:
    """Why the file at ``path`` is not ``entry``'s file (size, then SHA-256 when asked), or None when it is."""
    size = path.stat().st_size
    if size != entry.size:
        return f"{path} has {size} bytes, {entry.filename} has {entry.size}"
    if check_hash:
        digest = sha256_file(path)
        if digest != entry.sha256:
            return f"{path} has SHA-256 {digest}, {entry.filename} has {entry.sha256}"
    return None


@dataclass(frozen=True)
class WeightStatus:
    """What the cache holds for one registry entry."""

    entry: WeightFile
    path: Path
    size: int | None  # bytes of the cached file; None when absent
    partial_bytes: int  # bytes of an interrupted download waiting in <file>.part
    hash_ok: bool | None  # None when not hashed (or absent)

    @property
    def present(self) -> bool:
        return self.size is not None

    @property
    def ok(self) -> bool:
        """Present with the right size, and the right SHA-256 when it was hashed."""
        return self.size == self.entry.size and self.hash_ok is not False

    @property
    def state(self) -> str:
        if self.size is None:
            if self.partial_bytes and self.entry.size:
                return f"partial {100 * self.partial_bytes // self.entry.size}%"
            return "no"
        if self.size != self.entry.size:
            return "wrong size"
        return {None: "yes", True: "verified", False: "CORRUPT"}[self.hash_ok]


def status_of(name: str | WeightFile, weights_dir: PathLike | None = None, *, check_hash: bool = False) -> WeightStatus:
    entry = resolve_entry(name)
    path = cached_path(entry, weights_dir)
    size = path.stat().st_size if path.is_file() else None
    part = part_path(path)
    partial = part.stat().st_size if part.is_file() else 0
    hash_ok = None
    if check_hash and size == entry.size:
        hash_ok = sha256_file(path) == entry.sha256
    return WeightStatus(entry, path, size, partial, hash_ok)


def weights_status(
    weights_dir: PathLike | None = None, *, names: Iterable[str] | None = None, check_hash: bool = False
) -> list[WeightStatus]:
    """The cache status of every registry entry (or of ``names``), hashing cached files when ``check_hash``."""
    return [status_of(name, weights_dir, check_hash=check_hash) for name in (names or list(REGISTRY))]


def verify(name: str | WeightFile, weights_dir: PathLike | None = None) -> bool:
    """True when the cached file of ``name`` exists with the registered size and SHA-256."""
    status = status_of(name, weights_dir, check_hash=True)
    return status.present and status.ok
