"""Flicker of per-frame restoration, before and after temporal stabilisation.

Takes clean real sequences (the animated face GIFs and the video clips of
../shared/testdata), shrinks them to at most 256 px a side and 60 frames,
and injects the flicker per-frame restoration adds (seeded): random
per-frame brightness, contrast and colour shifts, per-frame noise and
sharpening changes on a central "face" region, and 1-px crop jitter. The
clean frames play the *input* (the flow is measured on them, as the flow
stage does in a pipeline); the flickered ones play the *restored* output.
Reported per clip: E_warp (Lai et al. 2018, input flow and occlusion mask)
of the flickered and the stabilised frames, and PSNR/SSIM of each against
the clean frames. A synthetic sequence with a fast pan and a hard cut
checks that nothing smears or ghosts.

    ./run bench flicker.py                             # default settings
    ./run bench flicker.py --strength 0.75 --sigma 16  # other settings
    ./run bench flicker.py --sweep                     # mean results over a strength x sigma grid (slow)

Targets: E_warp down by at least 30 % on every clip, PSNR against clean not
down by more than 0.5 dB (it should rise); after the cut, PSNR within 0.5 dB
of the unstabilised frame.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from common import shrink

from gifstream.io import open_source
from gifstream.metrics import psnr, ssim, warp_error_pair
from gifstream.motion import DisFlow
from gifstream.stabilize import StabilizeConfig, stabilize_frame

# ../shared/testdata beside the checkout, or $GIFSTREAM_SHARED/testdata, as the tests find it.
TESTDATA = Path(os.environ.get("GIFSTREAM_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "testdata"
MAX_SIDE = 256
MAX_FRAMES = 60
FLOW_PRESET = "medium"  # the flow stage's default (--flow dis)

Flows = tuple[np.ndarray, np.ndarray]


# --------------------------------------------------------------------------- inputs


def clip_paths(testdata: Path) -> list[Path]:
    return sorted((testdata / "faces-animated").glob("*.gif")) + sorted((testdata / "video").iterdir())


def load_clip(path: Path, max_side: int = MAX_SIDE, max_frames: int = MAX_FRAMES) -> list[np.ndarray]:
    """The first ``max_frames`` frames of ``path`` as decoded by gifstream, shrunk to ``max_side``."""
    source = open_source(path)
    try:
        source.open()
        return [shrink(frame.as_array(), max_side) for frame in itertools.islice(source.frames(), max_frames)]
    finally:
        source.close()


def face_mask(height: int, width: int) -> np.ndarray:
    """(H, W, 1) float32 soft ellipse over the central half of the frame, where a face would be restored."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    r = ((xs - width / 2) / (width / 4)) ** 2 + ((ys - height / 2) / (height / 4)) ** 2
    return np.clip(1.5 - r, 0.0, 1.0)[..., None]


def jitter(frame: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``frame`` shifted by (dx, dy) pixels with its edges repeated: a paste-back off by a pixel."""
    padded = cv2.copyMakeBorder(frame, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    height, width = frame.shape[:2]
    return np.ascontiguousarray(padded[1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width])


def flicker_frame(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One frame with restoration-like flicker drawn from ``rng``."""
    image = frame.astype(np.float32)
    mask = face_mask(*frame.shape[:2])
    blurred = cv2.GaussianBlur(image, (0, 0), 1.0)
    sharpened = image + rng.uniform(0.0, 1.0) * (image - blurred)
    noise = rng.normal(0.0, rng.uniform(1.0, 4.0), image.shape).astype(np.float32)
    image = image + mask * (sharpened - image + noise)
    gain = 1.0 + rng.uniform(-0.06, 0.06)
    offset = rng.uniform(-6.0, 6.0) + rng.uniform(-4.0, 4.0, 3)
    image = (image - 128.0) * gain + 128.0 + offset.astype(np.float32)
    flickered = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    dx, dy = (int(v) for v in rng.integers(-1, 2, 2))
    return jitter(flickered, dx, dy)


def inject_flicker(frames: Sequence[np.ndarray], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [flicker_frame(frame, rng) for frame in frames]


def input_flows(frames: Sequence[np.ndarray]) -> list[Flows | None]:
    """(F(t−1→t), B(t→t−1)) per frame on the clean input, None for the first, as the flow stage gives them."""
    estimator = DisFlow(FLOW_PRESET)
    earlier, later = list(frames[:-1]), list(frames[1:])
    pairs = zip(estimator.pairs(earlier, later), estimator.pairs(later, earlier), strict=True)
    return [None, *pairs]


# --------------------------------------------------------------------------- the stabiliser and the metrics


@dataclass(frozen=True, slots=True)
class RunResult:
    frames: list[np.ndarray]
    cuts: list[int]
    mean_blend: float


def stabilize(
    inputs: Sequence[np.ndarray], restored: Sequence[np.ndarray], flows: Sequence[Flows | None], config: StabilizeConfig
) -> RunResult:
    """The stabiliser over a whole sequence, each output fed back as the next frame's previous one."""
    outputs: list[np.ndarray] = []
    cuts: list[int] = []
    blends: list[float] = []
    for index, (frame_in, frame_restored, flow) in enumerate(zip(inputs, restored, flows, strict=True)):
        previous_out = outputs[-1] if outputs else None
        previous_in = inputs[index - 1] if index else None
        result = stabilize_frame(frame_restored, previous_out, previous_in, frame_in, flow, config)
        outputs.append(result.pixels)
        blends.append(result.blend)
        if result.cut:
            cuts.append(index)
    return RunResult(outputs, cuts, float(np.mean(blends)))


@dataclass(frozen=True, slots=True)
class Scores:
    e_warp: float  # mean E_warp over consecutive pairs (x 1e3, frames in [0, 1])
    psnr: float  # mean PSNR against the clean frames, dB
    ssim: float


def score(clean: Sequence[np.ndarray], frames: Sequence[np.ndarray], flows: Sequence[Flows | None]) -> Scores:
    e_warps = [
        warp_error_pair(clean[i - 1], clean[i], frames[i - 1], frames[i], *flow).output
        for i, flow in enumerate(flows)
        if flow is not None
    ]
    return Scores(
        e_warp=1e3 * float(np.nanmean(e_warps)),
        psnr=float(np.mean([psnr(c, f) for c, f in zip(clean, frames, strict=True)])),
        ssim=float(np.mean([ssim(c, f) for c, f in zip(clean, frames, strict=True)])),
    )


@dataclass(frozen=True, slots=True)
class Clip:
    name: str
    clean: list[np.ndarray]
    flickered: list[np.ndarray]
    flows: list[Flows | None]


def prepared_clips(testdata: Path, seed: int) -> Iterator[Clip]:
    for index, path in enumerate(clip_paths(testdata)):
        clean = load_clip(path)
        yield Clip(path.name, clean, inject_flicker(clean, seed + index), input_flows(clean))


# --------------------------------------------------------------------------- synthetic pan + cut


def texture(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random colour texture (every patch distinct, so flow is well defined)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255
    return np.rint(smooth).astype(np.uint8)


def pan_then_cut(
    pan_frames: int = 12, after_cut: int = 6, speed: int = 9, size: tuple[int, int] = (128, 160)
) -> tuple[list[np.ndarray], int]:
    """A scene panning ``speed`` px/frame to the right, then a hard cut to a different static scene.

    Returns (frames, index of the first frame after the cut).
    """
    height, width = size
    first = texture(height, width + speed * pan_frames, seed=11)
    second = texture(height, width, seed=12)
    frames = [
        np.ascontiguousarray(first[:, speed * (pan_frames - i) : speed * (pan_frames - i) + width])
        for i in range(pan_frames)
    ]
    frames += [second.copy() for _ in range(after_cut)]
    return frames, pan_frames


# --------------------------------------------------------------------------- report


def unflickered_psnr(clip: Clip, config: StabilizeConfig) -> float:
    """Worst PSNR against clean when the restored frames *are* the clean ones: what blending costs real motion.

    Every frame after the first is scored (the first is never blended); infinity means untouched.
    """
    frames = stabilize(clip.clean, clip.clean, clip.flows, config).frames
    return min(psnr(c, f) for c, f in zip(clip.clean[1:], frames[1:], strict=True))


def clip_row(clip: Clip, config: StabilizeConfig) -> dict[str, object]:
    run = stabilize(clip.clean, clip.flickered, clip.flows, config)
    before = score(clip.clean, clip.flickered, clip.flows)
    after = score(clip.clean, run.frames, clip.flows)
    return {
        "unflickered": unflickered_psnr(clip, config),
        "clip": clip.name,
        "size": f"{clip.clean[0].shape[1]}x{clip.clean[0].shape[0]}x{len(clip.clean)}",
        "before": before,
        "after": after,
        "reduction": 1.0 - after.e_warp / before.e_warp,
        "cuts": run.cuts,
        "blend": run.mean_blend,
    }


def print_clip_table(rows: list[dict[str, object]]) -> None:
    print(
        "| clip | frames | E_warp flickered | E_warp stabilised | reduction | PSNR flickered | PSNR stabilised "
        "| SSIM flickered | SSIM stabilised | mean blend | cuts | worst PSNR without flicker |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        b, a = row["before"], row["after"]
        assert isinstance(b, Scores) and isinstance(a, Scores)
        print(
            f"| {row['clip']} | {row['size']} | {b.e_warp:.3f} | {a.e_warp:.3f} | {row['reduction']:.0%} "
            f"| {b.psnr:.2f} | {a.psnr:.2f} | {b.ssim:.4f} | {a.ssim:.4f} | {row['blend']:.2f} | {len(row['cuts'])} "  # type: ignore[arg-type]
            f"| {row['unflickered']:.2f} |"
        )


def synthetic_report(config: StabilizeConfig, seed: int) -> dict[str, float | list[int]]:
    clean, cut_at = pan_then_cut()
    flickered = inject_flicker(clean, seed)
    flows = input_flows(clean)
    run = stabilize(clean, flickered, flows, config)
    pan = slice(1, cut_at)
    return {
        "cuts": run.cuts,
        "cut_psnr_plain": psnr(clean[cut_at], flickered[cut_at]),
        "cut_psnr_stable": psnr(clean[cut_at], run.frames[cut_at]),
        "pan_psnr_plain": float(np.mean([psnr(c, f) for c, f in zip(clean[pan], flickered[pan], strict=True)])),
        "pan_psnr_stable": float(np.mean([psnr(c, f) for c, f in zip(clean[pan], run.frames[pan], strict=True)])),
    }


def print_synthetic(result: dict[str, float | list[int]], cut_at: int) -> None:
    print(
        f"\nSynthetic 160x128: 12 frames panning 9 px/frame, hard cut at frame {cut_at}; cuts detected at "
        f"{result['cuts']}"
    )
    print("| frames | PSNR unstabilised | PSNR stabilised | difference |")
    print("|---|---|---|---|")
    for label, key in (("first after the cut", "cut"), ("fast pan (mean)", "pan")):
        plain, stable = result[f"{key}_psnr_plain"], result[f"{key}_psnr_stable"]
        assert isinstance(plain, float) and isinstance(stable, float)
        print(f"| {label} | {plain:.2f} | {stable:.2f} | {stable - plain:+.2f} dB |")


def sweep(clips: list[Clip], strengths: list[float], sigmas: list[float], cut_threshold: float) -> None:
    print(
        "| strength | sigma | mean E_warp reduction | min reduction | mean ΔPSNR dB | min ΔPSNR dB | mean ΔSSIM "
        "| worst PSNR without flicker |"
    )
    print("|---|---|---|---|---|---|---|---|")
    before = [score(c.clean, c.flickered, c.flows) for c in clips]
    for strength, sigma in itertools.product(strengths, sigmas):
        config = StabilizeConfig(strength=strength, sigma=sigma, cut_threshold=cut_threshold)
        after = [score(c.clean, stabilize(c.clean, c.flickered, c.flows, config).frames, c.flows) for c in clips]
        reductions = [1 - a.e_warp / b.e_warp for a, b in zip(after, before, strict=True)]
        gains = [a.psnr - b.psnr for a, b in zip(after, before, strict=True)]
        ssim_gain = np.mean([a.ssim - b.ssim for a, b in zip(after, before, strict=True)])
        harm = min(unflickered_psnr(c, config) for c in clips)
        print(
            f"| {strength:.2f} | {sigma:g} | {np.mean(reductions):.0%} | {min(reductions):.0%} "
            f"| {np.mean(gains):+.2f} | {min(gains):+.2f} | {ssim_gain:+.4f} | {harm:.2f} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = StabilizeConfig()
    parser.add_argument("--strength", type=float, default=defaults.strength)
    parser.add_argument("--sigma", type=float, default=defaults.sigma)
    parser.add_argument("--cut-threshold", type=float, default=defaults.cut_threshold)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--testdata", type=Path, default=TESTDATA)
    parser.add_argument("--sweep", action="store_true", help="mean results over a strength x sigma grid (slow)")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.45, 0.6, 0.75], help="grid for --sweep")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[8, 16, 32], help="grid for --sweep")
    args = parser.parse_args()
    if not args.testdata.is_dir():
        print(f"test data not found at {args.testdata} (pass --testdata)", file=sys.stderr)
        return 2
    config = StabilizeConfig(strength=args.strength, sigma=args.sigma, cut_threshold=args.cut_threshold)
    started = time.perf_counter()
    clips = list(prepared_clips(args.testdata, args.seed))
    print(f"command: {' '.join(['./run bench flicker.py', *sys.argv[1:]])}")
    print(
        f"machine: {platform.machine()}, Python {platform.python_version()}; flow DIS {FLOW_PRESET} on the clean "
        f"frames; at most {MAX_SIDE} px a side and {MAX_FRAMES} frames; seed {args.seed}"
    )
    if args.sweep:
        sweep(clips, args.strengths, args.sigmas, args.cut_threshold)
    else:
        print(
            f"settings: strength {config.strength}, sigma {config.sigma}, cut threshold {config.cut_threshold}; "
            "E_warp x 1e3"
        )
        print_clip_table([clip_row(clip, config) for clip in clips])
        print_synthetic(synthetic_report(config, args.seed), pan_then_cut()[1])
    print(f"\n({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
