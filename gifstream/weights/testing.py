"""Fake weight files for tests of model code.

Real checkpoints are hundreds of MB and cannot be downloaded in tests, so a
test saves a small (e.g. randomly initialised) state dict under a registry
name and model code finds it through the very same ``path_for`` call, with
the size and SHA-256 checks it applies to real files::

    with override_registry():
        install_fake("raft_small", model.state_dict(), tmp_path)
        stage = FlowStage(FlowConfig(backend="raft_small", weights_dir=str(tmp_path)))

The fake's own SHA-256 and size replace the registered ones until the
``override_registry`` block ends, when the registry is restored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..engine.errors import ConfigError
from .cache import PathLike, cached_path
from .registry import REGISTRY, get_entry, inside_override, override_registry

__all__ = ["install_fake", "override_registry"]


def install_fake(name: str, state_dict_or_bytes: Mapping[str, Any] | bytes, weights_dir: PathLike | None) -> Path:
    """Save a fake file for ``name`` where ``path_for`` looks, and register its SHA-256 and size.

    A mapping is saved with ``torch.save`` (as the real checkpoints are);
    bytes are written as they are. Must run inside ``with override_registry():``
    so the registry change is undone at the end of the block.
    """
    if not inside_override():
        raise ConfigError(
            f"install_fake({name!r}) must run inside `with override_registry():`, which later removes the fake entry"
        )
    payload = state_dict_or_bytes if isinstance(state_dict_or_bytes, bytes) else _torch_bytes(state_dict_or_bytes)
    entry = dataclasses.replace(get_entry(name), sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    path = cached_path(entry, weights_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    REGISTRY[name] = entry
    return path


def _torch_bytes(state_dict: Mapping[str, Any]) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(dict(state_dict), buffer)
    return buffer.getvalue()
