"""``path_for``: the one call model code makes to get a checked weights file."""

from __future__ import annotations

from pathlib import Path

from .cache import PathLike, cached_path, fetch_command, file_problem
from .errors import WeightsHashError, WeightsMissingError
from .fetch import fetch as download
from .registry import WeightFile, resolve_entry


def path_for(
    name: str | WeightFile,
    *,
    weights_dir: PathLike | None = None,
    fetch: bool = False,
    progress: bool | None = None,
    verify: bool = False,
) -> Path:
    """The cached file of ``name``, checked by size (and by SHA-256 when ``verify``).

    A missing or mismatching file is downloaded when ``fetch`` is true;
    otherwise a missing file raises WeightsMissingError and a mismatching one
    WeightsHashError, each naming the command that fetches it. Unknown names
    raise ConfigError.
    """
    entry = resolve_entry(name)
    path = cached_path(entry, weights_dir)
    if not path.is_file():
        if fetch:
            return download(entry, weights_dir=weights_dir, progress=progress)
        raise WeightsMissingError(missing_message(entry, path, weights_dir))
    problem = file_problem(entry, path, check_hash=verify)
    if problem is None:
        return path
    if fetch:
        # The download replaces the bad file only once it has verified.
        return download(entry, weights_dir=weights_dir, progress=progress)
    raise WeightsHashError(
        f"weights {entry.name}: {problem}; replace it with `{fetch_command(entry.name, weights_dir)}`"
    )


def missing_message(entry: WeightFile, path: Path, weights_dir: PathLike | None = None) -> str:
    """One line: which file is missing, where it was looked for, where it comes from and how to get it."""
    return (
        f"model weights {entry.filename} ({entry.name}) are not cached at {path}; "
        f"run `{fetch_command(entry.name, weights_dir)}` (or pass --fetch-weights), "
        f"or download {entry.url} to that path"
    )
