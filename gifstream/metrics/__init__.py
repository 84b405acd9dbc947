"""Quality (PSNR, SSIM, LPIPS) and temporal-consistency (E_warp, tOF, tLP) metrics."""

from .quality import LpipsMetric, MetricUnavailable, match_geometry, psnr, ssim
from .temporal import WarpErrorPair, output_warp_errors, tof, warp_error, warp_error_pair

__all__ = [
    "LpipsMetric",
    "MetricUnavailable",
    "WarpErrorPair",
    "match_geometry",
    "output_warp_errors",
    "psnr",
    "ssim",
    "tof",
    "warp_error",
    "warp_error_pair",
]
