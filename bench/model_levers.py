"""Levers on the GFPGAN restorer's CPU time: Winograd convolutions, memory layout, bfloat16 autocast, torch.compile.

One 256x144 frame of the benchmark's astronaut pan, with the one face
scikit-image's cascade finds there (landmarks from gifstream.benchmark's
template; the detections are found once and injected, so detection is not
timed), is restored by one GfpganRestorer with random weights in the
release formats (gifstream.benchmark.write_random_weights) under each
variant in turn, round after round (alternating, so a busy neighbour on
the machine slows all variants alike); each variant's best round counts.
The drift is the PSNR of each variant's output against the float32
output (the same noise seed for every run); with random weights it is
indicative only.

Per-network columns are the wall time of each network's forwards inside
the same runs (Real-ESRGAN runs on a thread of its own beside the faces,
so a faster background only shortens the frame when it was the longer side).

On a CPU without native bfloat16 (AVX512-BF16 or AMX) the bf16 variants
are emulated and slow: they run once each, and only with --emulated-bf16
(for their drift; their times say nothing of a CPU with native bfloat16).
Those runs send contiguous convolutions (GFPGAN's) through oneDNN's
channels-last kernels: the same bfloat16 arithmetic, but its emulation
there is 20x faster than the contiguous fallback (a GFPGAN forward took
52 s instead of well over 15 minutes). A one-convolution probe shows the
cost of emulation either way.

    ./run bench model_levers.py [--rounds 2] [--weights DIR] [--emulated-bf16] [--no-compile] [--freezing]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from gifstream.benchmark import TemplateLandmarks, cpu_description, synthetic_frames, write_random_weights
from gifstream.restore.gfpgan import ChannelsLast, GfpganNetworks, GfpganRestorer
from gifstream.restore.precision import (
    BF16_NETWORKS,
    DEFAULT_PRECISION,
    NETWORKS,
    has_native_bf16,
    resolve_precision,
)
from gifstream.restore.threads import CORE_SHARE, cap_intra_op_threads
from gifstream.restore.winograd import unrouted
from gifstream.weights import get_entry

FRAME_SIZE = (256, 144)
PROBE_SIDE = 256


class Timed:
    """A network, called as the network itself, recording the wall time of each call."""

    def __init__(self, net: Any) -> None:
        self.net = net
        self.seconds: list[float] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.net(*args, **kwargs)
        finally:
            self.seconds.append(time.perf_counter() - start)


class ContiguousInput:
    """A network fed contiguous (NCHW) input, as it was before the restorer moved to channels-last."""

    def __init__(self, net: Any) -> None:
        self.net = net

    def __call__(self, images: Any, *args: Any, **kwargs: Any) -> Any:
        return self.net(images.contiguous(), *args, **kwargs)


class ConvolutionsChannelsLast(TorchFunctionMode):
    """Contiguous 2-D convolutions run on channels-last copies of their input, their output made contiguous again."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in (F.conv2d, torch.conv2d) and args[0].dim() == 4 and args[0].is_contiguous():
            return func(args[0].contiguous(memory_format=torch.channels_last), *args[1:], **kwargs).contiguous()
        return func(*args, **kwargs)


@dataclasses.dataclass
class Variant:
    name: str
    networks: GfpganNetworks
    bf16: frozenset[str] = frozenset()
    runs: int = 0  # rounds to time; 1 for emulated bfloat16
    warm_up: bool = False  # a first, untimed call (torch.compile compiles on it)
    emulated: bool = False  # bfloat16 without native support: convolutions go through channels-last kernels
    frame_seconds: list[float] = dataclasses.field(default_factory=list)
    forward_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    pixels: np.ndarray | None = None
    first_call_seconds: float | None = None
    error: str | None = None


def copied(net: Any) -> Any:
    """A deep copy of ``net`` that still draws on the process's one core share (which is not copied)."""
    return copy.deepcopy(net, memo={id(CORE_SHARE): CORE_SHARE})


def contiguous_networks(networks: GfpganNetworks) -> GfpganNetworks:
    """Copies of the three networks in the default (contiguous) layout, fed contiguous input."""
    background = copied(networks.background).to(memory_format=torch.contiguous_format)
    parser, face = (net.net if isinstance(net, ChannelsLast) else net for net in (networks.parser, networks.face))
    parser = copied(parser).to(memory_format=torch.contiguous_format)
    face = copied(face).to(memory_format=torch.contiguous_format)
    return dataclasses.replace(
        networks, background=ContiguousInput(background), parser=parser, face=ContiguousInput(face)
    )


def direct_networks(networks: GfpganNetworks) -> GfpganNetworks:
    """Copies of the three networks with oneDNN's direct convolutions (no Winograd routing)."""

    def direct(net: Any) -> Any:
        if isinstance(net, ChannelsLast):
            return ChannelsLast(unrouted(copied(net.net)))
        return unrouted(copied(net))

    return dataclasses.replace(
        networks, background=direct(networks.background), parser=direct(networks.parser), face=direct(networks.face)
    )


def compiled_background(networks: GfpganNetworks, freezing: bool) -> GfpganNetworks:
    """The background network under torch.compile (inductor); ``freezing`` lets inductor fold the weights in as
    constants and pre-pack them for oneDNN, its setting for inference."""
    import torch._inductor.config

    torch._inductor.config.freezing = freezing
    return dataclasses.replace(networks, background=torch.compile(networks.background))


def timed_networks(networks: GfpganNetworks) -> GfpganNetworks:
    return dataclasses.replace(
        networks,
        background=Timed(networks.background),
        parser=Timed(networks.parser),
        face=Timed(networks.face),
    )


def restore_once(restorer: GfpganRestorer, variant: Variant, frame: np.ndarray) -> tuple[float, np.ndarray, dict]:
    """One restore of ``frame`` under ``variant``: (seconds, RGB output, seconds per network)."""
    networks = timed_networks(variant.networks)
    restorer.networks = networks
    restorer.bf16_networks = variant.bf16
    torch.manual_seed(0)  # GFPGAN draws fresh decoder noise on every call: the same noise for every variant
    # The mode is per thread: it reaches GFPGAN and ParseNet; the background is channels-last already.
    with ConvolutionsChannelsLast() if variant.emulated else contextlib.nullcontext():
        start = time.perf_counter()
        [restored] = restorer.restore([frame])
        seconds = time.perf_counter() - start
    forwards = {role: sum(getattr(networks, role).seconds) for role in NETWORKS}
    return seconds, restored.pixels, forwards


def run_variant(restorer: GfpganRestorer, variant: Variant, frame: np.ndarray) -> None:
    try:
        seconds, pixels, forwards = restore_once(restorer, variant, frame)
    except Exception as err:  # a failed lever (e.g. torch.compile without a compiler) is a result, not a crash
        variant.error = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:120]}"
        return
    variant.frame_seconds.append(seconds)
    if variant.pixels is None:
        variant.pixels = pixels
    if not variant.forward_seconds or seconds <= min(variant.frame_seconds):
        variant.forward_seconds = forwards


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def conv_probe(repeats: int = 2) -> dict[str, float]:
    """Seconds of one 64-channel 3x3 convolution on 256x256 (as in GFPGAN's decoder), float32 vs bfloat16
    autocast, in both layouts (emulated bfloat16 runs once: it can take seconds)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    plain = torch.randn(1, 64, PROBE_SIDE, PROBE_SIDE)
    native = has_native_bf16()
    times = {}
    for layout, images, net in (
        ("contiguous", plain, conv),
        (
            "channels-last",
            plain.contiguous(memory_format=torch.channels_last),
            copy.deepcopy(conv).to(memory_format=torch.channels_last),  # a copy: Module.to converts in place
        ),
    ):
        for dtype in ("fp32", "bf16"):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                best = math.inf
                for _ in range(repeats if dtype == "fp32" or native else 1):
                    start = time.perf_counter()
                    net(images)
                    best = min(best, time.perf_counter() - start)
            times[f"{layout} {dtype}"] = best
    return times


def build_variants(restorer: GfpganRestorer, args: argparse.Namespace, native_bf16: bool) -> list[Variant]:
    current = restorer.networks
    bf16_runs = args.rounds if native_bf16 else (1 if args.emulated_bf16 else 0)
    emulated = not native_bf16
    default_is_bf16 = resolve_precision(DEFAULT_PRECISION, "cpu") == "bf16"
    name = "fp32, channels-last" + (", Winograd 3x3" if restorer.winograd else "")
    variants = [Variant(name + ("" if default_is_bf16 else " (default)"), current, runs=args.rounds)]
    if restorer.winograd:
        variants.append(Variant("fp32, channels-last, oneDNN direct", direct_networks(current), runs=args.rounds))
    variants.append(Variant("fp32, contiguous", contiguous_networks(current), runs=args.rounds))
    if not args.no_compile:
        compiled = compiled_background(current, args.freezing)
        name = f"fp32, torch.compile(background{', freezing' if args.freezing else ''})"
        variants.append(Variant(name, compiled, runs=args.rounds, warm_up=True))
    for role in NETWORKS:
        variants.append(Variant(f"bf16 autocast: {role}", current, frozenset({role}), bf16_runs, emulated=emulated))
    every = ", ".join(sorted(BF16_NETWORKS))
    name = f"bf16 autocast: {every}" + (" (default)" if default_is_bf16 else "")
    variants.append(Variant(name, current, BF16_NETWORKS, bf16_runs, emulated=emulated))
    return variants


def measure(restorer: GfpganRestorer, variants: list[Variant], frame: np.ndarray, rounds: int) -> None:
    for variant in (v for v in variants if v.warm_up):
        # The first call compiles; it is reported apart, and the rounds time the compiled code.
        start = time.perf_counter()
        run_variant(restorer, variant, frame)
        variant.first_call_seconds = time.perf_counter() - start
        variant.frame_seconds.clear()
        progress(f"{variant.name}: first call {variant.first_call_seconds:.1f} s")
    for variant in (v for v in variants if v.runs and not (v.warm_up or v.emulated)):
        # One untimed call each, so that no variant's timing holds its threads' first-use costs (page faults in
        # fresh activations and scratch buffers) and the order of variants does not favour the later ones.
        run_variant(restorer, variant, frame)
        variant.frame_seconds.clear()
    for round_index in range(rounds):
        for variant in variants:
            if round_index < variant.runs and variant.error is None:
                run_variant(restorer, variant, frame)
                progress(f"round {round_index + 1}: {variant.name}: {last(variant.frame_seconds)}")


def last(values: list[float]) -> str:
    return f"{values[-1]:.2f} s" if values else "-"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table_lines(variants: list[Variant]) -> Iterator[str]:
    reference = variants[0]  # float32, as the library runs where the CPU has no native bfloat16
    base = min(reference.frame_seconds)
    yield (
        "| variant | frame s (best) | runs | vs fp32 | background fwd s | parser fwd s | face fwd s "
        "| PSNR vs fp32 (dB) |"
    )
    yield "|---|---:|---:|---:|---:|---:|---:|---:|"
    for v in variants:
        if v.error is not None:
            yield f"| {v.name} | failed: {v.error} | | | | | | |"
            continue
        if not v.frame_seconds:
            yield f"| {v.name} | not run (no native bfloat16; --emulated-bf16 runs it once) | | | | | | |"
            continue
        best = min(v.frame_seconds)
        forwards = " | ".join(f"{v.forward_seconds[role]:.2f}" for role in NETWORKS)
        drift = psnr(v.pixels, reference.pixels) if v.pixels is not None else math.nan
        first = f" (first call {v.first_call_seconds:.0f} s)" if v.first_call_seconds is not None else ""
        first += " (emulated)" if v.emulated else ""
        yield (
            f"| {v.name}{first} | {best:.2f} | {len(v.frame_seconds)} | {best / base:.2f}x | {forwards} | "
            f"{'identical' if math.isinf(drift) else f'{drift:.1f}'} |"
        )


def weights_folder(given: str | None, scratch: Path) -> Path:
    return write_random_weights(Path(given) if given else scratch / "weights")


def template_face_frame() -> tuple[np.ndarray, list[Any]]:
    frame = next(synthetic_frames(1, FRAME_SIZE)).pixels
    faces = TemplateLandmarks()([frame])[0]
    if len(faces) != 1:
        sys.exit(f"expected one face in the {FRAME_SIZE} astronaut frame, the cascade found {len(faces)}")
    return frame, faces


def fixed_detections(faces: list[Any]) -> Callable[[Any], list[list[Any]]]:
    return lambda frames: [list(faces) for _ in frames]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; each variant's best counts")
    parser.add_argument("--weights", help="folder for the random-weight files (reused when already written)")
    parser.add_argument("--emulated-bf16", action="store_true", help="run bf16 variants even without native bf16")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variant")
    parser.add_argument("--freezing", action="store_true", help="compile with inductor's weight freezing")
    args = parser.parse_args()
    native_bf16 = has_native_bf16()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        folder = weights_folder(args.weights, Path(scratch))
        frame, faces = template_face_frame()
        restorer = GfpganRestorer(
            folder / get_entry("gfpgan_v1.3").filename,
            folder / get_entry("realesrgan_x2plus").filename,
            None,
            folder / get_entry("parsenet").filename,
            detector=fixed_detections(faces),
            precision="fp32",  # each variant sets its own; float32 routes the convolutions Winograd can take
        )
        cap_intra_op_threads(restorer.intra_op_threads or 1)  # the probe runs on as many threads as each side
        probe = conv_probe()
        variants = build_variants(restorer, args, native_bf16)
        measure(restorer, variants, frame, args.rounds)
    print(f"python bench/model_levers.py {' '.join(sys.argv[1:])}".rstrip())
    print()
    print(
        f"CPU: {cpu_description()}, torch {torch.__version__}, "
        f"capability {torch.backends.cpu.get_cpu_capability()}, native bfloat16: {native_bf16}; "
        f"{restorer.intra_op_threads} intra-op thread(s) per side (background beside faces); "
        f"{FRAME_SIZE[0]}x{FRAME_SIZE[1]} frame, one face, random weights; total {time.perf_counter() - started:.0f} s"
    )
    print()
    print("\n".join(table_lines(variants)))
    print()
    probe_text = ", ".join(f"{layout} {seconds * 1e3:.1f}" for layout, seconds in probe.items())
    print(f"One 64-channel 3x3 convolution at {PROBE_SIDE}x{PROBE_SIDE} (ms): {probe_text}")


if __name__ == "__main__":
    main()
