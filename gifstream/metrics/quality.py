"""Per-frame quality metrics: PSNR, SSIM and LPIPS, compared at the reference's geometry."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from ..engine.errors import GifstreamError, InputError
from ..motion.flow import check_rgb, resolve_device

if TYPE_CHECKING:
    import torch

ALEXNET_CHECKPOINT = "alexnet-owt-7be5be79.pth"  # torchvision's IMAGENET1K_V1 file name
SSIM_WINDOW = 7  # scikit-image's default window; smaller images cannot be scored


class MetricUnavailable(GifstreamError):
    """A metric cannot be computed here (its weights are missing or unusable); the message says why."""


def match_geometry(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    """``test`` at ``reference``'s size, resized with OpenCV INTER_AREA when the sizes differ.

    Only a uniform scale is allowed: when the aspect ratios differ by more
    than one pixel at the reference's scale, InputError is raised instead of
    squashing the image.
    """
    ref_h, ref_w = reference.shape[:2]
    height, width = test.shape[:2]
    if (height, width) == (ref_h, ref_w):
        return test
    if abs(height * ref_w / width - ref_h) > 1 or abs(width * ref_h / height - ref_w) > 1:
        raise InputError(
            f"cannot compare a {width}x{height} image with a {ref_w}x{ref_h} reference: "
            "their aspect ratios differ, and squashing would distort the comparison"
        )
    return cv2.resize(test, (ref_w, ref_h), interpolation=cv2.INTER_AREA)


def matched_pair(reference: Any, test: Any) -> tuple[np.ndarray, np.ndarray]:
    reference = check_rgb("reference", reference)
    test = check_rgb("test", test)
    return reference, match_geometry(reference, test)


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of ``test`` against ``reference`` (uint8 RGB), scikit-image's, data_range 255.

    When the sizes differ, ``test`` (the restored output) is resized to the
    reference's size with OpenCV INTER_AREA first; differing aspect ratios
    raise InputError. Identical images give ``inf``.
    """
    reference, test = matched_pair(reference, test)
    squared_error = sum_of_squared_differences(reference, test)
    if squared_error == 0:
        return math.inf  # scikit-image would divide by a zero error
    # scikit-image's float64 mean of the squared differences is this exact sum divided by the count
    # (every partial sum is an integer below 2**53), so the result is the same to the last bit.
    mse = squared_error / reference.size
    return float(10 * np.log10(255**2 / mse))


def sum_of_squared_differences(a: np.ndarray, b: np.ndarray) -> int:
    """The exact sum of squared differences of two uint8 arrays (255² fits in uint16, the sum in uint64)."""
    return int(np.square(cv2.absdiff(a, b), dtype=np.uint16).sum(dtype=np.uint64))


def ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """SSIM of ``test`` against ``reference`` (uint8 RGB), scikit-image's, data_range 255, channel_axis=2.

    When the sizes differ, ``test`` (the restored output) is resized to the
    reference's size with OpenCV INTER_AREA first; differing aspect ratios
    raise InputError.
    """
    reference, test = matched_pair(reference, test)
    if min(reference.shape[:2]) < SSIM_WINDOW:
        raise InputError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {reference.shape[1]}x{reference.shape[0]}"
        )
    # In float32: a third faster than the float64 scikit-image picks for uint8, and within 1e-6 of it.
    return float(
        structural_similarity(reference.astype(np.float32), test.astype(np.float32), data_range=255, channel_axis=2)
    )


def default_alexnet_path() -> Path:
    """Where torchvision itself would look for AlexNet's checkpoint ($TORCH_HOME/hub/checkpoints)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_CHECKPOINT


def read_alexnet_features(path: Path) -> dict[str, torch.Tensor]:
    """The convolutional ``features.*`` tensors of a torchvision AlexNet state dict, keyed by "N.weight"."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling failures come in many types
        raise MetricUnavailable(f"LPIPS: cannot read AlexNet weights {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict):
        raise MetricUnavailable(f"LPIPS: {path} is not a state dict (got {type(state).__name__})")
    return {key.removeprefix("features."): value for key, value in state.items() if key.startswith("features.")}


def build_lpips(alexnet_weights: Path, device: torch.device) -> torch.nn.Module:
    """lpips' AlexNet LPIPS with the backbone from ``alexnet_weights`` and the package's own linear layers.

    The backbone is built random (``pnet_rand=True``) so torchvision never
    tries to download it; ``pretrained=True`` loads the linear layers lpips
    ships in its package. The backbone weights are then copied in from the file.
    """
    import lpips  # deferred: heavy, and only this metric needs it

    features = read_alexnet_features(alexnet_weights)
    with warnings.catch_warnings():
        # lpips still passes torchvision's deprecated ``pretrained`` flag.
        warnings.filterwarnings("ignore", message=re.escape("The parameter 'pretrained'"), category=UserWarning)
        warnings.filterwarnings("ignore", message=re.escape("Arguments other than a weight enum"), category=UserWarning)
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    # lpips splits AlexNet's ``features`` into slices that keep the layer
    # indices: "slice2.3.weight" is torchvision's "features.3.weight".
    backbone: dict[str, torch.Tensor] = {}
    for key in model.net.state_dict():
        layer_key = key.split(".", 1)[1]
        if layer_key not in features:
            raise MetricUnavailable(f"LPIPS: {alexnet_weights} is not an AlexNet checkpoint (no features.{layer_key})")
        backbone[key] = features[layer_key]
    try:
        model.net.load_state_dict(backbone, strict=True)
    except RuntimeError as exc:
        raise MetricUnavailable(f"LPIPS: {alexnet_weights} does not fit AlexNet: {exc}") from exc
    return model.eval().to(device)


def to_lpips_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """(1, 3, H, W) float in [-1, 1], the input range LPIPS was trained on."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    return (tensor / 127.5 - 1.0).to(device)


class LpipsMetric:
    """LPIPS (AlexNet, v0.1) on uint8 RGB frames, never downloading anything.

    ``alexnet_weights`` is torchvision's ``alexnet-owt-7be5be79.pth``; when
    None, the file is looked for where torchvision keeps it
    ($TORCH_HOME/hub/checkpoints). A missing or unusable file raises
    :class:`MetricUnavailable` rather than scoring with random weights.
    """

    def __init__(self, alexnet_weights: str | Path | None = None, device: str | torch.device = "cpu") -> None:
        path = Path(alexnet_weights) if alexnet_weights is not None else default_alexnet_path()
        if not path.is_file():
            raise MetricUnavailable(
                f"LPIPS needs AlexNet's ImageNet weights ({ALEXNET_CHECKPOINT}) and none were found at {path}; "
                "no download is attempted"
            )
        self.device = resolve_device(device)
        self.model = build_lpips(path, self.device)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        """LPIPS distance between two frames; ``b`` is resized to ``a``'s geometry as for :func:`psnr`."""
        import torch

        a = check_rgb("a", a)
        b = match_geometry(a, check_rgb("b", b))
        with torch.inference_mode():
            distance = self.model(to_lpips_tensor(a, self.device), to_lpips_tensor(b, self.device))
        return float(distance.item())

    def tlp(self, in_prev: np.ndarray, in_cur: np.ndarray, out_prev: np.ndarray, out_cur: np.ndarray) -> float:
        """TecoGAN's tLP: |LPIPS(in_prev, in_cur) − LPIPS(out_prev, out_cur)| × 100.

        It is 0 when the output changes between frames as perceptibly as the
        input does, and grows with added (or removed) temporal change.
        """
        return abs(self(in_prev, in_cur) - self(out_prev, out_cur)) * 100.0
