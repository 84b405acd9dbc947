"""Dense optical flow between two RGB frames, at the frames' own geometry.

Every flow here is an (H, W, 2) float32 array in pixels from frame ``a`` to
frame ``b``: channel 0 is the horizontal component (+x, right), channel 1 the
vertical one (+y, down), so that ``a(x) ≈ b(x + F(x))``. That is OpenCV's and
torchvision RAFT's convention, and the one :func:`gifstream.motion.warp.backward_warp`
expects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..engine.errors import ConfigError, InputError

if TYPE_CHECKING:
    import torch

DIS_PRESETS: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
BACKENDS = ("dis", "raft_small", "raft_large")
RAFT_VARIANTS = ("small", "large")
RAFT_STRIDE = 8  # RAFT works on a 1/8 feature grid, so H and W must be multiples of 8
# Its 4-level correlation pyramid needs feature maps of at least 16 cells: 128 input pixels a side.
RAFT_MIN_SIDE = 128


def check_rgb(name: str, image: Any) -> np.ndarray:
    """Return ``image`` if it is an (H, W, 3) uint8 array; raise InputError naming ``name`` otherwise."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"{name} must be uint8 RGB, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{name} must have shape (H, W, 3), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"{name} is empty: shape {image.shape}")
    return image


def check_pair(a: Any, b: Any, names: tuple[str, str] = ("a", "b")) -> tuple[np.ndarray, np.ndarray]:
    """Validate two RGB frames of the same size (flow is only defined between equal geometries)."""
    a = check_rgb(names[0], a)
    b = check_rgb(names[1], b)
    if a.shape != b.shape:
        raise InputError(
            f"{names[0]} and {names[1]} differ in size: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]}"
        )
    return a, b


def check_flow(name: str, flow: Any, height: int | None = None, width: int | None = None) -> np.ndarray:
    """Return ``flow`` if it is an (H, W, 2) float array (of the given size, when given)."""
    if not isinstance(flow, np.ndarray):
        raise InputError(f"{name} must be a numpy array, got {type(flow).__name__}")
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise InputError(f"{name} must have shape (H, W, 2), got {flow.shape}")
    if not np.issubdtype(flow.dtype, np.floating):
        raise InputError(f"{name} must be a float array, got dtype {flow.dtype}")
    if height is not None and width is not None and flow.shape[:2] != (height, width):
        raise InputError(f"{name} is {flow.shape[1]}x{flow.shape[0]} but the frames are {width}x{height}")
    return flow


def to_gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def resize_flow(flow: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resample a flow field to ``width`` x ``height`` and scale its vectors by the same factors.

    A flow measured on a downscaled pair is in downscaled pixels, so both the
    field and the vector lengths must grow with the image (per axis).
    """
    flow = check_flow("flow", flow)
    src_h, src_w = flow.shape[:2]
    if (src_h, src_w) == (height, width):
        return flow.astype(np.float32, copy=False)
    out = cv2.resize(flow.astype(np.float32, copy=False), (width, height), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= width / src_w
    out[..., 1] *= height / src_h
    return out


def scaled_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) shrunk so the longer side is at most ``max_side``, keeping the aspect ratio."""
    longest = max(height, width)
    if max_side is None or longest <= max_side:
        return height, width
    scale = max_side / longest
    return max(1, round(height * scale)), max(1, round(width * scale))


class DisFlow:
    """OpenCV's DIS optical flow on grayscale frames; needs no weights."""

    def __init__(self, preset: str = "medium") -> None:
        if preset not in DIS_PRESETS:
            raise ConfigError(f"unknown DIS preset {preset!r}; choose one of {', '.join(DIS_PRESETS)}")
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = check_pair(a, b)
        flow = self._dis.calc(to_gray(a), to_gray(b), None)
        return np.ascontiguousarray(flow, dtype=np.float32)

    def pairs(self, a_list: Sequence[np.ndarray], b_list: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Flow from each ``a_list[i]`` to ``b_list[i]``."""
        check_same_length(a_list, b_list)
        return [self(a, b) for a, b in zip(a_list, b_list, strict=True)]

    def both_ways(
        self, a_list: Sequence[np.ndarray], b_list: Sequence[np.ndarray]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Flows from each ``a_list[i]`` to ``b_list[i]`` and back, each frame turned grey once for both."""
        check_same_length(a_list, b_list)
        forward, backward = [], []
        for i, (a, b) in enumerate(zip(a_list, b_list, strict=True)):
            a, b = check_pair(a, b, (f"a_list[{i}]", f"b_list[{i}]"))
            grey_a, grey_b = to_gray(a), to_gray(b)
            forward.append(np.ascontiguousarray(self._dis.calc(grey_a, grey_b, None), dtype=np.float32))
            backward.append(np.ascontiguousarray(self._dis.calc(grey_b, grey_a, None), dtype=np.float32))
        return forward, backward


def check_same_length(a_list: Sequence[Any], b_list: Sequence[Any]) -> None:
    if len(a_list) != len(b_list):
        raise InputError(f"flow needs as many first frames as second frames, got {len(a_list)} and {len(b_list)}")


def raft_model(variant: str) -> tuple[Callable[..., Any], Any]:
    """torchvision's builder and weights enum of RAFT ``variant`` (imported here: DIS runs without torch)."""
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights, raft_large, raft_small

    return {"small": (raft_small, Raft_Small_Weights), "large": (raft_large, Raft_Large_Weights)}[variant]


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device, refusing CUDA when this machine has none."""
    import torch

    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return resolved


def load_raft(variant: str, weights: str | Path | None, device: torch.device) -> torch.nn.Module:
    """torchvision's RAFT built without weights, then filled from a local state-dict file (never downloaded)."""
    if variant not in RAFT_VARIANTS:
        raise ConfigError(f"unknown RAFT variant {variant!r}; choose 'small' or 'large'")
    if weights is None:
        raise ConfigError(
            f"RAFT {variant} needs a weights file (torchvision's raft_{variant} checkpoint); pass weights=<path>"
        )
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(f"RAFT {variant} weights file not found: {path}")
    import torch

    builder, _ = raft_model(variant)
    model = builder(weights=None, progress=False)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # unpickling and key/shape mismatches raise many types
        raise ConfigError(f"{path} is not a raft_{variant} state dict: {type(exc).__name__}: {exc}") from exc
    return model.eval().to(device)


def pad_to_multiple(images: torch.Tensor, multiple: int, minimum: int = 0) -> torch.Tensor:
    """Replicate-pad (N, C, H, W) on the bottom and right to multiples of ``multiple``, at least ``minimum``.

    Padding on the far sides keeps pixel (0, 0) where it was, so the flow is
    cropped back with a plain slice.
    """
    import torch.nn.functional as F

    height, width = images.shape[-2:]
    pad_h = max(height + -height % multiple, minimum) - height
    pad_w = max(width + -width % multiple, minimum) - width
    if pad_h == 0 and pad_w == 0:
        return images
    return F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")


def resize_images(images: Sequence[np.ndarray], height: int, width: int) -> list[np.ndarray]:
    if images[0].shape[:2] == (height, width):
        return list(images)
    # INTER_AREA averages the pixels it drops, so downscaled frames do not alias.
    return [cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) for image in images]


def to_tensor_batch(images: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """(N, 3, H, W) uint8 tensor on ``device`` from (H, W, 3) uint8 arrays."""
    import torch

    stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return stacked.to(device).contiguous()


class RaftFlow:
    """torchvision's RAFT (small or large) loaded from a local checkpoint.

    Frames are normalised exactly as torchvision's ``Raft_*_Weights``
    transforms do ([-1, 1]) and replicate-padded on the bottom and right to a
    multiple of 8 (and to RAFT's minimum of 128 pixels a side); they are never
    resized to a square. ``max_side`` optionally shrinks large frames for
    speed, keeping their aspect ratio; the flow is then resized back to the
    input geometry with its vectors scaled to match. ``device`` is where the
    model runs ("cpu", "cuda", "cuda:1"); CUDA without a GPU is a ConfigError.
    """

    def __init__(
        self,
        variant: str = "small",
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        max_side: int | None = None,
        *,
        num_flow_updates: int = 12,
    ) -> None:
        if max_side is not None and max_side < RAFT_MIN_SIDE:
            raise ConfigError(
                f"max_side must be at least {RAFT_MIN_SIDE} pixels (RAFT's smallest input), got {max_side}"
            )
        if num_flow_updates < 1:
            raise ConfigError(f"num_flow_updates must be at least 1, got {num_flow_updates}")
        self.variant = variant
        self.device = resolve_device(device)
        self.max_side = max_side
        self.num_flow_updates = num_flow_updates
        self.model = load_raft(variant, weights, self.device)
        _, weights_enum = raft_model(variant)
        self._transforms = weights_enum.DEFAULT.transforms()

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.pairs([a], [b])[0]

    def pairs(self, a_list: Sequence[np.ndarray], b_list: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Flow from each ``a_list[i]`` to ``b_list[i]``; pairs of equal size share one batched forward."""
        check_same_length(a_list, b_list)
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, (a, b) in enumerate(zip(a_list, b_list, strict=True)):
            a, b = check_pair(a, b, (f"a_list[{i}]", f"b_list[{i}]"))
            groups[a.shape].append(i)
        flows: list[np.ndarray | None] = [None] * len(a_list)
        for indices in groups.values():
            batch = self._batch([a_list[i] for i in indices], [b_list[i] for i in indices])
            for i, flow in zip(indices, batch, strict=True):
                flows[i] = flow
        return [flow for flow in flows if flow is not None]

    def both_ways(
        self, a_list: Sequence[np.ndarray], b_list: Sequence[np.ndarray]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Flows from each ``a_list[i]`` to ``b_list[i]`` and back."""
        return self.pairs(a_list, b_list), self.pairs(b_list, a_list)

    def _batch(self, a_list: list[np.ndarray], b_list: list[np.ndarray]) -> list[np.ndarray]:
        """One forward pass over equal-size pairs, returned at their input geometry."""
        height, width = a_list[0].shape[:2]
        run_h, run_w = scaled_size(height, width, self.max_side)
        first = to_tensor_batch(resize_images(a_list, run_h, run_w), self.device)
        second = to_tensor_batch(resize_images(b_list, run_h, run_w), self.device)
        first, second = self._transforms(first, second)
        first = pad_to_multiple(first, RAFT_STRIDE, RAFT_MIN_SIDE)
        second = pad_to_multiple(second, RAFT_STRIDE, RAFT_MIN_SIDE)
        import torch

        with torch.inference_mode():
            predictions = self.model(first, second, num_flow_updates=self.num_flow_updates)
        # RAFT returns one estimate per refinement step; the last is the final one.
        flow = predictions[-1][:, :, :run_h, :run_w].permute(0, 2, 3, 1).float().cpu().numpy()
        return [resize_flow(np.ascontiguousarray(f), width, height) for f in flow]


def estimate_flow(
    a: np.ndarray, b: np.ndarray, backend: str = "dis", *, preset: str = "medium", **kw: Any
) -> np.ndarray:
    """Flow from frame ``a`` to frame ``b``: (H, W, 2) float32 in pixels, ``a(x) ≈ b(x + F(x))``.

    ``backend`` is "dis" (OpenCV DIS with ``preset`` "ultrafast", "fast" or
    "medium") or "raft_small"/"raft_large", which need ``weights=<path to
    torchvision's checkpoint>`` and accept :class:`RaftFlow`'s other keyword
    arguments. This builds the estimator for one pair; for a stream, keep a
    :class:`DisFlow` or :class:`RaftFlow` and call its ``pairs``.
    """
    a, b = check_pair(a, b)
    if backend == "dis":
        if kw:
            raise ConfigError(f"the dis backend takes no options besides preset, got {', '.join(sorted(kw))}")
        return DisFlow(preset)(a, b)
    if backend in ("raft_small", "raft_large"):
        return RaftFlow(variant=backend.removeprefix("raft_"), **kw)(a, b)
    raise ConfigError(f"unknown flow backend {backend!r}; choose one of {', '.join(BACKENDS)}")
