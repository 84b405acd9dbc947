"""Before and after, side by side: ``gifstream process`` from several code trees or environments, interleaved.

A lever is measured by running the same command with and without it, in
rounds (A, B, A, B, ...) so that a shared, noisy machine's load drifts over
both alike; each run is a fresh process, and the medians are compared.

    # the committed code against the working tree, offline preset, 3 rounds
    git archive HEAD gifstream | tar -x -C /tmp/head
    ./run bench compare.py in.gif --variant before /tmp/head --variant after .

    # an environment lever (glibc keeps freed memory for reuse) on the same code
    ./run bench compare.py in.gif --variant plain . \\
        --variant keep-freed . MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824

A variant is NAME TREE [KEY=VALUE ...]: TREE is a folder holding a
``gifstream`` package (put first on PYTHONPATH), the assignments are extra
environment variables. Without an input, a synthetic 480x270 GIF of
``--frames`` frames is made (as ``gifstream bench`` makes it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Variant:
    name: str
    tree: Path
    env: dict[str, str] = field(default_factory=dict)


def parse_variant(values: list[str]) -> Variant:
    if len(values) < 2:
        raise SystemExit(f"--variant needs NAME TREE [KEY=VALUE ...], got {' '.join(values)}")
    name, tree, *assignments = values
    if not (Path(tree) / "gifstream" / "__init__.py").is_file():
        raise SystemExit(f"variant {name}: {tree} holds no gifstream package")
    env = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"variant {name}: {item!r} is not KEY=VALUE")
        env[key] = value
    return Variant(name, Path(tree).resolve(), env)


REPO = Path(__file__).resolve().parent.parent


def config_path(config: str) -> str:
    """A preset name as the path of this checkout's TOML (an exported tree may have no configs/ of its own)."""
    preset = REPO / "configs" / f"{config}.toml"
    return str(preset) if not Path(config).exists() and preset.is_file() else config


def run_once(variant: Variant, source: Path, config: str, work: Path) -> dict[str, Any]:
    """One ``gifstream process`` run of ``variant``; its report's figures."""
    report = work / f"{variant.name}.json"
    env = {**os.environ, **variant.env, "PYTHONPATH": str(variant.tree)}
    command = [sys.executable, "-m", "gifstream.cli", "process", str(source), "-o", str(work / "out.gif")]
    command += ["--overwrite", "--quiet", "--config", config_path(config), "--report", str(report)]
    subprocess.run(command, check=True, env=env, cwd=work)
    data = json.loads(report.read_text())
    busy = {stage["name"]: stage["frames_per_s_busy"] for stage in data["stages"]}
    return {
        "frames_per_s": data["throughput"]["frames_per_s"],
        "first_output_s": data["throughput"]["first_output_s"],
        "peak_rss_mb": data["peak_rss_mb"],
        "busy": busy,
        "summary": {name: values.get("mean") for name, values in (data.get("summary") or {}).items()},
    }


def synthetic_input(path: Path, frames: int) -> Path:
    from gifstream.benchmark import synthetic_frames, write_gif

    write_gif(path, synthetic_frames(frames, (480, 270)), frames)
    return path


def table(variants: list[Variant], runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    first = statistics.median(r["frames_per_s"] for r in runs[variants[0].name])
    lines = [
        "| variant | frames/s median (min-max) | vs first | first output s | peak RSS MB | stages, busy frames/s |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for variant in variants:
        rows = runs[variant.name]
        fps = [r["frames_per_s"] for r in rows]
        busy = {name: statistics.median(r["busy"][name] for r in rows) for name in rows[0]["busy"]}
        lines.append(
            f"| {variant.name} | {statistics.median(fps):.2f} ({min(fps):.2f}-{max(fps):.2f}) "
            f"| {statistics.median(fps) / first:.2f}x | {statistics.median(r['first_output_s'] for r in rows):.2f} "
            f"| {statistics.median(r['peak_rss_mb'] for r in rows):.0f} "
            f"| {', '.join(f'{k} {v:.1f}' for k, v in busy.items())} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", type=Path, help="GIF to process (default: a synthetic 480x270 one)")
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar="NAME TREE [KEY=VALUE]")
    parser.add_argument("--config", default="offline", help="preset or TOML of gifstream process (default offline)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=100, help="length of the synthetic input")
    args = parser.parse_args(argv)
    variants = [parse_variant(values) for values in args.variant]
    runs: dict[str, list[dict[str, Any]]] = {variant.name: [] for variant in variants}
    with tempfile.TemporaryDirectory(prefix="gifstream-compare-") as tmp:
        work = Path(tmp)
        source = args.input or synthetic_input(work / "input.gif", args.frames)
        for round_number in range(args.rounds):
            for variant in variants:
                print(f"round {round_number + 1}: {variant.name}", file=sys.stderr, flush=True)
                runs[variant.name].append(run_once(variant, source.resolve(), args.config, work))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load now {load}")
    described = args.input or f"synthetic 480x270, {args.frames} frames"
    print(f"input: {described}; --config {args.config}; {args.rounds} rounds")
    print("\n".join(table(variants, runs)))
    for variant in variants:
        print(f"- {variant.name}: {variant.tree} {' '.join(f'{k}={v}' for k, v in variant.env.items())}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
