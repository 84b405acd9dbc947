"""``gifstream bench``: gifstream against the seed notebook's way of doing the same job, side by side.

One run measures both on the same input, with the same models, each in a
fresh process (so each peak RSS is its own):

- the seed notebook, re-implemented faithfully in ``bench/seed_baseline.py``
  (extract every frame to PNG, restore the folder, flow and warp with every
  tensor in lists, write the GIF, then a separate metrics pass);
- gifstream's streaming pipeline (decode → restore → flow → metrics → GIF);
- every gifstream stage alone on the first frames (its isolated throughput),
  to find the slowest stage and how close the pipeline comes to it;
- both output GIFs scored against the input with the notebook's own metrics.

Presets: ``offline`` (the classic restorer, DIS flow, PSNR/SSIM/E_warp; no
weights needed) and ``models`` (GFPGAN v1.3 with the Real-ESRGAN x2
background, RAFT large, LPIPS). The models run with random weights saved in
the release formats (the cost of a forward pass does not depend on the
weights); since RetinaFace finds only junk with random weights, both sides
get their faces from :class:`TemplateLandmarks` instead.

The tables are printed as Markdown; ``--json`` keeps every measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .allocator import keep_freed_memory
from .engine import ConfigError, Frame, GifstreamError, RunContext, RunnerConfig, Stage, StreamInfo
from .io import is_gif_file
from .options import ProcessOptions, load_config, parse_size
from .restore.detect import CascadeFaceDetector, FaceDetection

PRESETS = ("offline", "models")
# Default input length and size, and frames for the isolated stage runs, per preset: the offline
# run takes about a minute on a shared 2-core machine, the models run about ten (10 frames, so that
# the pipeline, five parts deep, spends most of the run in its steady state).
DEFAULT_FRAMES = {"offline": 100, "models": 10}
DEFAULT_SIZE = {"offline": (480, 270), "models": (256, 144)}
DEFAULT_ISOLATED = {"offline": 30, "models": 3}
BASELINE_SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "seed_baseline.py"
# Registry names of the weights the models preset needs, and the files the notebook's libraries look for.
MODEL_WEIGHTS = ("gfpgan_v1.3", "realesrgan_x2plus", "retinaface_resnet50", "parsenet", "raft_large", "alexnet")
# Targets this command checks (CPU, the benchmark machine).
TARGET_EFFICIENCY = 0.90
TARGET_SPEEDUP = 2.0
TARGET_LATENCY_FRAMES = 2.0
TARGET_OFFLINE_FPS = 30.0
TARGET_RSS_RATIO = 1.10


# --------------------------------------------------------------------------- command line


def add_bench_parser(subparsers: Any) -> None:
    """Add ``bench`` to the main parser's subparsers; its handler is :func:`run_bench`."""
    cmd = subparsers.add_parser(
        "bench",
        help="measure gifstream against the seed notebook's way on one input, side by side",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument(
        "input",
        nargs="?",
        default=None,
        help="GIF or video to measure on (default: a synthetic face GIF); a video is written as a GIF first, "
        "since the notebook reads GIFs",
    )
    cmd.add_argument("--preset", choices=PRESETS, default="offline", help="offline (default) or models")
    cmd.add_argument("--frames", type=int, default=None, help="input length (an INPUT is cycled or cut to it)")
    cmd.add_argument("--size", type=parse_size, default=None, help="synthetic input size WxH")
    cmd.add_argument("--hold", type=int, default=1, help="synthetic input: show each picture for N frames")
    cmd.add_argument("--isolated-frames", type=int, default=None, help="frames each stage runs on alone")
    cmd.add_argument("--no-baseline", dest="baseline", action="store_false", help="measure gifstream only")
    cmd.add_argument(
        "--lengths", type=int, nargs="+", default=None, help="also measure peak RSS and speed at these input lengths"
    )
    cmd.add_argument(
        "--baseline-max-frames",
        type=int,
        default=1000,
        help="longest input the notebook runs on in --lengths (it keeps every frame in memory; default 1000)",
    )
    cmd.add_argument("--batch", type=int, default=1, help="gifstream's --batch: frames per batch (default 1)")
    cmd.add_argument(
        "--detect-every",
        type=int,
        default=1,
        help="gifstream finds faces every K frames and carries them between (a lever; default 1, every frame)",
    )
    cmd.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="a gifstream process option for the gifstream runs, as in a TOML preset (e.g. flow=dis_fast); repeatable",
    )
    cmd.add_argument(
        "--overlap-first-frame",
        dest="first_frame_alone",
        action="store_false",
        help="let frames follow the first one at once instead of letting it through alone (a lever)",
    )
    cmd.add_argument("--cv-threads", type=int, default=None, help="cv2.setNumThreads for the gifstream runs")
    cmd.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads for the gifstream runs")
    cmd.add_argument(
        "--system-malloc",
        dest="keep_freed_memory",
        action="store_false",
        help="leave glibc's allocator as it is instead of keeping freed memory for reuse as `gifstream` does",
    )
    cmd.add_argument(
        "--thread-arenas",
        dest="one_arena",
        action="store_false",
        help="keep freed memory but leave glibc an arena per thread, which maps blocks over 64 MiB afresh (a lever)",
    )
    cmd.add_argument("--workdir", default=None, help="keep inputs, outputs and weights here (default: a temp folder)")
    cmd.add_argument("--json", default=None, help="also write every measurement to this JSON file")
    cmd.add_argument("--debug", action="store_true", help="show tracebacks")
    cmd.set_defaults(handler=run_bench)


@dataclass(frozen=True)
class Tuning:
    """Process-wide settings tried on the gifstream runs (None: left as the libraries set them)."""

    cv_threads: int | None = None
    torch_threads: int | None = None
    keep_freed_memory: bool = True  # as the gifstream command runs (see gifstream.allocator)
    detect_every: int = 1
    batch: int = 1
    first_frame_alone: bool = True
    overrides: tuple[tuple[str, Any], ...] = ()  # process options laid over the preset's
    one_arena: bool = True  # every thread allocating from glibc's main heap (see gifstream.allocator)

    def describe(self) -> str:
        defaults = dataclasses.asdict(Tuning())
        parts = [f"{k}={v}" for k, v in dataclasses.asdict(self).items() if v != defaults[k]]
        return ", ".join(parts) or "library defaults"


@dataclass(frozen=True)
class BenchPlan:
    """What one ``gifstream bench`` run measures."""

    preset: str
    input: Path | None
    frames: int | None
    size: tuple[int, int]
    hold: int
    isolated_frames: int
    baseline: bool
    lengths: tuple[int, ...]
    baseline_max_frames: int
    tuning: Tuning = field(default_factory=Tuning)


def plan_from_args(args: argparse.Namespace) -> BenchPlan:
    preset = args.preset
    if args.frames is not None and args.frames < 2:
        raise ConfigError(f"--frames must be at least 2 (flow needs pairs), got {args.frames}")
    if args.hold < 1:
        raise ConfigError(f"--hold must be >= 1, got {args.hold}")
    if args.detect_every < 1:
        raise ConfigError(f"--detect-every must be >= 1, got {args.detect_every}")
    if args.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {args.batch}")
    isolated = args.isolated_frames or DEFAULT_ISOLATED[preset]
    if isolated < 2:
        raise ConfigError(f"--isolated-frames must be at least 2, got {isolated}")
    lengths = tuple(args.lengths or ())
    if any(n < 2 for n in lengths):
        raise ConfigError(f"--lengths must all be at least 2, got {' '.join(map(str, lengths))}")
    if args.input is not None and not Path(args.input).is_file():
        raise ConfigError(f"bench input {args.input} is not a file")
    if args.baseline and not BASELINE_SCRIPT.is_file():
        raise ConfigError(
            f"the seed notebook baseline {BASELINE_SCRIPT} is not here (it ships with a source checkout); "
            "pass --no-baseline to measure gifstream alone"
        )
    return BenchPlan(
        preset=preset,
        input=Path(args.input) if args.input else None,
        frames=args.frames if args.input else (args.frames or DEFAULT_FRAMES[preset]),
        size=args.size or DEFAULT_SIZE[preset],
        hold=args.hold,
        isolated_frames=isolated,
        baseline=args.baseline,
        lengths=lengths,
        baseline_max_frames=args.baseline_max_frames,
        tuning=Tuning(
            args.cv_threads,
            args.torch_threads,
            args.keep_freed_memory,
            args.detect_every,
            args.batch,
            args.first_frame_alone,
            parse_overrides(args.overrides),
            args.one_arena,
        ),
    )


def parse_overrides(pairs: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """``OPTION=VALUE`` pairs read as TOML values (a bare word is a string), checked against ProcessOptions."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        if not equals or not name.strip():
            raise ConfigError(f"--set takes OPTION=VALUE, got {pair!r}")
        try:
            value = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            value = text
        overrides[name.strip().replace("-", "_")] = value
    ProcessOptions().merged(overrides, "bench --set")  # unknown options and bad values fail here, not in a worker
    return tuple(overrides.items())


def run_bench(args: argparse.Namespace) -> int:
    """Run the comparison ``args`` describe, print its tables; returns the exit code (0 whatever the targets)."""
    plan = plan_from_args(args)
    with workspace(args.workdir) as work:
        results = measure(plan, work)
    print("\n".join(report_lines(plan, results)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


@contextlib.contextmanager
def workspace(keep: str | None) -> Iterator[Path]:
    if keep is not None:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="gifstream-bench-") as tmp:
        yield Path(tmp)


# --------------------------------------------------------------------------- orchestration


def measure(plan: BenchPlan, work: Path) -> dict[str, Any]:
    """Every measurement of the plan, each in its own process; the raw results by name."""
    progress(f"preparing the {plan.preset} preset in {work}")
    weights = write_random_weights(work / "weights") if plan.preset == "models" else None
    source = prepare_input(plan, work, plan.frames)
    results: dict[str, Any] = {"machine": machine(), "plan": plan_summary(plan, source)}
    spec = {
        "preset": plan.preset,
        "weights": str(weights) if weights else None,
        "tuning": dataclasses.asdict(plan.tuning),
    }
    if plan.baseline:
        progress("the seed notebook's way")
        results["notebook"] = run_notebook(source, work / "notebook", plan.preset, weights)
    progress("gifstream's pipeline")
    results["gifstream"] = run_worker("pipeline", {**spec, "input": str(source), "output": str(work / "out.gif")})
    progress(f"each gifstream stage alone on {plan.isolated_frames} frames")
    results["isolated"] = run_worker("isolated", {**spec, "input": str(source), "frames": plan.isolated_frames})
    if plan.baseline:
        progress("scoring both outputs with the notebook's metrics")
        results["scores"] = {
            "notebook": evaluate(source, Path(results["notebook"]["output"]), plan.preset, weights),
            "gifstream": evaluate(source, work / "out.gif", plan.preset, weights),
        }
    if plan.lengths:
        results["lengths"] = measure_lengths(plan, work, spec, weights)
    return results


def measure_lengths(plan: BenchPlan, work: Path, spec: dict[str, Any], weights: Path | None) -> list[dict[str, Any]]:
    """Peak RSS, throughput and first output of each side at each input length (each in a fresh process)."""
    rows = []
    for count in plan.lengths:
        source = prepare_input(plan, work, count)
        progress(f"{count} frames: gifstream")
        row: dict[str, Any] = {"frames": count, "input_mb": round(source.stat().st_size / 2**20, 1)}
        row["gifstream"] = run_worker(
            "pipeline", {**spec, "input": str(source), "output": str(work / f"out-{count}.gif")}
        )
        if plan.baseline and count <= plan.baseline_max_frames:
            progress(f"{count} frames: the seed notebook's way")
            row["notebook"] = run_notebook(source, work / f"notebook-{count}", plan.preset, weights)
        rows.append(row)
    return rows


def progress(message: str) -> None:
    print(f"gifstream bench: {message} ...", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_description(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# Vector features that change how fast the networks and OpenCV run, widest first.
VECTOR_FEATURES = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


def cpu_description(cpuinfo: str | None = None) -> str:
    """The CPU's model name and its widest vector features (from /proc/cpuinfo), e.g. "AMD EPYC (avx512_bf16,
    avx512f, avx2)": runs on hosts of one name can still differ in these, and the times with them."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return platform.processor() or platform.machine()
    name, flags = "", set[str]()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not name:
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    features = [feature for feature in VECTOR_FEATURES if feature in flags]
    name = name or platform.processor() or platform.machine()
    return f"{name} ({', '.join(features)})" if features else name


def plan_summary(plan: BenchPlan, source: Path) -> dict[str, Any]:
    summary = dataclasses.asdict(plan)
    summary["input"] = str(plan.input) if plan.input else f"synthetic {plan.size[0]}x{plan.size[1]}, hold {plan.hold}"
    summary["input_file"] = str(source)
    return summary


def run_worker(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one gifstream measurement in a fresh interpreter and return its JSON result."""
    with tempfile.TemporaryDirectory(prefix="gifstream-bench-worker-") as tmp:
        spec_file, result_file = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_file.write_text(json.dumps({**spec, "kind": kind}))
        command = [sys.executable, "-m", "gifstream.benchmark", str(spec_file), str(result_file)]
        return run_measurement(command, result_file, f"the gifstream {kind} measurement")


def run_measurement(command: list[str], result_file: Path, what: str) -> dict[str, Any]:
    """Run a measuring process and read the JSON it leaves; its errors go to stderr as they happen."""
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        raise GifstreamError(f"bench: {what} failed (exit {completed.returncode}); its messages are above")
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result


def run_notebook(source: Path, workdir: Path, preset: str, weights: Path | None) -> dict[str, Any]:
    result_file = workdir.with_suffix(".json")
    command = [sys.executable, str(BASELINE_SCRIPT), "run", "--input", str(source), "--workdir", str(workdir)]
    command += ["--preset", preset, "--json", str(result_file)] + (["--weights", str(weights)] if weights else [])
    return run_measurement(command, result_file, "the seed notebook run")


def evaluate(source: Path, output: Path, preset: str, weights: Path | None) -> dict[str, Any]:
    result_file = output.with_suffix(".scores.json")
    command = [sys.executable, str(BASELINE_SCRIPT), "evaluate", "--input", str(source), "--output", str(output)]
    command += ["--preset", preset, "--json", str(result_file)] + (["--weights", str(weights)] if weights else [])
    return run_measurement(command, result_file, f"scoring {output.name}")


# --------------------------------------------------------------------------- inputs


def prepare_input(plan: BenchPlan, work: Path, count: int | None) -> Path:
    """The GIF to measure on: the given one (cycled or cut to ``count`` frames), or a synthetic one.

    A video (or any input not a GIF) is written as a GIF first, all its frames
    or ``count`` of them: the notebook reads GIFs only, and both sides must
    measure on the same frames.
    """
    if plan.input is not None and count is None and is_gif_file(plan.input):
        return plan.input
    if plan.input is not None:
        name = f"input-{'all' if count is None else count}.gif"
    else:
        name = f"synthetic-{plan.size[0]}x{plan.size[1]}-{count}-hold{plan.hold}.gif"
    path = work / name
    if not path.exists():
        progress(f"writing the {'' if count is None else f'{count}-frame '}input {path.name}")
        if plan.input is not None:
            frames = cycled_frames(plan.input, count)
        else:
            assert count is not None  # the plan gives a synthetic input its length
            frames = synthetic_frames(count, plan.size, plan.hold)
        write_gif(path, frames, count)
    return path


def synthetic_frames(count: int, size: tuple[int, int], hold: int = 1, seed: int = 0) -> Iterator[Frame]:
    """A slow pan and zoom over the astronaut's face (a real face, found by the cascade), with grain.

    Every picture differs from the one before (the grain alone would see to
    that); with ``hold`` > 1 each picture is shown for that many frames, as
    hand-made GIFs often hold theirs.
    """
    from PIL import Image
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    width, height = size
    rng = np.random.default_rng(seed)
    pixels = np.zeros((height, width, 3), np.uint8)
    for index in range(count):
        if index % hold == 0:
            view = photo.resize(size, Image.Resampling.BILINEAR, box=pan_box(index // hold, width / height))
            grain = rng.integers(-5, 6, (height, width, 3), dtype=np.int16)
            pixels = np.clip(np.asarray(view, np.int16) + grain, 0, 255).astype(np.uint8)
        yield Frame(index, pixels.copy(), duration_ms=80.0)


def pan_box(step: int, aspect: float) -> tuple[float, float, float, float]:
    """The part of the 512² photo shown at ``step``: around the face, drifting and zooming on a 200-step loop."""
    phase = 2 * np.pi * step / 200
    box_height = 260 + 40 * np.sin(phase)
    box_width = min(box_height * aspect, 512)
    cx, cy = 230 + 25 * np.cos(phase), 150 + 15 * np.sin(2 * phase)
    left = float(np.clip(cx - box_width / 2, 0, 512 - box_width))
    top = float(np.clip(cy - box_height / 2, 0, 512 - box_height))
    return left, top, left + box_width, top + box_height


def cycled_frames(path: Path, count: int | None) -> Iterator[Frame]:
    """The frames of the GIF or video at ``path``, from the start again as often as needed, ``count`` in all.

    ``count`` None: each frame once.
    """
    from .io import open_source

    produced = 0
    while count is None or produced < count:
        produced_before = produced
        source = open_source(path)
        source.open()
        try:
            for frame in source.frames():
                yield Frame(produced, frame.pixels, duration_ms=frame.duration_ms or 80.0)
                produced += 1
                if produced == count:
                    return
        finally:
            source.close()
        if produced == produced_before:
            raise ConfigError(f"bench input {path} has no frames")
        if count is None:
            return


def write_gif(path: Path, frames: Iterator[Frame], count: int | None) -> None:
    from .io.gif import GifOptions, GifSink

    # Quality 100: a picture held over several frames must decode to identical frames, as in hand-made GIFs
    # (below 100 the encoder refines a held picture on its second frame, which the reuse levers would not see).
    sink = GifSink(path, GifOptions(quality=100), overwrite=True)
    first = next(frames)
    sink.open(StreamInfo(width=first.width, height=first.height, format="gif", loop=0, frame_count=count))
    try:
        sink.write(first)
        for frame in frames:
            sink.write(frame)
    except BaseException:
        sink.abort()
        raise
    sink.finish()


# --------------------------------------------------------------------------- weights and detections


def write_random_weights(folder: Path) -> Path:
    """Randomly initialised checkpoints of every model the models preset uses, in the release formats.

    Files get their release names in ``folder`` (which is where both the
    notebook's libraries and gifstream's registry, given ``weights_dir``,
    look); a manifest records each registry name's file, size and SHA-256.
    Returns the folder. Made once per folder and reused.
    """
    manifest = folder / "manifest.json"
    if manifest.exists():
        return folder
    import torch

    from .weights import get_entry

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    entries = {}
    for name in MODEL_WEIGHTS:
        entry = get_entry(name)
        path = folder / entry.filename
        torch.save(random_state(name), path)
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        entries[name] = {"file": entry.filename, "size": path.stat().st_size, "sha256": digest}
    manifest.write_text(json.dumps(entries, indent=2))
    return folder


def random_state(name: str) -> dict[str, Any]:
    """A random-weight state dict of the network behind registry entry ``name``, wrapped as its release file is."""
    from .restore.compat import install_torchvision_shim

    install_torchvision_shim()
    if name == "gfpgan_v1.3":
        from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean

        from .restore.gfpgan import GFPGAN_CLEAN_ARCH

        return {"params_ema": GFPGANv1Clean(**GFPGAN_CLEAN_ARCH).state_dict()}
    if name == "realesrgan_x2plus":
        from basicsr.archs.rrdbnet_arch import RRDBNet

        from .restore.gfpgan import REALESRGAN_X2PLUS_ARCH

        return {"params_ema": RRDBNet(**REALESRGAN_X2PLUS_ARCH).state_dict()}
    if name == "retinaface_resnet50":
        from facexlib.detection.retinaface import RetinaFace

        return dict(RetinaFace(network_name="resnet50", device="cpu").state_dict())
    if name == "parsenet":
        from facexlib.parsing.parsenet import ParseNet

        return dict(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict())
    from torchvision.models import alexnet
    from torchvision.models.optical_flow import raft_large

    network = raft_large(weights=None) if name == "raft_large" else alexnet(weights=None)
    return dict(network.state_dict())


@contextlib.contextmanager
def random_weights_registry(folder: Path) -> Iterator[None]:
    """The weights registry pointing at the random files of ``folder`` (their sizes and SHA-256) for a block."""
    from .weights import get_entry, override_registry

    manifest = json.loads((folder / "manifest.json").read_text())
    entries = {
        name: dataclasses.replace(get_entry(name), size=item["size"], sha256=item["sha256"])
        for name, item in manifest.items()
    }
    with override_registry(entries):
        yield


# Five-point landmarks (facexlib's order: eyes, nose tip, mouth corners) as fractions of a frontal-face
# box of the LBP cascade, which spans about brows to mouth.
BOX_LANDMARKS = np.array([[0.30, 0.38], [0.70, 0.38], [0.50, 0.60], [0.35, 0.80], [0.65, 0.80]], np.float32)


class TemplateLandmarks:
    """Faces from scikit-image's LBP cascade, each given five landmarks placed by a template in its box.

    Stands in for RetinaFace when its weights are random (it would report
    about a hundred junk faces a frame): both sides of a benchmark then
    align, restore and paste back the same real faces.
    """

    def __init__(self) -> None:
        self.cascade = CascadeFaceDetector()

    def __call__(self, frames: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        return [[with_landmarks(face) for face in faces] for faces in self.cascade(frames)]


def with_landmarks(face: FaceDetection) -> FaceDetection:
    x0, y0, x1, y1 = face.box
    marks = BOX_LANDMARKS * np.array([x1 - x0, y1 - y0], np.float32) + np.array([x0, y0], np.float32)
    return FaceDetection(face.box, marks, face.score)


def retinaface_rows(faces: Sequence[FaceDetection]) -> np.ndarray:
    """Detections as facexlib's RetinaFace returns them: rows of box, score and ten landmark coordinates."""
    rows = [np.concatenate([face.box, [face.score], np.ravel(face.landmarks)]) for face in faces]
    return np.array(rows, np.float32).reshape(len(rows), 15)


# --------------------------------------------------------------------------- the gifstream side (worker processes)


def preset_options(spec: dict[str, Any]) -> ProcessOptions:
    """The options of a preset: ``offline`` is configs/offline.toml; ``models`` uses the notebook's models."""
    tuning = spec.get("tuning") or {}
    batch = tuning.get("batch", 1)
    overrides = dict(tuning.get("overrides") or ())
    if spec["preset"] == "offline":
        offline = ProcessOptions().merged(load_config("offline"), "config offline")
        return offline.replace(device="cpu", quiet=True, batch=batch).merged(overrides, "bench --set")
    return ProcessOptions(
        restorer="gfpgan",
        scale=2,
        flow="raft_large",
        metrics=("psnr", "ssim", "lpips", "e_warp"),
        weights_dir=spec.get("weights"),
        device="cpu",
        quiet=True,
        batch=batch,
    ).merged(overrides, "bench --set")


def gifstream_stages(options: ProcessOptions, preset: str, detect_every: int = 1) -> list[Stage]:
    """The stages ``gifstream process`` builds for ``options``.

    In the models preset faces come from :class:`TemplateLandmarks`; with
    ``detect_every`` > 1 the restorer's detector runs on every k-th frame only.
    """
    from .api import build_stages
    from .restore.tracking import EveryKDetector
    from .stages.restore import RestoreStage

    stages = build_stages(options)
    for stage in stages:
        if not isinstance(stage, RestoreStage):
            continue
        detector: Any = TemplateLandmarks() if preset == "models" else None
        if detect_every > 1:
            detector = EveryKDetector(detector or CascadeFaceDetector(), detect_every)
        if detector is not None:
            stage.config = dataclasses.replace(stage.config, detector=detector)
    return stages


@dataclass
class TimedSetup:
    """A stage as it is, with the time its set-up took recorded (set-up is not per-frame work)."""

    stage: Stage
    setup_s: float = 0.0

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def max_batch(self) -> int:
        return self.stage.max_batch

    @property
    def needs_previous(self) -> bool:
        return self.stage.needs_previous

    async def setup(self, ctx: RunContext) -> None:
        started = time.perf_counter()
        await self.stage.setup(ctx)
        self.setup_s = time.perf_counter() - started

    async def process(self, batch: Sequence[Frame], previous: Frame | None) -> list[Frame]:
        return await self.stage.process(batch, previous)

    async def close(self) -> None:
        await self.stage.close()


async def run_pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    """gifstream's pipeline on the input, as ``gifstream process`` composes it, with its timing and memory."""
    from .engine import run
    from .io import Limits, open_sink, open_source
    from .io.gif import GifOptions

    options = preset_options(spec)
    detect_every = (spec.get("tuning") or {}).get("detect_every", 1)
    stages = [TimedSetup(stage) for stage in gifstream_stages(options, spec["preset"], detect_every)]
    source = open_source(spec["input"], limits=Limits())
    gif = GifOptions(colors=options.gif_colors, dither=options.gif_dither, palette=options.gif_palette)
    sink = open_sink(spec["output"], format="gif", overwrite=True, gif_options=gif)
    written: list[float] = []
    cpu_started = cpu_seconds()
    started = time.perf_counter()
    stats = await run(
        source,
        stages,
        sink,
        RunContext(device="cpu", options={"quiet": True}),
        RunnerConfig(
            queue_depth=options.queue_depth,
            batch_size=options.batch,
            first_frame_alone=(spec.get("tuning") or {}).get("first_frame_alone", True),
        ),
        on_frame=lambda frame: written.append(time.perf_counter() - started),
    )
    total = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_started
    setup = sum(stage.setup_s for stage in stages)
    steady = (len(written) - 1) / (written[-1] - written[0]) if len(written) > 1 and written[-1] > written[0] else None
    return {
        "side": "gifstream",
        "frames": len(written),
        "total_s": round(total, 3),
        "frames_per_s": round(len(written) / total, 4),
        "steady_frames_per_s": round(steady, 4) if steady else None,
        "first_output_s": round(written[0], 4) if written else None,
        "setup_s": round(setup, 4),
        "setup_by_stage_s": {stage.name: round(stage.setup_s, 4) for stage in stages},
        "first_output_after_setup_s": round(written[0] - setup, 4) if written else None,
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_frame": round(1000 * cpu / max(len(written), 1), 3),
        "cpu_utilisation": round(cpu / total, 3) if total > 0 else None,
        "runner": stats.as_dict(),
        "metrics": metric_means(stages),
        "arithmetic": restorer_arithmetic(stages),
        "peak_rss_mb": peak_rss_mb(),
    }


def restorer_arithmetic(stages: Sequence[TimedSetup]) -> dict[str, str]:
    """The restorer's precision and convolutions as it ran them (they depend on the CPU), where it reports them."""
    for timed in stages:
        if timed.stage.name == "restore":
            details = timed.stage.describe()  # type: ignore[attr-defined]
            return {key: str(details[key]) for key in ("precision", "convolutions") if key in details}
    return {}


def metric_means(stages: Sequence[TimedSetup]) -> dict[str, float | None]:
    for timed in stages:
        describe = getattr(timed.stage, "describe", None)
        if describe is not None and timed.stage.name == "metrics":
            return {name: values["mean"] for name, values in describe()["summary"].items()}
    return {}


async def run_isolated(spec: dict[str, Any]) -> dict[str, Any]:
    """Each part of the pipeline alone, one after the other, on the first frames: decode, every stage, encode.

    Each stage gets the frames the one before it produced, one at a time
    with the previous frame, as in the pipeline; nothing else runs at the
    same time. The first frame's time is kept apart (first calls warm up).
    """
    from .io import open_sink, open_source

    options = preset_options(spec)
    source = open_source(spec["input"])
    info = source.open()
    frames, decode_times = decode_timed(source, spec["frames"])
    parts = [decode_times.summary()]
    ctx = RunContext(device="cpu", info=info, options={"quiet": True})
    detect_every = (spec.get("tuning") or {}).get("detect_every", 1)
    for stage in gifstream_stages(options, spec["preset"], detect_every):
        parts.append(await stage_times(stage, frames, ctx, options.batch))
    encode_times = PartTimes("encode")
    with tempfile.TemporaryDirectory() as tmp:
        sink = open_sink(Path(tmp) / "isolated.gif", format="gif", overwrite=True)
        sink.open(info)
        encode_timed(sink, frames, encode_times)
    parts.append(encode_times.summary())
    return {"frames": len(frames), "parts": parts, "peak_rss_mb": peak_rss_mb()}


def encode_timed(sink: Any, frames: list[Frame], times: PartTimes) -> None:
    """Write ``frames`` to an opened ``sink`` and finish it, timing each frame's encoding.

    A sink that holds frames back (the GIF sink's one frame of lookahead)
    encodes frame i when frame i + held arrives, and the last ones at
    finish: the writes are grouped so each measurement covers one frame's
    encoding, the first one (with its warm-up) kept first.
    """
    held = min(getattr(sink, "frames_held", 0), max(len(frames) - 1, 0))
    with times.frame():
        for frame in frames[: held + 1]:
            sink.write(frame)
    for frame in frames[held + 1 :]:
        with times.frame():
            sink.write(frame)
    with times.frame():
        sink.finish()
    if held == 0:
        # Nothing was held back: finishing wrote only the trailer, which belongs to the last frame.
        times.merge_last_two()


@dataclass
class PartTimes:
    """Wall and CPU seconds of each frame through one part of the pipeline."""

    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    page_faults: list[float] = field(default_factory=list)

    @contextlib.contextmanager
    def frame(self) -> Iterator[None]:
        wall, cpu, faults = time.perf_counter(), cpu_seconds(), minor_page_faults()
        yield
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(cpu_seconds() - cpu)
        self.page_faults.append(minor_page_faults() - faults)

    def spread_last(self, frames: int) -> None:
        """The last measurement covered ``frames`` frames: record it as that many equal per-frame ones."""
        for series in (self.wall, self.cpu, self.page_faults):
            share = series.pop() / frames
            series.extend([share] * frames)

    def merge_last_two(self) -> None:
        """Count the last two measurements as one frame's."""
        for series in (self.wall, self.cpu, self.page_faults):
            last = series.pop()
            series[-1] += last

    def summary(self) -> dict[str, Any]:
        """The first frame (warm-up) apart; the mean of the rest as the part's steady cost."""
        steady = slice(1, None) if len(self.wall) > 2 else slice(None)
        mean = float(np.mean(self.wall[steady]))
        return {
            "name": self.name,
            "frames": len(self.wall),
            "first_frame_s": round(self.wall[0], 5),
            "mean_s": round(mean, 5),
            "cpu_mean_s": round(float(np.mean(self.cpu[steady])), 5),
            "page_faults_mean": round(float(np.mean(self.page_faults[steady])), 1),
            "frames_per_s": round(1 / mean, 3) if mean > 0 else None,
        }


def cpu_seconds() -> float:
    """CPU time of the whole process (every thread), user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def minor_page_faults() -> int:
    """Pages the process has touched for the first time so far (each one a trap to the kernel)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def decode_timed(source: Any, count: int) -> tuple[list[Frame], PartTimes]:
    frames: list[Frame] = []
    times = PartTimes("decode")
    iterator = source.frames()
    while len(frames) < count:
        with times.frame():
            frame = next(iterator, None)
        if frame is None:
            times.wall.pop()
            times.cpu.pop()
            times.page_faults.pop()
            break
        frames.append(frame)
    source.close()
    return frames, times


async def stage_times(stage: Stage, frames: list[Frame], ctx: RunContext, batch: int = 1) -> dict[str, Any]:
    """One stage alone over ``frames``, in batches as the runner would form them; per-frame times."""
    started = time.perf_counter()
    await stage.setup(ctx)
    setup = time.perf_counter() - started
    size = min(batch, stage.max_batch)
    times = PartTimes(stage.name)
    previous: Frame | None = None
    try:
        for start in range(0, len(frames), size):
            chunk = frames[start : start + size]
            with times.frame():
                done = await stage.process(chunk, previous if stage.needs_previous else None)
            times.spread_last(len(chunk))
            previous = dataclasses.replace(done[-1], meta=dict(done[-1].meta))  # the snapshot the runner passes on
    finally:
        await stage.close()
    return {**times.summary(), "setup_s": round(setup, 4)}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def apply_tuning(tuning: dict[str, Any]) -> None:
    """Process-wide settings for this worker, before any work."""
    if tuning.get("keep_freed_memory", True) and not keep_freed_memory(tuning.get("one_arena", True)):
        raise ConfigError("keeping freed memory needs glibc (mallopt is not available here); pass --system-malloc")
    if tuning.get("cv_threads") is not None:
        import cv2

        cv2.setNumThreads(int(tuning["cv_threads"]))
    if tuning.get("torch_threads") is not None:
        import torch

        torch.set_num_threads(int(tuning["torch_threads"]))


def worker_main(argv: Sequence[str]) -> int:
    """``python -m gifstream.benchmark SPEC RESULT``: one measurement, described by a JSON spec.

    This is how ``gifstream bench`` runs each measurement in a fresh process;
    run ``gifstream bench`` itself.
    """
    if len(argv) != 2:
        print(
            "usage: python -m gifstream.benchmark SPEC.json RESULT.json (run `gifstream bench` instead)",
            file=sys.stderr,
        )
        return 2
    spec_file, result_file = argv
    spec = json.loads(Path(spec_file).read_text())
    apply_tuning(spec.get("tuning") or {})
    worker = {"pipeline": run_pipeline, "isolated": run_isolated}[spec["kind"]]
    weights = spec.get("weights")
    with random_weights_registry(Path(weights)) if weights else contextlib.nullcontext():
        result = asyncio.run(worker(spec))
    Path(result_file).write_text(json.dumps(result, indent=2))
    return 0


# --------------------------------------------------------------------------- tables


def report_lines(plan: BenchPlan, results: dict[str, Any]) -> list[str]:
    """The Markdown tables of a bench run."""
    mine = results["gifstream"]
    lines = header_lines(plan, results)
    if "notebook" in results:
        lines += comparison_lines(results)
    lines += stage_lines(results["isolated"], mine)
    lines += pipeline_lines(results["isolated"], mine)
    if "notebook" in results:
        phases = ", ".join(f"{k} {v}" for k, v in results["notebook"]["phases_s"].items())
        lines += ["", f"Seed notebook phases (s): {phases}."]
    if "lengths" in results:
        lines += length_lines(results["lengths"])
    lines += target_lines(plan, results)
    return lines


def header_lines(plan: BenchPlan, results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    what = {
        "offline": "classic restorer x2, DIS flow, PSNR/SSIM/E_warp, GIF",
        "models": "GFPGAN v1.3 + Real-ESRGAN x2 (random weights, template landmarks), RAFT large, "
        "PSNR/SSIM/LPIPS/E_warp, GIF",
    }[plan.preset]
    frames = results["gifstream"]["frames"]
    return [
        f"## gifstream bench: preset {plan.preset} ({what})",
        "",
        f"Input: {results['plan']['input']}, {frames} frames. Machine: {m['cpu']}, {m['cpus']} CPUs, "
        f"Python {m['python']}, load average at start {m['load_average'][0]}. "
        f"gifstream process settings: {plan.tuning.describe()}{arithmetic_text(results['gifstream'])}.",
    ]


def arithmetic_text(mine: dict[str, Any]) -> str:
    arithmetic = mine.get("arithmetic") or {}
    return "".join(f"; restorer {key} {value}" for key, value in arithmetic.items())


def comparison_lines(results: dict[str, Any]) -> list[str]:
    note, mine = results["notebook"], results["gifstream"]
    scores = results["scores"]
    rows = [
        ("throughput, frames/s (whole run, set-up included)", note["frames_per_s"], mine["frames_per_s"], "ratio"),
        ("first output frame, s", note["first_output_s"], mine["first_output_s"], "ratio"),
        ("peak RSS, MB", note["peak_rss_mb"], mine["peak_rss_mb"], "ratio"),
    ]
    names = {
        "psnr": "PSNR dB vs input at 384x384 (higher is better)",
        "ssim": "SSIM vs input at 384x384 (higher is better)",
        "lpips": "LPIPS vs input at 384x384 (lower is better)",
        "temporal_mse": "temporal MSE, notebook's warp (lower is better)",
    }
    for key, label in names.items():
        if key in scores["notebook"]["metrics"]:
            rows.append((label, scores["notebook"]["metrics"][key], scores["gifstream"]["metrics"][key], "diff"))
    lines = ["", "| measure | seed notebook | gifstream | gifstream vs notebook |", "|---|---:|---:|---:|"]
    for label, theirs, ours, kind in rows:
        lines.append(f"| {label} | {fmt(theirs)} | {fmt(ours)} | {relation(theirs, ours, kind)} |")
    lines.append("")
    lines.append("Quality rows score each side's output GIF against the input with the notebook's own metrics.")
    return lines


def stage_lines(isolated: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    in_run = {stage["name"]: stage for stage in mine["runner"]["stages"]}
    lines = [
        "",
        f"gifstream parts: alone on the first {isolated['frames']} frames (steady mean, first frame apart), "
        "and in the run (busy time, input queue depth):",
        "",
        "| part | alone ms/frame | alone CPU ms/frame | alone page faults/frame | alone frames/s | first frame ms "
        "| in run: busy s | busy frames/s | max queue | mean queue |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for part in isolated["parts"]:
        run_stats = in_run.get(part["name"], {})
        lines.append(
            f"| {part['name']} | {fmt(part['mean_s'] * 1000)} | {fmt(part['cpu_mean_s'] * 1000)} "
            f"| {fmt(part['page_faults_mean'])} | {fmt(part['frames_per_s'])} "
            f"| {fmt(part['first_frame_s'] * 1000)} | {fmt(run_stats.get('busy_s'))} "
            f"| {fmt(run_stats.get('frames_per_s_busy'))} | {fmt(run_stats.get('max_queue'))} "
            f"| {fmt(run_stats.get('mean_queue'))} |"
        )
    return lines


def pipeline_figures(isolated: dict[str, Any], mine: dict[str, Any]) -> dict[str, Any]:
    """Efficiency and latency of the run against its parts alone."""
    slowest = min(isolated["parts"], key=lambda part: part["frames_per_s"] or float("inf"))
    one_frame = sum(part["mean_s"] for part in isolated["parts"])
    steady = mine["steady_frames_per_s"]
    latency = mine["first_output_after_setup_s"]
    # However well the parts overlap, the cores must do all of their work: the run cannot beat
    # cores / (CPU seconds of every part per frame), whatever the slowest part alone manages.
    cpu_per_frame = sum(part["cpu_mean_s"] for part in isolated["parts"])
    cores = os.cpu_count() or 1
    cpu_bound_fps = cores / cpu_per_frame if cpu_per_frame > 0 else None
    ceiling = min(1.0, cpu_bound_fps / slowest["frames_per_s"]) if cpu_bound_fps and slowest["frames_per_s"] else None
    efficiency = steady / slowest["frames_per_s"] if steady and slowest["frames_per_s"] else None
    return {
        "slowest": slowest["name"],
        "slowest_fps": slowest["frames_per_s"],
        "efficiency": efficiency,
        "cpu_bound_fps": cpu_bound_fps,
        "efficiency_ceiling": ceiling,
        "of_ceiling": efficiency / ceiling if efficiency and ceiling else None,
        "one_frame_s": one_frame,
        "latency_frames": latency / one_frame if latency is not None and one_frame > 0 else None,
    }


def pipeline_lines(isolated: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    figures = pipeline_figures(isolated, mine)
    return [
        "",
        "| pipeline | value |",
        "|---|---:|",
        f"| end-to-end frames/s, steady (after the first output) | {fmt(mine['steady_frames_per_s'])} |",
        f"| end-to-end frames/s, whole run | {fmt(mine['frames_per_s'])} |",
        f"| slowest part alone: {figures['slowest']}, frames/s | {fmt(figures['slowest_fps'])} |",
        f"| efficiency: steady end-to-end / slowest part alone | {fmt(figures['efficiency'])} |",
        f"| CPU-bound ceiling: {os.cpu_count()} CPUs / the parts' CPU per frame, frames/s "
        f"| {fmt(figures['cpu_bound_fps'])} |",
        f"| highest efficiency those CPUs allow (ceiling / slowest part alone, at most 1) "
        f"| {fmt(figures['efficiency_ceiling'])} |",
        f"| efficiency reached of that ceiling | {fmt(figures['of_ceiling'])} |",
        f"| one frame's processing time (sum of the parts' steady ms) | {fmt(figures['one_frame_s'] * 1000)} ms |",
        f"| set-up (models, detectors) | {fmt(mine['setup_s'])} s |",
        f"| first output frame after set-up | {fmt(mine['first_output_after_setup_s'] * 1000)} ms "
        f"= {fmt(figures['latency_frames'])} frames' time |",
        f"| first output frame from the start | {fmt(mine['first_output_s'])} s |",
        f"| CPU per output frame, all threads | {fmt(mine['cpu_ms_per_frame'])} ms |",
        f"| CPU utilisation (CPU time / wall time; {os.cpu_count()} CPUs) | {fmt(mine['cpu_utilisation'])} |",
    ]


def length_lines(rows: list[dict[str, Any]]) -> list[str]:
    base = rows[0]["gifstream"]["peak_rss_mb"]
    lines = [
        "",
        "| frames | input MB | gifstream peak RSS MB | ratio to first | frames/s | first output s "
        "| notebook peak RSS MB | notebook frames/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        mine, note = row["gifstream"], row.get("notebook")
        lines.append(
            f"| {row['frames']} | {row['input_mb']} | {mine['peak_rss_mb']} | {mine['peak_rss_mb'] / base:.3f} "
            f"| {fmt(mine['frames_per_s'])} | {fmt(mine['first_output_s'])} "
            f"| {fmt(note['peak_rss_mb']) if note else 'not run'} | {fmt(note['frames_per_s']) if note else '-'} |"
        )
    return lines


def target_lines(plan: BenchPlan, results: dict[str, Any]) -> list[str]:
    mine = results["gifstream"]
    figures = pipeline_figures(results["isolated"], mine)
    checks = [
        (f"efficiency >= {TARGET_EFFICIENCY}", figures["efficiency"], lambda v: v >= TARGET_EFFICIENCY),
        (
            f"first output after set-up <= {TARGET_LATENCY_FRAMES} frames' time",
            figures["latency_frames"],
            lambda v: v <= TARGET_LATENCY_FRAMES,
        ),
    ]
    if "notebook" in results:
        speedup = mine["frames_per_s"] / results["notebook"]["frames_per_s"]
        checks.append((f"throughput >= {TARGET_SPEEDUP}x the notebook's", speedup, lambda v: v >= TARGET_SPEEDUP))
    if plan.preset == "offline":
        size = f"{plan.size[0]}x{plan.size[1]}" if plan.input is None else "this input"
        checks.append(
            (f"offline >= {TARGET_OFFLINE_FPS} frames/s at {size}", mine["steady_frames_per_s"], lambda v: v >= 30)
        )
    if "lengths" in results and len(results["lengths"]) > 1:
        rows = results["lengths"]
        ratio = rows[-1]["gifstream"]["peak_rss_mb"] / rows[0]["gifstream"]["peak_rss_mb"]
        label = f"peak RSS({rows[-1]['frames']}) <= {TARGET_RSS_RATIO} x peak RSS({rows[0]['frames']})"
        checks.append((label, ratio, lambda v: v <= TARGET_RSS_RATIO))
    lines = ["", "| target | measured | |", "|---|---:|---|"]
    for label, value, ok in checks:
        verdict = "n/a" if value is None else ("met" if ok(value) else "MISSED")
        lines.append(f"| {label} | {fmt(value)} | {verdict} |")
    return lines


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        magnitude = abs(value)
        return f"{value:.4f}" if magnitude < 1 else f"{value:.3g}" if magnitude >= 1000 else f"{value:.3f}"
    return str(value)


def relation(theirs: Any, ours: Any, kind: str) -> str:
    if theirs is None or ours is None:
        return "-"
    if kind == "ratio":
        return f"{ours / theirs:.2f}x" if theirs else "-"
    return f"{ours - theirs:+.4f}"


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
