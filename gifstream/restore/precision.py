"""Arithmetic precision of the GFPGAN restorer's networks on the CPU: float32, or bfloat16 autocast.

bfloat16 pays only on CPUs that compute it natively (AVX512-BF16 or AMX
on x86). Elsewhere it is emulated: on an AVX2 CPU a bfloat16 convolution
took 10x the float32 time in the channels-last layout and nearly 200x in
the contiguous one (GFPGAN's), and a restored frame over 8x
(bench/model_levers.py). On an AVX512-BF16 CPU a restored frame took 0.76x
the float32 time (Winograd convolutions included), and the models preset
ran 1.2x faster with 1 GB less memory (BENCHMARKS.md).

The default, ``auto``, is bfloat16 where the CPU has it natively and
float32 elsewhere, as a GPU run has its background in half precision by
default. The output then differs between such CPUs by the drift below
(invisible at 47 dB; float32 kernels already differ between CPUs, far less);
``fp32`` gives float32 everywhere.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Literal

from ..engine import ConfigError

Precision = Literal["fp32", "bf16"]
PRECISION_CHOICES = ("fp32", "bf16", "auto")
DEFAULT_PRECISION = "auto"
# The restorer's networks by role: Real-ESRGAN's RRDBNet, facexlib's ParseNet, GFPGAN's StyleGAN2 generator.
NETWORKS = ("background", "parser", "face")
# The networks run in bfloat16 under "bf16": all three, as each one's drift is small. The restorer's output
# PSNR against float32 (bench/model_levers.py: 256x144, one face, random weights, so indicative only) with
# bfloat16 in the background alone 47.4 dB, the parser alone 95.6 dB, the face alone 60.1 dB, all three 47.2 dB.
BF16_NETWORKS: frozenset[str] = frozenset(NETWORKS)
# CPU features (as torch.cpu.get_capabilities names them) with which oneDNN computes bfloat16 natively.
NATIVE_BF16_FEATURES = ("avx512_bf16", "amx_bf16")


def has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), rather than emulating it slowly."""
    import torch

    capabilities = torch.cpu.get_capabilities()
    return any(bool(capabilities.get(feature, False)) for feature in NATIVE_BF16_FEATURES)


def resolve_precision(precision: str, device_type: str) -> Precision:
    """``precision`` ("fp32", "bf16" or "auto") as it applies on ``device_type``: "fp32" or "bf16".

    "auto" is "bf16" on a CPU with native bfloat16, else "fp32". On a GPU
    the networks keep their own settings (a half-precision background,
    float32 faces), so only "fp32" and "auto" are accepted there.
    """
    if precision not in PRECISION_CHOICES:
        allowed = ", ".join(repr(choice) for choice in PRECISION_CHOICES)
        raise ConfigError(f"precision must be one of {allowed}; got {precision!r}")
    if device_type != "cpu":
        if precision == "bf16":
            raise ConfigError(
                f"precision 'bf16' is for the CPU; on {device_type} the background already runs in half precision"
            )
        return "fp32"
    if precision == "auto":
        return "bf16" if has_native_bf16() else "fp32"
    if precision == "bf16" and not has_native_bf16():
        warnings.warn(
            "precision 'bf16' on a CPU without native bfloat16 (AVX512-BF16 or AMX) is emulated, about 8x slower"
            " a frame than float32; 'auto' uses bfloat16 only where the CPU computes it",
            stacklevel=2,
        )
    return "bf16" if precision == "bf16" else "fp32"


def bf16_networks(precision: Precision) -> frozenset[str]:
    """The networks that run under bfloat16 autocast at ``precision``."""
    return BF16_NETWORKS if precision == "bf16" else frozenset()


@contextlib.contextmanager
def cpu_autocast(enabled: bool) -> Iterator[None]:
    """bfloat16 autocast on the CPU for the block when ``enabled`` (autocast is per thread: enter it where the
    network runs)."""
    if not enabled:
        yield
        return
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16):
        yield
