"""The model weight files gifstream knows: where each comes from and how to recognise it.

Each entry pins a file by its SHA-256 and size, so a cached file is checked
before any model loads it and a download is checked before it is kept.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from ..engine.errors import ConfigError

Location = Literal["gifstream", "torch"]
LOCATIONS: tuple[Location, ...] = ("gifstream", "torch")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class WeightFile:
    """One downloadable weights file.

    ``location`` says which cache holds it: "gifstream" for gifstream's own
    cache, "torch" for ``$TORCH_HOME/hub/checkpoints``, where torchvision (and
    lpips through it) look for their checkpoints under the same file name.
    """

    name: str
    filename: str
    url: str
    sha256: str
    size: int
    description: str
    location: Location = "gifstream"

    def __post_init__(self) -> None:
        if self.location not in LOCATIONS:
            raise ConfigError(f"weights {self.name!r}: location must be one of {LOCATIONS}, got {self.location!r}")
        if not _SHA256.fullmatch(self.sha256):
            raise ConfigError(f"weights {self.name!r}: sha256 must be 64 lower-case hex digits, got {self.sha256!r}")
        if self.size < 0:
            raise ConfigError(f"weights {self.name!r}: size must be >= 0, got {self.size}")
        if not self.filename or "/" in self.filename or "\\" in self.filename:
            raise ConfigError(f"weights {self.name!r}: filename must be a plain file name, got {self.filename!r}")


def _entries(*files: WeightFile) -> dict[str, WeightFile]:
    return {entry.name: entry for entry in files}


REGISTRY: dict[str, WeightFile] = _entries(
    WeightFile(
        "gfpgan_v1.3",
        "GFPGANv1.3.pth",
        "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.3.pth",
        "c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
        348632874,
        "GFPGAN v1.3 face restorer (more natural results)",
    ),
    WeightFile(
        "gfpgan_v1.4",
        "GFPGANv1.4.pth",
        "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
        "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
        348632874,
        "GFPGAN v1.4 face restorer (more detail, better identity)",
    ),
    WeightFile(
        "realesrgan_x2plus",
        "RealESRGAN_x2plus.pth",
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth",
        "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
        67061725,
        "Real-ESRGAN x2plus background upsampler (RRDBNet, 2x)",
    ),
    WeightFile(
        "retinaface_resnet50",
        "detection_Resnet50_Final.pth",
        "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
        "6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
        109497761,
        "RetinaFace ResNet-50 face detector (facexlib)",
    ),
    WeightFile(
        "parsenet",
        "parsing_parsenet.pth",
        "https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth",
        "3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2",
        85331193,
        "ParseNet face parsing, masks restored faces when pasting them back (facexlib)",
    ),
    WeightFile(
        "raft_large",
        "raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        "https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        "ff5fadd56d26b40647388883af1547351ea17868b765c05b27231e72dd16a322",
        21106607,
        "RAFT large optical flow (torchvision Raft_Large_Weights.C_T_SKHT_V2)",
        "torch",
    ),
    WeightFile(
        "raft_small",
        "raft_small_C_T_V2-01064c6d.pth",
        "https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth",
        "01064c6dba73b0fc9fc8edf772248560a00a3acfd62ac6677e9eeebad9680e27",
        4006189,
        "RAFT small optical flow (torchvision Raft_Small_Weights.C_T_V2)",
        "torch",
    ),
    WeightFile(
        "alexnet",
        "alexnet-owt-7be5be79.pth",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        244408911,
        "AlexNet ImageNet backbone of the LPIPS metric (torchvision AlexNet_Weights.IMAGENET1K_V1)",
        "torch",
    ),
)

# Snapshots of REGISTRY taken by the override_registry blocks now open, innermost last.
_open_overrides: list[dict[str, WeightFile]] = []


def get_entry(name: str) -> WeightFile:
    """The registry entry called ``name``; ConfigError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ConfigError(f"unknown model weights {name!r}; known names: {known}") from None


def resolve_entry(name_or_entry: str | WeightFile) -> WeightFile:
    return name_or_entry if isinstance(name_or_entry, WeightFile) else get_entry(name_or_entry)


@contextlib.contextmanager
def override_registry(entries: Mapping[str, WeightFile] | None = None) -> Iterator[dict[str, WeightFile]]:
    """Replace or add registry entries until the block ends, then restore the registry as it was.

    Meant for tests: REGISTRY is changed in place, so every thread and every
    module that imported it sees the override, and model code goes through
    the same ``path_for`` checks as with the real files.
    """
    for key, entry in (entries or {}).items():
        if key != entry.name:
            raise ConfigError(f"override_registry: key {key!r} differs from the entry's name {entry.name!r}")
    snapshot = dict(REGISTRY)
    _open_overrides.append(snapshot)
    REGISTRY.update(entries or {})
    try:
        yield REGISTRY
    finally:
        _open_overrides.pop()
        REGISTRY.clear()
        REGISTRY.update(snapshot)


def inside_override() -> bool:
    """Whether an override_registry block is open (its end will undo registry changes)."""
    return bool(_open_overrides)
