"""Quality (PSNR, SSIM, LPIPS) and temporal-consistency (E_warp, tOF, tLP) metrics."""

from .quality import LpipsMetric, MetricUnavailable, match_geometry, psnr, ssim
from .temporal import WarpErrorPair, tof, warp_error, warp_error_pair

__all__ = [
    "LpipsMetric",
    "MetricUnavailable",
    "WarpErrorPair",
    "match_geometry",
    "psnr",
    "ssim",
    "tof",
    "warp_error",
    "warp_error_pair",
]
