"""Heap in use against heap held, every N frames of one long run: tells a leak from fragmentation.

Peak RSS that creeps up with a run's length is either memory still in use
(a leak: "in use" grows) or glibc's heap broken into free holes that it
cannot reuse ("held" grows while "in use" stays flat). This runs
`gifstream process` in this process with the allocator set as the command
sets it, and prints glibc's ``mallinfo2()`` and the RSS as frames come out.

    ./run bench heap_growth.py                              # 3,000 synthetic 256x144 frames, offline preset
    ./run bench heap_growth.py --frames 5000 --every 500 --set metrics=none
    ./run bench heap_growth.py --input clip.gif --config passthrough
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from gifstream.allocator import keep_freed_memory
from gifstream.api import as_options, process_async
from gifstream.benchmark import synthetic_frames, write_gif
from gifstream.engine import Frame, StreamInfo
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
    args = parser.parse_args()

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

        def report_every(info: StreamInfo) -> Callable[[Frame], None]:
            def row(frame: Frame) -> None:
                if frame.index % args.every == 0:
                    heap = mallinfo()
                    mb = 2**20
                    print(
                        f"| {frame.index} | {rss_mb():.1f} | {heap.arena / mb:.1f} | {heap.uordblks / mb:.1f} "
                        f"| {heap.fordblks / mb:.1f} | {heap.ordblks} |",
                        flush=True,
                    )

            return row

        options = as_options(options, overwrite=True, quiet=True)
        report = asyncio.run(process_async(source, Path(tmp) / "out.gif", options, progress=report_every))
    print(f"\npeak RSS {report['peak_rss_mb']} MB over {report['frames']['count']} frames ({args.config})")


if __name__ == "__main__":
    main()
