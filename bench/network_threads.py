"""Each GFPGAN-path network alone on one and on two torch threads: what the models preset's CPU floor is.

GFPGAN v1.3 on one 512x512 face, ParseNet on the same crop (the paste-back
mask) and Real-ESRGAN x2plus on one 256x144 frame, random weights in the
release formats (gifstream.benchmark.write_random_weights), channels-last as
the restorer runs them. Each forward is timed after a warm-up call; the
table gives the mean wall time and the speed-up two threads bring. The sum
of the one-thread times is the CPU a frame needs at the least, whichever
way the work is spread over the cores.

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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from gifstream.allocator import keep_freed_memory
from gifstream.benchmark import TemplateLandmarks, synthetic_frames, write_random_weights
from gifstream.restore.compat import import_model_libraries
from gifstream.restore.gfpgan import GFPGAN_WEIGHT, GfpganRestorer, load_networks
from gifstream.restore.threads import cap_intra_op_threads


def mean_seconds(forward: Callable[[], object], threads: int, repeats: int) -> float:
    cap_intra_op_threads(threads)
    with torch.inference_mode():
        forward()
        started = time.perf_counter()
        for _ in range(repeats):
            forward()
    return (time.perf_counter() - started) / repeats


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
    print("| network | 1 thread, s | 2 threads, s | speed-up |")
    print("|---|---:|---:|---:|")
    total_one = 0.0
    for name, forward in forwards.items():
        one, two = mean_seconds(forward, 1, args.repeats), mean_seconds(forward, 2, args.repeats)
        total_one += one
        print(f"| {name} | {one:.2f} | {two:.2f} | {one / two:.2f}x |", flush=True)
    print(f"\nCPU a frame needs at the least (one face): {total_one:.1f} s; on 2 cores at best {total_one / 2:.1f} s")
    one_frame(folder, args.rounds)


def one_frame(folder: Path, rounds: int) -> None:
    """One frame through the restorer, networks fixed at one thread against the core share, taking turns."""
    frame = next(iter(synthetic_frames(1, (256, 144)))).as_array()
    faces = TemplateLandmarks()([frame])

    def restorer(threads: int | None) -> GfpganRestorer:
        paths = [folder / "GFPGANv1.3.pth", folder / "RealESRGAN_x2plus.pth", None, folder / "parsing_parsenet.pth"]
        return GfpganRestorer(*paths, detector=lambda _frames: faces, intra_op_threads=threads)

    variants = {"every network on 1 thread": restorer(1), "cores shared layer by layer (default)": restorer(None)}
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
