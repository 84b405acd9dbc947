"""GIF encoders side by side on real clips: size, speed, fidelity and flicker.

Decodes the clips in ../shared/testdata/video with PyAV (the first 120
frames, shrunk to at most 320 px on the long side), encodes each with
gifstream's GIF writer (its default and a few other settings), gifski
(quality 90 and 100) and ffmpeg (palettegen stats_mode=diff, paletteuse
sierra2_4a with diff_mode=rectangle), decodes every GIF with Pillow and
reports per clip: file size, bits per pixel, encode time (best of --repeat
runs, wall clock, the encoders taking turns within each round), mean and min
PSNR (a frame's PSNR capped at 100 dB), mean SSIM (scikit-image) and added
flicker (mean |frame - previous frame| of the decoded GIF minus the same for
the source, in levels; negative = calmer than the source).

gifski and ffmpeg are comparators only (gifstream does not use them):
gifski 1.7.1 comes with the npm package ``gifski`` (``npm install gifski`` in a
scratch folder; pass --gifski node_modules/gifski/bin/debian/gifski), ffmpeg
from the system packages. gifski is fed PNG files (written before its clock
starts) and ffmpeg raw RGB on a pipe; gifstream encodes frames in memory.

    ./run bench gif_quality.py --gifski /tmp/gifski_npm/node_modules/gifski/bin/debian/gifski
    ./run bench gif_quality.py --clips carphone realshort --encoders gifstream gifski
    ./run bench gif_quality.py --setting quality=85 --setting dither=ordered

Targets: at its default setting gifstream's GIF has at least gifski q90's mean
PSNR, is no larger, is at least 3x faster and adds no more flicker, on every clip.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import av
import numpy as np
from common import shrink
from PIL import Image
from skimage.metrics import structural_similarity

from gifstream.engine import Frame, StreamInfo
from gifstream.io.gif_sink import GifOptions, GifSink

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
MAX_SIDE = 320
MAX_FRAMES = 120
PSNR_CAP = 100.0
DEFAULT_SETTINGS = ("quality=95", "quality=80", "dither=ordered", "palette=global", "despike=0")


@dataclass(frozen=True)
class Clip:
    name: str
    frames: list[np.ndarray]
    fps: float

    @property
    def pixels(self) -> int:
        height, width = self.frames[0].shape[:2]
        return height * width * len(self.frames)


@dataclass(frozen=True)
class Result:
    encoder: str
    size: int
    seconds: float
    psnr_mean: float
    psnr_min: float
    ssim_mean: float
    added_flicker: float
    frames: int


# --------------------------------------------------------------------------- inputs


def load_clip(path: Path, max_frames: int, max_side: int) -> Clip:
    """The first ``max_frames`` frames of the first video stream, decoded by PyAV to RGB and shrunk."""
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        for decoded in container.decode(stream):
            frames.append(shrink(decoded.to_ndarray(format="rgb24"), max_side))
            if len(frames) >= max_frames:
                break
    return Clip(path.stem, frames, rate)


# --------------------------------------------------------------------------- encoders


def encode_gifstream(clip: Clip, options: GifOptions, target: Path) -> None:
    height, width = clip.frames[0].shape[:2]
    sink = GifSink(target, options, overwrite=True)
    sink.open(StreamInfo(width=width, height=height, format="video", fps=clip.fps, loop=0))
    for index, pixels in enumerate(clip.frames):
        sink.write(Frame(index, pixels, duration_ms=1000 / clip.fps))
    sink.finish()


def encode_gifski(binary: str, quality: int, clip: Clip, target: Path, pngs: list[str]) -> None:
    command = [binary, "--quiet", "--quality", str(quality), "--fps", f"{clip.fps:.3f}", "-o", str(target), *pngs]
    subprocess.run(command, check=True, capture_output=True)


def encode_ffmpeg(binary: str, clip: Clip, target: Path) -> None:
    height, width = clip.frames[0].shape[:2]
    graph = "[0:v]split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=sierra2_4a:diff_mode=rectangle"
    command = [
        binary, "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
        "-r", f"{clip.fps:.3f}", "-i", "-", "-filter_complex", graph, str(target),
    ]  # fmt: skip
    raw = b"".join(frame.tobytes() for frame in clip.frames)
    subprocess.run(command, input=raw, check=True, capture_output=True)


# --------------------------------------------------------------------------- measurements


def decode_gif(data: bytes) -> list[np.ndarray]:
    """Every frame as Pillow composites it, RGB."""
    frames = []
    with Image.open(io.BytesIO(data)) as image:
        for index in range(image.n_frames):
            image.seek(index)
            frames.append(np.asarray(image.convert("RGB")))
    return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB, capped at 100 so an exact frame does not make a clip's mean infinite."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * np.log10(255**2 / mse))


def mean_change(frames: Sequence[np.ndarray]) -> float:
    """Mean |frame - previous frame| over the sequence, in levels."""
    changes = [np.abs(b.astype(np.int16) - a).mean() for a, b in itertools.pairwise(frames)]
    return float(np.mean(changes)) if changes else 0.0


def measure(encoder: str, clip: Clip, data: bytes, seconds: float) -> Result:
    decoded = decode_gif(data)
    count = min(len(decoded), len(clip.frames))
    source, decoded = clip.frames[:count], decoded[:count]
    scores = [psnr(s, d) for s, d in zip(source, decoded, strict=True)]
    similarity = [
        structural_similarity(s, d, channel_axis=2, data_range=255) for s, d in zip(source, decoded, strict=True)
    ]
    flicker = mean_change(decoded) - mean_change(source)
    return Result(
        encoder, len(data), seconds, float(np.mean(scores)), float(np.min(scores)), float(np.mean(similarity)),
        flicker, count,
    )  # fmt: skip


def timed_side_by_side(runs: Sequence[Callable[[], None]], repeat: int) -> list[float]:
    """The best wall-clock time of each run over ``repeat`` rounds, the runs taking turns within a round.

    On a machine shared with other work the load drifts over minutes; taking
    turns puts every encoder through the same stretches of it, so their
    ratios hold even when the absolute times do not.
    """
    best = [float("inf")] * len(runs)
    for _ in range(repeat):
        for index, run in enumerate(runs):
            start = time.perf_counter()
            run()
            best[index] = min(best[index], time.perf_counter() - start)
    return best


def parse_setting(text: str) -> tuple[str, GifOptions]:
    """``quality=85,dither=ordered,despike=4.5`` as GifOptions (numbers where they parse)."""
    values: dict[str, object] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        values[key.strip()] = parse_value(value.strip())
    return text, GifOptions(**values)  # type: ignore[arg-type]


def parse_value(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def run_clip(clip: Clip, args: argparse.Namespace, settings: list[tuple[str, GifOptions]]) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="gif-quality-") as scratch:
        folder = Path(scratch)
        encoders: list[tuple[str, Callable[[Path], None]]] = []
        if "gifstream" in args.encoders:
            for label, options in [("default", GifOptions()), *settings]:
                encoders.append((f"gifstream {label}", partial(encode_gifstream, clip, options)))
        if "gifski" in args.encoders and args.gifski:
            pngs = []
            for index, pixels in enumerate(clip.frames):
                png = folder / f"frame{index:05d}.png"
                Image.fromarray(pixels).save(png, compress_level=1)
                pngs.append(str(png))
            for quality in (90, 100):
                encoders.append((f"gifski q{quality}", partial(encode_gifski, args.gifski, quality, clip, pngs=pngs)))
        if "ffmpeg" in args.encoders and args.ffmpeg:
            encoders.append(("ffmpeg sierra2_4a diff", partial(encode_ffmpeg, args.ffmpeg, clip)))
        targets = [folder / f"out{index}.gif" for index in range(len(encoders))]
        runs = [partial(encode, target) for (_, encode), target in zip(encoders, targets, strict=True)]
        seconds = timed_side_by_side(runs, args.repeat)
        return [
            measure(name, clip, target.read_bytes(), took)
            for (name, _), target, took in zip(encoders, targets, seconds, strict=True)
        ]


# --------------------------------------------------------------------------- report


def table(clip: Clip, results: list[Result]) -> str:
    height, width = clip.frames[0].shape[:2]
    lines = [
        f"### {clip.name} ({width}x{height}, {len(clip.frames)} frames, {clip.fps:.2f} fps)",
        "",
        "| encoder | size (KiB) | bit/px | time (s) | PSNR mean (dB) | PSNR min (dB) | SSIM mean | added flicker |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        short = "" if r.frames == len(clip.frames) else f" ({r.frames} frames!)"
        lines.append(
            f"| {r.encoder}{short} | {r.size / 1024:.1f} | {r.size * 8 / clip.pixels:.2f} | {r.seconds:.2f} | "
            f"{r.psnr_mean:.2f} | {r.psnr_min:.2f} | {r.ssim_mean:.4f} | {r.added_flicker:+.3f} |"
        )
    return "\n".join(lines)


def targets(rows: list[tuple[Clip, list[Result]]]) -> str:
    """gifstream's default against gifski q90 on every clip."""
    lines = [
        "| clip | PSNR vs gifski q90 (dB) | size vs gifski q90 | speed-up | flicker vs gifski q90 | all met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for clip, results in rows:
        by_name = {r.encoder: r for r in results}
        ours, theirs = by_name.get("gifstream default"), by_name.get("gifski q90")
        if ours is None or theirs is None:
            continue
        gain = ours.psnr_mean - theirs.psnr_mean
        size = ours.size / theirs.size
        speed = theirs.seconds / ours.seconds
        flicker = ours.added_flicker - theirs.added_flicker
        met = gain >= 0 and size <= 1 and speed >= 3 and flicker <= 0
        lines.append(
            f"| {clip.name} | {gain:+.2f} | {size:.2f}x | {speed:.1f}x | {flicker:+.4f} | {'yes' if met else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--testdata", type=Path, default=TESTDATA, help="folder holding video/ (default ../shared/testdata)"
    )
    parser.add_argument("--clips", nargs="*", default=[], help="only clips whose file name contains one of these")
    parser.add_argument("--frames", type=int, default=MAX_FRAMES, help="frames per clip (default 120)")
    parser.add_argument("--max-side", type=int, default=MAX_SIDE, help="shrink to this long side (default 320)")
    parser.add_argument("--encoders", nargs="*", default=["gifstream", "gifski", "ffmpeg"])
    extra = "extra gifstream GifOptions to compare, e.g. quality=85,dither=ordered ('none' for none)"
    parser.add_argument("--setting", action="append", help=extra)
    parser.add_argument("--gifski", default=shutil.which("gifski"), help="gifski binary (default: on PATH)")
    parser.add_argument("--ffmpeg", default=shutil.which("ffmpeg"), help="ffmpeg binary (default: on PATH)")
    parser.add_argument("--repeat", type=int, default=3, help="encode time is the best of this many runs (default 3)")
    args = parser.parse_args()

    folder = args.testdata / "video"
    if not folder.is_dir():
        print(f"no clips: {folder} does not exist", file=sys.stderr)
        return 2
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    if args.clips:
        paths = [p for p in paths if any(part in p.name for part in args.clips)]
    texts = args.setting or DEFAULT_SETTINGS
    settings = [parse_setting(text) for text in texts if text != "none"]
    for missing in ("gifski", "ffmpeg"):
        if missing in args.encoders and not getattr(args, missing):
            print(f"note: {missing} not found; pass --{missing} PATH to compare with it", file=sys.stderr)

    print("## GIF encoders on real clips\n")
    print(f"command: `{shlex.join(['./run', 'bench', 'gif_quality.py', *sys.argv[1:]])}`\n")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at start), "
        f"Python {platform.python_version()}; gifstream GifOptions() = {GifOptions()}; "
        f"first {args.frames} frames, long side <= {args.max_side} px; times are the best of {args.repeat} runs\n"
    )
    rows = []
    for path in paths:
        clip = load_clip(path, args.frames, args.max_side)
        results = run_clip(clip, args, settings)
        rows.append((clip, results))
        print(table(clip, results), "\n", flush=True)
    print("### gifstream default against gifski q90\n")
    print(targets(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
