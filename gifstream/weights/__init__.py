"""Model weight files: the registry, the caches, verified resumable downloads.

Model code asks ``path_for(name, weights_dir=..., fetch=...)`` for a file; it
returns a cached file that has the registered size (and SHA-256 when asked),
downloads it when allowed, or raises WeightsMissingError naming the command
that fetches it. Nothing is downloaded on import or in a constructor.
"""

from __future__ import annotations

from .cache import (
    WeightStatus,
    cached_path,
    gifstream_cache_dir,
    sha256_file,
    torch_checkpoints_dir,
    verify,
    weights_status,
)
from .errors import WeightsFetchError, WeightsHashError, WeightsMissingError
from .fetch import fetch
from .registry import REGISTRY, WeightFile, get_entry, override_registry
from .resolve import path_for

__all__ = [
    "REGISTRY",
    "WeightFile",
    "WeightStatus",
    "WeightsFetchError",
    "WeightsHashError",
    "WeightsMissingError",
    "cached_path",
    "fetch",
    "get_entry",
    "gifstream_cache_dir",
    "override_registry",
    "path_for",
    "sha256_file",
    "torch_checkpoints_dir",
    "verify",
    "weights_status",
]
