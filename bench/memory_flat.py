"""Peak RSS against input length: memory must stay flat however long the GIF.

Writes synthetic 320×240 GIFs of different lengths (streamed, so making them
is flat too), runs `gifstream process` on each in a fresh process, and
reports each run's peak RSS and the ratio to the shortest run, side by side.

    ./run bench memory_flat.py                       # 100 and 3,000 frames, pass-through
    ./run bench memory_flat.py --frames 100 3000 --config offline
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gifstream.engine import Frame, StreamInfo
from gifstream.io.gif import GifOptions, GifSink

WIDTH, HEIGHT = 320, 240


def synthetic_frames(count: int, seed: int = 0) -> Iterator[Frame]:
    """A textured scene panning under a moving disc: every frame differs, like real footage."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (HEIGHT * 2, WIDTH * 2, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture[::4, ::4], 4, 0), 4, 1)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    for index in range(count):
        x0, y0 = (index * 3) % WIDTH, (index * 2) % HEIGHT
        pixels = texture[y0 : y0 + HEIGHT, x0 : x0 + WIDTH].copy()
        cx, cy = WIDTH / 2 + 80 * np.cos(index / 15), HEIGHT / 2 + 60 * np.sin(index / 15)
        pixels[(xx - cx) ** 2 + (yy - cy) ** 2 < 40**2] = (230, 190, 160)
        yield Frame(index, pixels, duration_ms=float(20 + 10 * (index % 5)))


def write_gif(path: Path, count: int) -> None:
    sink = GifSink(path, GifOptions(), overwrite=True)
    sink.open(StreamInfo(width=WIDTH, height=HEIGHT, format="gif", loop=0, frame_count=count))
    for frame in synthetic_frames(count):
        sink.write(frame)
    sink.finish()


def measure(gif: Path, out: Path, extra: list[str]) -> dict[str, object]:
    report = out.with_suffix(".json")
    cmd = [sys.executable, "-m", "gifstream.cli", "process", str(gif), "-o", str(out), "--overwrite", "--quiet"]
    cmd += ["--report", str(report), *extra]
    subprocess.run(cmd, check=True)
    data = json.loads(report.read_text())
    return {
        "frames": data["frames"]["count"],
        "peak_rss_mb": data["peak_rss_mb"],
        "fps": data["throughput"]["frames_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 3000])
    parser.add_argument("--config", default="passthrough", help="preset from configs/ (default passthrough)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for count in args.frames:
            gif = Path(tmp) / f"in-{count}.gif"
            write_gif(gif, count)
            result = measure(gif, Path(tmp) / f"out-{count}.gif", ["--config", args.config])
            result["input_mb"] = round(gif.stat().st_size / 2**20, 1)
            rows.append(result)
    base = rows[0]["peak_rss_mb"]
    print(f"machine: {platform.machine()}, {platform.python_version()}; config {args.config}; {WIDTH}x{HEIGHT}")
    print("| frames | input MB | peak RSS MB | ratio to first | frames/s |")
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        ratio = row["peak_rss_mb"] / base  # type: ignore[operator]
        print(f"| {row['frames']} | {row['input_mb']} | {row['peak_rss_mb']} | {ratio:.3f} | {row['fps']} |")


if __name__ == "__main__":
    main()
