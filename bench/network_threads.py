"""Each GFPGAN-path network alone on one and on two torch threads: what the models preset's CPU floor is.

GFPGAN v1.3 on one 512x512 face, ParseNet on the same crop (the paste-back
mask) and Real-ESRGAN x2plus on one 256x144 frame, random weights in the
release formats (gifstream.benchmark.write_random_weights), channels-last as
the restorer runs them. Each forward is timed after a warm-up call; the
table gives the mean wall time with oneDNN's direct convolutions on one and
two threads, and on one thread with the 3x3 convolutions through NNPACK's
Winograd kernels (gifstream.restore.winograd, which the restorer uses on
one-thread shares), each network's floating-point work (torch's flop
counter) and the rate oneDNN reaches, and the Winograd output's PSNR against
the direct one (same decoder noise). A fourth row times ParseNet as
facexlib builds it, its batch norms not folded into its convolutions (the
restorer folds them). The sum of the restorer's one-thread times is the
CPU a frame needs at the least, whichever way the work is spread.

Then one frame (the benchmark's 256x144 synthetic frame, its face from the
cascade with template landmarks) goes through ``GfpganRestorer.restore``
with every network fixed at one thread (``intra_op_threads=1``, the way
before the core share) and with the cores shared out layer by layer (the
default), taking turns round after round: what one frame costs a service
that enhances single frames.

    ./run bench network_threads.py [--repeats 2] [--rounds 2] [--weights DIR]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from gifstream.allocator import keep_freed_memory
from gifstream.benchmark import TemplateLandmarks, synthetic_frames, write_random_weights
from gifstream.restore.compat import import_model_libraries
from gifstream.restore.gfpgan import GFPGAN_WEIGHT, ChannelsLast, GfpganRestorer, checkpoint_params, load_networks
from gifstream.restore.threads import cap_intra_op_threads
from gifstream.restore.winograd import route_convolutions, unrouted


def mean_seconds(forward: Callable[[], object], threads: int, repeats: int) -> float:
    cap_intra_op_threads(threads)
    with torch.inference_mode():
        forward()
        started = time.perf_counter()
        for _ in range(repeats):
            forward()
    return (time.perf_counter() - started) / repeats


def facexlib_parsenet(path: Path) -> torch.nn.Module:
    from facexlib.parsing.parsenet import ParseNet

    net = ParseNet(in_size=512, out_size=512, parsing_ch=19)
    net.load_state_dict(checkpoint_params(path, "ParseNet"), strict=True)
    return net.eval().to(memory_format=torch.channels_last)


def gflop(forward: Callable[[], object]) -> float:
    """The forward's floating-point work, as torch's flop counter counts it (multiply-adds as two)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        forward()
    return counter.get_total_flops() / 1e9


def seeded_output(forward: Callable[[], object]) -> torch.Tensor:
    """The forward's (first) output, with the same random draws every time (GFPGAN's decoder noise)."""
    cap_intra_op_threads(1)
    torch.manual_seed(0)
    with torch.inference_mode():
        output = forward()
    return output[0] if isinstance(output, tuple) else output


def psnr(got: torch.Tensor, expected: torch.Tensor) -> float:
    """PSNR of ``got`` against ``expected`` over ``expected``'s range."""
    mse = float(((got.double() - expected.double()) ** 2).mean())
    span = float(expected.max() - expected.min())
    return math.inf if mse == 0 else 10 * math.log10(span**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the one-frame comparison")
    parser.add_argument("--weights", default=None, help="folder for the random-weight files (default: a temp folder)")
    args = parser.parse_args()
    keep_freed_memory()  # as the gifstream command runs: GFPGAN's 128 MiB activations are not faulted in each call
    folder = write_random_weights(Path(args.weights or tempfile.mkdtemp()))
    import_model_libraries()
    nets = load_networks(
        folder / "GFPGANv1.3.pth", folder / "RealESRGAN_x2plus.pth", None, folder / "parsing_parsenet.pth", "cpu"
    )
    torch.manual_seed(0)
    face = torch.randn(1, 3, 512, 512)
    frame = torch.rand(1, 3, 144, 256).contiguous(memory_format=torch.channels_last)
    forwards: dict[str, Callable[[], object]] = {
        "GFPGAN v1.3 (one 512² face)": lambda: nets.face(face, return_rgb=False, weight=GFPGAN_WEIGHT),
        "ParseNet (paste-back mask, 512²)": lambda: nets.parser(face),
        "Real-ESRGAN x2plus (256×144 frame)": lambda: nets.background(frame),
    }
    # ParseNet as facexlib builds it, batch norms apart and x * 1.0 steps in (load_networks folds them).
    unfolded = ChannelsLast(facexlib_parsenet(folder / "parsing_parsenet.pth"))
    forwards["ParseNet as facexlib builds it (norms not folded)"] = lambda: unfolded(face)
    networks = (nets.face, nets.parser, nets.background, unfolded)
    modules = {name: getattr(net, "net", net) for name, net in zip(forwards, networks, strict=True)}
    print(
        "| network | GFLOP | 1 thread, s | GFLOP/s | 2 threads, s | speed-up | 1 thread, Winograd, s "
        "| Winograd speed-up | Winograd PSNR vs direct, dB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    total_one = total_winograd = 0.0
    for name, forward in forwards.items():
        work = gflop(forward)
        one, two = mean_seconds(forward, 1, args.repeats), mean_seconds(forward, 2, args.repeats)
        direct = seeded_output(forward)
        route_convolutions(modules[name])
        try:
            winograd, routed = mean_seconds(forward, 1, args.repeats), seeded_output(forward)
        finally:
            unrouted(modules[name])
        if modules[name] is not unfolded.net:  # the frame's floor counts the networks the restorer runs
            total_one, total_winograd = total_one + one, total_winograd + winograd
        print(
            f"| {name} | {work:.0f} | {one:.2f} | {work / one:.0f} | {two:.2f} | {one / two:.2f}x | {winograd:.2f} "
            f"| {one / winograd:.2f}x | {psnr(routed, direct):.1f} |",
            flush=True,
        )
    print(
        f"\nCPU a frame needs at the least (one face): {total_one:.1f} s with oneDNN's direct convolutions, "
        f"{total_winograd:.1f} s through Winograd; on 2 cores at best {total_one / 2:.1f} and "
        f"{total_winograd / 2:.1f} s"
    )
    one_frame(folder, args.rounds)


def one_frame(folder: Path, rounds: int) -> None:
    """One frame through the restorer, networks fixed at one thread against the core share, taking turns."""
    frame = next(iter(synthetic_frames(1, (256, 144)))).as_array()
    faces = TemplateLandmarks()([frame])

    def restorer(threads: int | None, winograd: bool | None = None) -> GfpganRestorer:
        paths = [folder / "GFPGANv1.3.pth", folder / "RealESRGAN_x2plus.pth", None, folder / "parsing_parsenet.pth"]
        return GfpganRestorer(*paths, detector=lambda _frames: faces, intra_op_threads=threads, winograd=winograd)

    variants = {
        "every network on 1 thread": restorer(1),
        "cores shared layer by layer, oneDNN's direct convolutions": restorer(None, winograd=False),
        "cores shared layer by layer, Winograd on one-thread shares (default)": restorer(None),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, candidate in variants.items():
            torch.manual_seed(0)
            started = time.perf_counter()
            candidate.restore([frame])
            seconds[name].append(time.perf_counter() - started)
    print(f"\nOne 256x144 frame, {len(faces[0])} face, through GfpganRestorer.restore ({rounds} rounds):\n")
    print("| threads | best s | all runs, s |")
    print("|---|---:|---|")
    for name, times in seconds.items():
        print(f"| {name} | {min(times):.2f} | {', '.join(f'{t:.2f}' for t in times)} |")


if __name__ == "__main__":
    main()
