"""Speed levers, each measured against the default pipeline side by side, with its prediction written first.

Every lever is one ``gifstream bench --no-baseline`` setting. The runs
alternate (default, lever, default, next lever, …) so that each lever is
compared with a default run made next to it on this shared, noisy machine;
with ``--rounds 2`` every pair runs twice and the medians are kept. Levers
that are on by default are compared with a run that turns them off. The
table reports end-to-end throughput, CPU per frame and first output without
and with each lever, and how the run's mean metrics moved (a lever that buys
speed with quality says so here).

    ./run bench levers.py                       # offline preset, 480x270 x 100 frames, every lever
    ./run bench levers.py --only detect_every_4 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gifstream.benchmark import add_bench_parser, measure, pipeline_figures, plan_from_args


@dataclass(frozen=True)
class Lever:
    name: str
    args: tuple[str, ...]
    prediction: str
    # The default run's settings this lever is compared with (most levers: the plain default).
    base_args: tuple[str, ...] = ()


LEVERS = (
    Lever(
        "first_frame_alone",
        (),
        "the first frame goes through alone instead of sharing the CPU with frames 2-5 filling the queues: "
        "first output 2-3x sooner (from 3.7 frames' time to under 2), steady throughput unchanged (within 5%)",
        base_args=("--overlap-first-frame",),
    ),
    Lever(
        "keep_freed_memory",
        (),
        "glibc keeps freed frame-sized blocks instead of returning them to the system: page faults per frame "
        "fall by more than half, throughput +3-8%",
        base_args=("--system-malloc",),
    ),
    Lever(
        "one_arena",
        (),
        "every thread allocates from glibc's main heap instead of an arena of its own: at 480x270 no block is "
        "over a thread arena's 64 MiB, so throughput within 3% (the models preset is where it counts)",
        base_args=("--thread-arenas",),
    ),
    Lever(
        "cv_threads_1",
        ("--cv-threads", "1"),
        "OpenCV's own thread pool off (each stage already runs on its own thread): less oversubscription on 2 "
        "cores, throughput +0-10%",
    ),
    Lever(
        "batch_4",
        ("--batch", "4"),
        "batches of 4 frames: no gain on a CPU with per-frame OpenCV work, slightly later first output",
    ),
    Lever(
        "detect_every_4",
        ("--detect-every", "4"),
        "the face cascade (about 29 ms of the restorer's 55 ms) runs on one frame in 4: restore CPU -40%, "
        "throughput +10-20%, PSNR/SSIM move by less than 0.05 dB / 0.001",
    ),
    Lever(
        "dis_fast",
        ("--set", "flow=dis_fast"),
        "DIS 'fast' instead of 'medium' both ways: flow CPU 35 -> about 12 ms, throughput +10-15%; E_warp "
        "means move (a coarser flow masks and mis-warps more pixels)",
    ),
    Lever(
        "held_frames_reuse",
        ("--hold", "2"),
        "each picture shown for 2 frames (as hand-made GIFs do): repeated frames reuse restoration, flow and "
        "fidelity metrics, and encode as an empty frame, so throughput rises 1.6-1.9x against the same "
        "pictures each shown once",
    ),
)


def bench_once(argv: list[str], work: Path) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="gifstream")
    add_bench_parser(parser.add_subparsers())
    args = parser.parse_args(["bench", "--no-baseline", *argv])
    plan = plan_from_args(args)
    results = measure(plan, work)
    mine = results["gifstream"]
    figures = pipeline_figures(results["isolated"], mine)
    return {
        "steady_fps": mine["steady_frames_per_s"],
        "cpu_ms": mine["cpu_ms_per_frame"],
        "first_output_ms": 1000 * mine["first_output_after_setup_s"],
        "latency_frames": figures["latency_frames"],
        "efficiency": figures["efficiency"],
        "page_faults": {part["name"]: part["page_faults_mean"] for part in results["isolated"]["parts"]},
        "metrics": mine["metrics"],
    }


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def metric_moves(base: list[dict[str, Any]], lever: list[dict[str, Any]]) -> str:
    moves = []
    for name in ("psnr", "ssim", "e_warp"):
        before = [run["metrics"].get(name) for run in base]
        after = [run["metrics"].get(name) for run in lever]
        if None in before or None in after:
            continue
        moves.append(f"{name} {statistics.median(after) - statistics.median(before):+.3g}")
    return ", ".join(moves)


def setting(lever: Lever) -> str:
    """How the lever is set: the bench arguments that turn it on, or off when it is on by default."""
    if lever.args:
        return f"`{' '.join(lever.args)}`"
    return f"default (off: `{' '.join(lever.base_args)}`)"


def lever_row(lever: Lever, base: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    fps_b, fps_l = median_of(base, "steady_fps"), median_of(runs, "steady_fps")
    cpu_b, cpu_l = median_of(base, "cpu_ms"), median_of(runs, "cpu_ms")
    lat_b, lat_l = median_of(base, "latency_frames"), median_of(runs, "latency_frames")
    return (
        f"| {lever.name} | {setting(lever)} | {lever.prediction} | {fps_b:.2f} -> {fps_l:.2f} "
        f"({fps_l / fps_b:.2f}x) | {cpu_b:.0f} -> {cpu_l:.0f} | {lat_b:.2f} -> {lat_l:.2f} "
        f"| {metric_moves(base, runs) or '-'} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=[lever.name for lever in LEVERS], help="levers to measure")
    parser.add_argument("--rounds", type=int, default=1, help="times each default/lever pair runs (median kept)")
    parser.add_argument("--json", default=None, help="also write every run's figures here")
    args = parser.parse_args(argv)
    levers = [lever for lever in LEVERS if not args.only or lever.name in args.only]
    rows, raw = [], {}
    with tempfile.TemporaryDirectory(prefix="gifstream-levers-") as tmp:
        work = Path(tmp)
        for lever in levers:
            base, runs = [], []
            for _ in range(args.rounds):
                base.append(bench_once(list(lever.base_args), work))
                runs.append(bench_once(list(lever.args), work))
            raw[lever.name] = {"default": base, "lever": runs}
            rows.append(lever_row(lever, base, runs))
    print(f"command: {' '.join(['./run bench levers.py', *(argv if argv is not None else sys.argv[1:])])}")
    print(f"machine: {platform.machine()}, Python {platform.python_version()}; default = offline preset 480x270 x 100")
    print()
    print(
        "| lever | setting | prediction | steady frames/s, without -> with | CPU ms/frame | first output, "
        "frames' time | mean metrics, with - without |"
    )
    print("|---|---|---|---:|---:|---:|---|")
    print("\n".join(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
