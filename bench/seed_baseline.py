"""The seed notebook's pipeline, re-implemented faithfully: the baseline gifstream is measured against.

The notebook (see ../shared/seed-pipeline.md) works in whole-input steps,
each finishing before the next starts, with every frame on disk or in a list:

1. extract every GIF frame to ``inputs/upload/frame_NNNNN.png`` (Pillow, RGB);
2. run GFPGAN's ``inference_gfpgan.py -v 1.3 -s 2 --bg_upsampler realesrgan``
   over that folder: a separate process, ``GFPGANer.enhance`` per frame with
   a Real-ESRGAN x2plus background (tile 400, pad 10), writing the cropped,
   restored and side-by-side faces and ``results/restored_imgs/*.png``;
3. load every restored frame resized to 384x384 as a tensor, kept in a list,
   and run RAFT (raft_large, its weights' transforms) on every consecutive
   pair, the flows kept in a list;
4. warp each frame towards the next with ``grid_sample`` (the notebook's
   direction and padding) and take the MSE to the next frame, the warped
   frames kept in a list;
5. load every restored frame again and write the GIF with
   ``save_all=True, duration=100, loop=0``;
6. a separate metrics pass: PSNR and SSIM of each original against its
   restored frame, both resized to 384x384, then LPIPS (AlexNet) the same way.

Two deliberate departures, both in the baseline's favour or neutral: the
Real-ESRGAN background also runs on a CPU (the script skips it without
CUDA, but the notebook ran on a GPU, and gifstream runs it), and the frame
names have five digits, so that sorting keeps the order beyond 999 frames.
With random-weight checkpoints RetinaFace reports junk faces, so the faces
come from the same injected detector gifstream is given
(:class:`gifstream.benchmark.TemplateLandmarks`).

The offline variant keeps every step and swaps the two models that need
weights: gifstream's classic restorer instead of GFPGAN (and no Real-ESRGAN)
and OpenCV's DIS (medium) instead of RAFT; LPIPS is left out.

    python bench/seed_baseline.py run --input in.gif --workdir DIR --preset offline --json result.json
    python bench/seed_baseline.py run --input in.gif --workdir DIR --preset models --weights DIR --json result.json
    python bench/seed_baseline.py evaluate --input in.gif --output out.gif --preset offline --json metrics.json

``evaluate`` scores any output GIF against its input with the notebook's
metrics (the same functions as step 6, plus the temporal MSE of steps 3-4
computed on the output), so both sides of a comparison are judged alike.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image, ImageSequence
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

PRESETS = ("offline", "models")
NOTEBOOK_SIZE = (384, 384)  # the notebook resizes every frame to 384x384 for RAFT and for its metrics
GIF_DURATION_MS = 100  # the notebook writes every frame with duration=100
# Release file names the notebook's libraries look for (GFPGAN, facexlib and torchvision caches).
GFPGAN_FILE = "GFPGANv1.3.pth"
REALESRGAN_FILE = "RealESRGAN_x2plus.pth"
FACEXLIB_FILES = ("detection_Resnet50_Final.pth", "parsing_parsenet.pth")
RAFT_LARGE_FILE = "raft_large_C_T_SKHT_V2-ff5fadd5.pth"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --------------------------------------------------------------------------- step 1: extract


def extract_frames(gif_file: Path, upload: Path) -> list[str]:
    """Every frame of the GIF as an RGB PNG in ``upload`` (emptied first), as the notebook's upload cell does."""
    shutil.rmtree(upload, ignore_errors=True)
    os.makedirs(upload)
    frame_paths = []
    img = Image.open(gif_file)
    for i, frame in enumerate(ImageSequence.Iterator(img)):
        path = os.path.join(upload, f"frame_{i:05d}.png")
        frame.convert("RGB").save(path)
        frame_paths.append(path)
    print(f"Extracted {len(frame_paths)} frames", file=sys.stderr)
    return frame_paths


# --------------------------------------------------------------------------- step 2: the GFPGAN folder loop


def gfpganer(weights: Path) -> Any:
    """GFPGANer as inference_gfpgan.py builds it for ``-v 1.3 -s 2 --bg_upsampler realesrgan``.

    GFPGANer loads facexlib's RetinaFace and ParseNet from ./gfpgan/weights
    (the current folder is the work folder, where those files are linked).
    """
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from gfpgan import GFPGANer
    from realesrgan import RealESRGANer

    model = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=2)
    bg_upsampler = RealESRGANer(
        scale=2,
        model_path=str(weights / REALESRGAN_FILE),
        model=model,
        tile=400,
        tile_pad=10,
        pre_pad=0,
        half=torch.cuda.is_available(),  # the script's half=True needs CUDA
    )
    return GFPGANer(
        model_path=str(weights / GFPGAN_FILE), upscale=2, arch="clean", channel_multiplier=2, bg_upsampler=bg_upsampler
    )


def inject_detections(restorer: Any) -> None:
    """Replace RetinaFace's findings (junk with random weights) by gifstream's bench detector's."""
    from gifstream.benchmark import TemplateLandmarks, retinaface_rows

    detector = TemplateLandmarks()

    def detect_faces(image_bgr: np.ndarray, threshold: float = 0.8) -> np.ndarray:
        return retinaface_rows(detector([cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)])[0])

    restorer.face_helper.face_det.detect_faces = detect_faces


def link_facexlib_weights(weights: Path, workdir: Path) -> None:
    """Put RetinaFace and ParseNet where GFPGANer looks for them (./gfpgan/weights), as a GFPGAN checkout has them."""
    folder = workdir / "gfpgan" / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    for name in FACEXLIB_FILES:
        link = folder / name
        if not link.exists():
            link.symlink_to((weights / name).resolve())


def restore_folder(input_dir: Path, output_dir: Path, preset: str, weights: Path | None) -> None:
    """inference_gfpgan.py's loop: read, enhance, save faces, comparisons and the restored image, frame by frame."""
    from gifstream.restore.compat import install_torchvision_shim

    install_torchvision_shim()  # basicsr 1.4 still imports a module torchvision removed (the notebook's sed fix)
    from basicsr.utils import imwrite

    img_list = sorted(glob.glob(os.path.join(input_dir, "*")))
    os.makedirs(output_dir, exist_ok=True)
    if preset == "models":
        assert weights is not None
        restorer = gfpganer(weights)
        inject_detections(restorer)
        enhance = restorer.enhance
    else:
        enhance = classic_enhance()
    for img_path in img_list:
        img_name = os.path.basename(img_path)
        basename, ext = os.path.splitext(img_name)
        input_img = cv2.imread(img_path, cv2.IMREAD_COLOR)
        cropped_faces, restored_faces, restored_img = enhance(
            input_img, has_aligned=False, only_center_face=False, paste_back=True, weight=0.5
        )
        for idx, (cropped_face, restored_face) in enumerate(zip(cropped_faces, restored_faces, strict=True)):
            imwrite(cropped_face, os.path.join(output_dir, "cropped_faces", f"{basename}_{idx:02d}.png"))
            imwrite(restored_face, os.path.join(output_dir, "restored_faces", f"{basename}_{idx:02d}.png"))
            cmp_img = np.concatenate((cropped_face, restored_face), axis=1)
            imwrite(cmp_img, os.path.join(output_dir, "cmp", f"{basename}_{idx:02d}.png"))
        if restored_img is not None:
            imwrite(restored_img, os.path.join(output_dir, "restored_imgs", f"{basename}.{ext[1:]}"))


def classic_enhance() -> Callable[..., tuple[list[np.ndarray], list[np.ndarray], np.ndarray]]:
    """The offline stand-in for GFPGANer.enhance: gifstream's classic restorer, BGR in and out, no face crops."""
    from gifstream.restore import ClassicRestorer

    restorer = ClassicRestorer(scale=2)

    def enhance(img: np.ndarray, **_: Any) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        [restored] = restorer.restore([cv2.cvtColor(img, cv2.COLOR_BGR2RGB)])
        return [], [], cv2.cvtColor(restored.pixels, cv2.COLOR_RGB2BGR)

    return enhance


# --------------------------------------------------------------------------- steps 3-4: flow, warp, temporal loss


def load_frame(path: str) -> torch.Tensor:
    img = Image.open(path).convert("RGB").resize(NOTEBOOK_SIZE)
    return T.ToTensor()(img).unsqueeze(0)


def raft_flow_fn(weights: Path) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """raft_large with its weights' transforms, as the notebook sets it up (weights from a local file)."""
    from torchvision.models.optical_flow import Raft_Large_Weights, raft_large

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = raft_large(weights=None, progress=False)
    model.load_state_dict(torch.load(weights / RAFT_LARGE_FILE, map_location="cpu"))
    model = model.to(device).eval()
    transforms = Raft_Large_Weights.DEFAULT.transforms()

    def flow(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        img1, img2 = transforms(first, second)
        with torch.no_grad():
            out = model(img1.to(device), img2.to(device))[-1]
        return out.cpu()

    return flow


def dis_flow_fn() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The offline stand-in for RAFT: OpenCV DIS (medium) on the same tensors, returned in RAFT's layout."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def grey(tensor: torch.Tensor) -> np.ndarray:
        rgb = (tensor[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

    def flow(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(dis.calc(grey(first), grey(second), None)).permute(2, 0, 1)[None]

    return flow


def estimate_flows(frames: list[torch.Tensor], flow: Callable[..., torch.Tensor]) -> list[torch.Tensor]:
    flows = []
    for i in range(len(frames) - 1):
        flows.append(flow(frames[i], frames[i + 1]))
    print(f"Estimated motion for {len(flows)} frame pairs", file=sys.stderr)
    return flows


def warp_and_loss(frames: list[torch.Tensor], flows: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[float]]:
    """Each frame warped towards the next with its flow, and the MSE to the next frame (the notebook's loop)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    warped, losses = [], []
    criterion = torch.nn.MSELoss()
    for i in range(len(flows)):
        img = frames[i].to(device)
        target = frames[i + 1].to(device)
        flow = flows[i].to(device)
        _, _, h, w = img.size()
        grid_y, grid_x = torch.meshgrid(torch.arange(0, h), torch.arange(0, w), indexing="ij")
        grid = torch.stack((grid_x, grid_y), 2).float().to(device).unsqueeze(0)
        vgrid = grid + flow.permute(0, 2, 3, 1)
        vgrid[..., 0] = 2.0 * vgrid[..., 0] / max(w - 1, 1) - 1.0
        vgrid[..., 1] = 2.0 * vgrid[..., 1] / max(h - 1, 1) - 1.0
        out = F.grid_sample(img, vgrid, align_corners=True)
        loss = criterion(out, target)
        warped.append(out)
        losses.append(loss.item())
    return warped, losses


# --------------------------------------------------------------------------- step 5: the GIF


def save_gif(restored_paths: Sequence[str], output: Path) -> None:
    restored_images = [Image.open(p).convert("RGB") for p in restored_paths]
    os.makedirs(output.parent, exist_ok=True)
    restored_images[0].save(output, save_all=True, append_images=restored_images[1:], duration=GIF_DURATION_MS, loop=0)


# --------------------------------------------------------------------------- step 6: metrics


def quality_metrics(
    originals: Sequence[Image.Image], restored: Sequence[Image.Image], lpips_model: Any | None
) -> dict[str, float]:
    """Mean PSNR and SSIM (and LPIPS) of each original against its restored frame, both resized to 384x384."""
    psnr_list, ssim_list, lpips_list = [], [], []
    for original, enhanced in zip(originals, restored, strict=True):
        orig = np.array(original.convert("RGB").resize(NOTEBOOK_SIZE))
        rest = np.array(enhanced.convert("RGB").resize(NOTEBOOK_SIZE))
        psnr_list.append(peak_signal_noise_ratio(orig, rest))
        ssim_list.append(structural_similarity(orig, rest, channel_axis=2))
    if lpips_model is not None:
        import lpips

        for original, enhanced in zip(originals, restored, strict=True):
            img0 = lpips.im2tensor(np.array(original.convert("RGB").resize(NOTEBOOK_SIZE)))
            img1 = lpips.im2tensor(np.array(enhanced.convert("RGB").resize(NOTEBOOK_SIZE)))
            with torch.no_grad():
                lpips_list.append(float(lpips_model(img0, img1).item()))
    result = {"psnr": float(np.mean(psnr_list)), "ssim": float(np.mean(ssim_list))}
    if lpips_list:
        result["lpips"] = float(np.mean(lpips_list))
    return result


def lpips_alex(weights: Path) -> Any:
    """lpips.LPIPS(net='alex') with AlexNet's backbone read from the local checkpoint (it would download it)."""
    from gifstream.metrics.quality import build_lpips

    return build_lpips(weights / ALEXNET_FILE, torch.device("cpu"))


# --------------------------------------------------------------------------- the whole notebook


def run_notebook(gif_file: Path, workdir: Path, preset: str, weights: Path | None) -> dict[str, Any]:
    """The notebook's cells in order, timed; returns phase times, first-output time, metrics and peak RSS."""
    started = time.perf_counter()
    phases: dict[str, float] = {}

    def mark(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = round(now - since, 3)
        return now

    os.chdir(workdir)
    upload, results = Path("inputs/upload"), Path("results")
    t = time.perf_counter()
    extract_frames(gif_file, upload)
    t = mark("extract", t)
    shutil.rmtree(results, ignore_errors=True)
    restore_rss = run_restore_script(upload, results, preset, weights, workdir)
    t = mark("restore", t)
    restored_paths = sorted(glob.glob(str(results / "restored_imgs" / "*.png")))
    frames = [load_frame(p) for p in restored_paths]
    flows = estimate_flows(frames, raft_flow_fn(weights) if preset == "models" and weights else dis_flow_fn())
    t = mark("flow", t)
    _, losses = warp_and_loss(frames, flows)
    t = mark("warp", t)
    output = Path("outputs/enhanced_output.gif")
    save_gif(restored_paths, output)
    first_output = time.perf_counter() - started
    t = mark("gif", t)
    originals = [Image.open(p) for p in sorted(glob.glob(str(upload / "*.png")))]
    restored = [Image.open(p) for p in restored_paths]
    metrics = quality_metrics(originals, restored, lpips_alex(weights) if preset == "models" and weights else None)
    metrics["temporal_mse"] = float(np.mean(losses)) if losses else float("nan")
    mark("metrics", t)
    total = time.perf_counter() - started
    return {
        "side": "notebook",
        "preset": preset,
        "frames": len(restored_paths),
        "phases_s": phases,
        "total_s": round(total, 3),
        "frames_per_s": round(len(restored_paths) / total, 4),
        "first_output_s": round(first_output, 3),
        "peak_rss_mb": max(peak_rss_mb(), restore_rss),
        "peak_rss_mb_by_process": {"notebook": peak_rss_mb(), "inference script": restore_rss},
        "metrics": metrics,
        "output": str(workdir / output),
    }


def run_restore_script(upload: Path, results: Path, preset: str, weights: Path | None, workdir: Path) -> float:
    """Step 2 as the notebook runs it: a separate Python process over the folder; returns its peak RSS (MB)."""
    if preset == "models" and weights is not None:
        link_facexlib_weights(weights, workdir)
    report = workdir / "restore-script.json"
    cmd = [sys.executable, __file__, "restore", "-i", str(upload), "-o", str(results), "--preset", preset]
    cmd += ["--report", str(report)] + (["--weights", str(weights)] if weights else [])
    subprocess.run(cmd, check=True)
    return float(json.loads(report.read_text())["peak_rss_mb"])


# --------------------------------------------------------------------------- evaluating any output alike


def evaluate(input_gif: Path, output_gif: Path, preset: str, weights: Path | None) -> dict[str, Any]:
    """The notebook's metrics for ``output_gif`` against ``input_gif``: steps 3, 4 and 6 on the output's frames."""
    originals = [frame.convert("RGB") for frame in ImageSequence.Iterator(Image.open(input_gif))]
    restored = [frame.convert("RGB") for frame in ImageSequence.Iterator(Image.open(output_gif))]
    if len(originals) != len(restored):
        raise SystemExit(f"{output_gif} has {len(restored)} frames, {input_gif} has {len(originals)}")
    models = preset == "models" and weights is not None
    metrics = quality_metrics(originals, restored, lpips_alex(weights) if models else None)  # type: ignore[arg-type]
    frames = [T.ToTensor()(image.resize(NOTEBOOK_SIZE)).unsqueeze(0) for image in restored]
    flows = estimate_flows(frames, raft_flow_fn(weights) if models else dis_flow_fn())  # type: ignore[arg-type]
    _, losses = warp_and_loss(frames, flows)
    metrics["temporal_mse"] = float(np.mean(losses)) if losses else float("nan")
    return {"output": str(output_gif), "frames": len(restored), "metrics": metrics}


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="the whole notebook on one GIF")
    run.add_argument("--input", type=Path, required=True)
    run.add_argument("--workdir", type=Path, required=True, help="the notebook's /content (emptied of its folders)")
    run.add_argument("--preset", choices=PRESETS, default="offline")
    run.add_argument("--weights", type=Path, default=None, help="folder with the release-named weight files")
    run.add_argument("--json", type=Path, required=True)
    restore = commands.add_parser("restore", help="step 2 alone (the inference script), as the notebook calls it")
    restore.add_argument("-i", "--input", type=Path, required=True)
    restore.add_argument("-o", "--output", type=Path, required=True)
    restore.add_argument("--preset", choices=PRESETS, default="offline")
    restore.add_argument("--weights", type=Path, default=None)
    restore.add_argument("--report", type=Path, required=True)
    score = commands.add_parser("evaluate", help="the notebook's metrics of an output GIF against its input")
    score.add_argument("--input", type=Path, required=True)
    score.add_argument("--output", type=Path, required=True)
    score.add_argument("--preset", choices=PRESETS, default="offline")
    score.add_argument("--weights", type=Path, default=None)
    score.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.preset == "models" and args.weights is None:
        parser.error("--preset models needs --weights (a folder with the release-named weight files)")
    weights = args.weights.resolve() if args.weights else None
    if args.command == "restore":
        restore_folder(args.input, args.output, args.preset, weights)
        args.report.write_text(json.dumps({"peak_rss_mb": peak_rss_mb()}))
        return 0
    if args.command == "run":
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = run_notebook(args.input.resolve(), args.workdir.resolve(), args.preset, weights)
    else:
        result = evaluate(args.input, args.output, args.preset, weights)
    args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
