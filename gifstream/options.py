"""Every option of a run in one frozen dataclass, shared by the CLI, TOML presets and the Python API."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .engine import ConfigError

RESTORERS = ("auto", "gfpgan", "classic", "none")
FLOWS = ("none", "dis", "dis_fast", "dis_ultrafast", "raft_small", "raft_large")
PRECISIONS = ("fp32", "bf16", "auto")  # gifstream.restore.precision.PRECISION_CHOICES
METRICS = ("psnr", "ssim", "lpips", "e_warp", "tof", "tlp")
DEVICES = ("auto", "cpu", "cuda")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass(frozen=True)
class ProcessOptions:
    """What to do with the frames; see ``gifstream process --help`` for each option."""

    format: str | None = None  # output format; from the extension when None
    overwrite: bool = False
    restorer: str = "auto"
    scale: float | None = None  # output scale; None = the restorer's (2), or 1 with --restorer none
    flow: str = "dis"
    metrics: tuple[str, ...] = ("psnr", "ssim", "e_warp")
    detect_every: int = 1
    smooth_landmarks: bool = False
    precision: str = "auto"
    stabilize: bool = False
    stabilize_strength: float = 0.6
    batch: int = 1
    queue_depth: int = 4
    device: str = "auto"
    size: tuple[int, int] | None = None  # raw rgb24 input (width, height)
    fps: float = 10.0  # raw input and image folders
    weights_dir: str | None = None
    fetch_weights: bool = False
    report: str | None = None
    csv: str | None = None
    plot: str | None = None
    quiet: bool = False
    gif_quality: int = 90
    gif_colors: int = 256
    gif_dither: str = "none"
    gif_palette: str = "adaptive"
    video_codec: str | None = None
    crf: int | None = None
    audio: bool = True
    max_frame_pixels: int = 64_000_000
    max_frames: int = 1_000_000
    max_input_bytes: int = 8 * 1024**3
    max_total_pixels: int = 2_000_000_000_000
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("restorer", self.restorer, RESTORERS)
        _check_choice("flow", self.flow, FLOWS)
        _check_choice("device", self.device, DEVICES)
        _check_choice("precision", self.precision, PRECISIONS)
        for name in self.metrics:
            _check_choice("metrics", name, METRICS)
        if self.detect_every < 1:
            raise ConfigError(f"--detect-every must be >= 1, got {self.detect_every}")
        if not 0 <= self.stabilize_strength <= 1:
            raise ConfigError(f"--stabilize-strength must be in [0, 1], got {self.stabilize_strength}")
        if self.batch < 1:
            raise ConfigError(f"--batch must be >= 1, got {self.batch}")
        if self.queue_depth < 1:
            raise ConfigError(f"--queue-depth must be >= 1, got {self.queue_depth}")
        if self.fps <= 0:
            raise ConfigError(f"--fps must be > 0, got {self.fps}")
        if self.scale is not None and not 0 < self.scale <= 16:
            raise ConfigError(f"--scale must be in (0, 16], got {self.scale}")

    @property
    def output_scale(self) -> float:
        if self.scale is not None:
            return self.scale
        return 1.0 if self.restorer == "none" else 2.0

    def replace(self, **changes: Any) -> ProcessOptions:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, values: dict[str, Any], origin: str = "options") -> ProcessOptions:
        return cls().merged(values, origin)

    def merged(self, values: dict[str, Any], origin: str = "options") -> ProcessOptions:
        """These options with ``values`` (from TOML or keyword arguments) laid over them."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown option(s) in {origin}: {', '.join(unknown)}")
        converted = {name: _convert(name, value) for name, value in values.items()}
        return dataclasses.replace(self, **converted)


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"--{option.replace('_', '-')} must be one of {', '.join(choices)}; got {value!r}")


def _convert(name: str, value: Any) -> Any:
    if name == "metrics":
        return parse_metrics(value)
    if name == "size" and value is not None:
        return parse_size(value)
    return value


def parse_metrics(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"psnr,ssim"`` or a list → a tuple of metric names; ``"none"`` or empty → ()."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(item.strip() for item in items if item.strip())
    if names in {("none",), ()}:
        return ()
    if "all" in names:
        return METRICS
    return names


def parse_size(value: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``"64x48"`` → (64, 48)."""
    if isinstance(value, tuple | list):
        width, height = (int(v) for v in value)
    else:
        try:
            width, height = (int(v) for v in value.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--size must look like WIDTHxHEIGHT (e.g. 64x48), got {value!r}") from None
    if width <= 0 or height <= 0:
        raise ConfigError(f"--size must be positive, got {width}x{height}")
    return width, height


def load_config(name_or_path: str) -> dict[str, Any]:
    """Options from a TOML preset: a path, or the name of a file in ``configs/``."""
    path = Path(name_or_path)
    if not path.exists() and (CONFIG_DIR / f"{name_or_path}.toml").exists():
        path = CONFIG_DIR / f"{name_or_path}.toml"
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        presets = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))) or "none found"
        raise ConfigError(f"config {name_or_path!r} not found (presets: {presets})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config {path} is not valid TOML: {err}") from None
    values = data.get("process", data)
    if not isinstance(values, dict):
        raise ConfigError(f"config {path}: [process] must be a table")
    return {key.replace("-", "_"): value for key, value in values.items()}
