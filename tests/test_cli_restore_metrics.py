"""`gifstream process` with restoration and metrics, offline, as a user runs it."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import gifstream_command, read_gif, write_reference_gif
from PIL import Image, ImageFilter

import gifstream
from gifstream.cli import main
from gifstream.demo import demo_input
from gifstream.motion import backward_warp


def test_restorer_gfpgan_without_weights_fails_with_one_line_naming_the_fetch_command(
    shared_testdata: Path, tmp_path: Path
) -> None:
    source, out = shared_testdata / "faces-animated" / "pcavs_demo_id.gif", tmp_path / "out.gif"
    result = gifstream_command("process", str(source), "-o", str(out), "--restorer", "gfpgan", "--quiet")
    stderr = result.stderr.decode().strip()
    assert result.returncode == 1
    assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr
    assert "gifstream models fetch" in stderr and "GFPGANv1.3.pth" in stderr and "https://" in stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.timeout(900)  # seconds of 512² convolutions; a loaded 2-core machine needs headroom
def test_the_default_run_works_offline_and_doubles_every_frame(shared_testdata: Path, tmp_path: Path) -> None:
    source, out = shared_testdata / "faces-animated" / "pcavs_demo_id.gif", tmp_path / "out.gif"
    report = tmp_path / "r.json"
    assert main(["process", str(source), "-o", str(out), "--report", str(report), "--quiet"]) == 0
    frames_in, durations_in, loop_in = read_gif(source)
    frames_out, durations_out, loop_out = read_gif(out)
    assert len(frames_out) == len(frames_in)
    assert all(f.shape[:2] == (2 * frames_in[0].shape[0], 2 * frames_in[0].shape[1]) for f in frames_out)
    assert durations_out == durations_in and loop_out == loop_in
    details = json.loads(report.read_text())["stage_details"]["restore"]
    assert details["restorer"] == "classic" and "not cached" in details["reason"]


def translated_texture(count: int, dx: int, dy: int, width: int = 96, height: int = 72) -> list[np.ndarray]:
    """A smooth random texture moving by (dx, dy) pixels a frame: frame t+1(x) = frame t(x - d)."""
    rng = np.random.default_rng(3)
    pad = 8 + count * max(abs(dx), abs(dy))
    noise = rng.integers(0, 256, (height + 2 * pad, width + 2 * pad, 3), np.uint8)
    texture = np.asarray(Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2)))
    texture = np.clip((texture.astype(np.float32) - 128) * 4 + 128, 0, 255).astype(np.uint8)  # restore contrast
    # Few enough colours that a GIF holds them exactly: the error measured is the motion's, not the palette's.
    texture = np.asarray(Image.fromarray(texture).quantize(48, method=Image.Quantize.MEDIANCUT).convert("RGB"))
    return [
        np.ascontiguousarray(texture[pad - t * dy : pad - t * dy + height, pad - t * dx : pad - t * dx + width])
        for t in range(count)
    ]


def test_known_translation_gives_a_tiny_warp_error_and_the_seed_direction_a_large_one(tmp_path: Path) -> None:
    frames = translated_texture(6, dx=3, dy=1)
    source, out, report = tmp_path / "pan.gif", tmp_path / "out.gif", tmp_path / "r.json"
    write_reference_gif(source, frames, [100] * 6, loop=0)
    argv = ["process", str(source), "-o", str(out), "--restorer", "none", "--flow", "dis", "--report", str(report)]
    assert main([*argv, "--quiet"]) == 0
    summary = json.loads(report.read_text())["summary"]
    assert summary["e_warp"]["count"] == 5
    assert summary["e_warp"]["max"] < 1e-3

    decoded, _, _ = read_gif(out)
    seed_errors, correct_errors = [], []
    for a, b in itertools.pairwise(decoded):
        flow = gifstream.estimate_flow(a, b)
        interior = (slice(8, -8), slice(8, -8))
        unit_a, unit_b = a.astype(np.float32) / 255, b.astype(np.float32) / 255
        correct = backward_warp(unit_b, flow)  # frame t predicted from t+1 at x + F(t→t+1)
        seed = backward_warp(unit_a, flow)  # the notebook: frame t sampled at x + F, compared with t+1
        correct_errors.append(float(np.mean((correct - unit_a)[interior] ** 2)))
        seed_errors.append(float(np.mean((seed - unit_b)[interior] ** 2)))
    assert max(correct_errors) < 1e-3
    assert min(seed_errors) > 10 * max(correct_errors)


def test_report_csv_and_plot_for_a_face_gif_offline(tmp_path: Path) -> None:
    source = demo_input()
    out, report, plot = tmp_path / "out.gif", tmp_path / "r.json", tmp_path / "p.png"
    assert main(["process", str(source), "-o", str(out), "--report", str(report), "--plot", str(plot), "--quiet"]) == 0
    data = json.loads(report.read_text())
    frames = data["frames"]["count"]
    for metric in ("psnr", "ssim", "e_warp"):
        stats = data["summary"][metric]
        assert set(stats) >= {"mean", "min", "max", "p95"}
        assert stats["count"] == (frames - 1 if metric == "e_warp" else frames)
        assert stats["min"] <= stats["mean"] <= stats["p95"] <= stats["max"]
    assert data["stage_details"]["metrics"]["flow_backend"] == "dis"
    with (tmp_path / "r.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["frame"]) for r in rows] == list(range(frames))
    assert rows[0]["e_warp"] == "" and float(rows[1]["e_warp"]) > 0
    assert float(rows[3]["psnr"]) == pytest.approx(data["summary"]["psnr"]["min"], abs=50)
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.width >= 400
