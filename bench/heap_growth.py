"""Heap in use against heap held, every N frames of one long run: tells a leak from fragmentation.

Peak RSS that creeps up with a run's length is either memory still in use
(a leak: "in use" grows) or glibc's heap broken into free holes that it
cannot reuse ("held" grows while "in use" stays flat). This runs
`gifstream process` in this process with the allocator set as the command
sets it, and prints glibc's ``mallinfo2()`` and the RSS as frames come out.

    ./run bench heap_growth.py                              # 3,000 synthetic 256x144 frames, offline preset
    ./run bench heap_growth.py --frames 5000 --every 500 --set metrics=none
    ./run bench heap_growth.py --input clip.gif --config passthrough
    ./run bench heap_growth.py --preset models --frames 240 --every 10   # GFPGAN etc., random weights

``--preset models`` runs the stages of ``gifstream bench --preset models``
(GFPGAN v1.3, Real-ESRGAN x2, RAFT large, LPIPS; random weights in the
release formats, faces from the cascade with template landmarks) instead
of a ``configs/`` preset; ``--weights DIR`` keeps the random files for the
next run.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from gifstream import benchmark
from gifstream.allocator import keep_freed_memory
from gifstream.api import as_options, process_async
from gifstream.benchmark import synthetic_frames, write_gif
from gifstream.engine import Frame, RunContext, RunnerConfig, run
from gifstream.options import ProcessOptions, load_config


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def heap_probe() -> Callable[[], MallInfo2]:
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        sys.exit("heap_growth.py needs glibc 2.33 or later (mallinfo2)")
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2  # type: ignore[no-any-return]


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def parse_setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--set takes NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, help="a GIF or video (default: synthetic frames, see --frames)")
    parser.add_argument("--frames", type=int, default=3000, help="length of the synthetic input (default 3000)")
    parser.add_argument("--size", default="256x144", help="size of the synthetic input (default 256x144)")
    parser.add_argument("--config", default="offline", help="preset from configs/ (default offline)")
    parser.add_argument("--set", type=parse_setting, action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--every", type=int, default=250, help="print a row every this many frames (default 250)")
    parser.add_argument("--preset", choices=("config", "models"), default="config", help="models: see above")
    parser.add_argument("--weights", type=Path, help="--preset models: folder for the random-weight files")
    args = parser.parse_args()
    if args.preset == "models" and (args.set or args.config != "offline"):
        parser.error("--preset models runs the bench's models stages; --config and --set do not apply to it")

    keep_freed_memory()  # as the gifstream command does, before any thread allocates
    mallinfo = heap_probe()
    options = ProcessOptions().merged(load_config(args.config), f"config {args.config}")
    options = options.merged(dict(args.set), "--set") if args.set else options
    with tempfile.TemporaryDirectory(prefix="gifstream-heap-") as tmp:
        source = args.input
        if source is None:
            width, height = (int(side) for side in args.size.lower().split("x"))
            source = Path(tmp) / "input.gif"
            print(f"writing {args.frames} synthetic {width}x{height} frames ...", file=sys.stderr)
            write_gif(source, synthetic_frames(args.frames, (width, height)), args.frames)
        print("| frame | RSS MB | heap held MB | heap in use MB | free in heap MB | free chunks |")
        print("|---:|---:|---:|---:|---:|---:|")

        def row(frame: Frame) -> None:
            if frame.index % args.every == 0:
                heap = mallinfo()
                mb = 2**20
                print(
                    f"| {frame.index} | {rss_mb():.1f} | {heap.arena / mb:.1f} | {heap.uordblks / mb:.1f} "
                    f"| {heap.fordblks / mb:.1f} | {heap.ordblks} |",
                    flush=True,
                )

        output = Path(tmp) / "out.gif"
        if args.preset == "models":
            weights = benchmark.write_random_weights(args.weights or Path(tmp) / "weights")
            with benchmark.random_weights_registry(weights):
                frames = asyncio.run(run_models_preset(source, output, weights, row))
            print(f"\npeak RSS {benchmark.peak_rss_mb()} MB over {frames} frames (models preset)")
            return
        options = as_options(options, overwrite=True, quiet=True)
        report = asyncio.run(process_async(source, output, options, progress=lambda info: row))
    print(f"\npeak RSS {report['peak_rss_mb']} MB over {report['frames']['count']} frames ({args.config})")


async def run_models_preset(source: Path, output: Path, weights: Path, row: Callable[[Frame], None]) -> int:
    """The pipeline of ``gifstream bench --preset models`` on ``source``; returns the frames written."""
    from gifstream.io import Limits, open_sink, open_source

    options = benchmark.preset_options({"preset": "models", "weights": str(weights)})
    stages = benchmark.gifstream_stages(options, "models")
    reader = open_source(source, limits=Limits())
    sink = open_sink(output, format="gif", overwrite=True)
    written = 0

    def on_frame(frame: Frame) -> None:
        nonlocal written
        row(frame)
        written += 1

    await run(
        reader,
        stages,
        sink,
        RunContext(device="cpu", options={"quiet": True}),
        RunnerConfig(queue_depth=options.queue_depth, batch_size=options.batch),
        on_frame=on_frame,
    )
    return written


if __name__ == "__main__":
    main()
