"""`--stabilize` on the command line and through the Python API."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import gifstream_command, read_gif

import gifstream
from gifstream.cli import main
from gifstream.demo import write_demo_gif


def test_stabilize_on_the_command_line_reports_its_settings_and_e_warp_before_and_after(tmp_path: Path) -> None:
    source, out, report = tmp_path / "in.gif", tmp_path / "out.gif", tmp_path / "r.json"
    write_demo_gif(source, frames=8, size=96)
    argv = ["process", str(source), "-o", str(out), "--restorer", "classic", "--stabilize", "--report", str(report)]
    assert main([*argv, "--quiet"]) == 0
    data = json.loads(report.read_text())
    assert [s["name"] for s in data["stages"]] == ["restore", "flow", "stabilize", "metrics"]
    details = data["stage_details"]["stabilize"]
    assert details["strength"] == 0.6 and details["cuts_detected"] == 0
    before, after = details["e_warp_before"], details["e_warp_after"]
    assert before["count"] == after["count"] == 7
    assert after["mean"] < before["mean"]
    # The metrics stage measures the stabilised output: its E_warp is the stage's "after".
    assert (
        data["summary"]["e_warp"]["mean"] == after["mean"]
        or abs(data["summary"]["e_warp"]["mean"] - after["mean"]) < 1e-9
    )
    assert len(read_gif(out)[0]) == 8


def test_stabilize_through_the_api(tmp_path: Path) -> None:
    source, out = tmp_path / "in.gif", tmp_path / "out.gif"
    write_demo_gif(source, frames=5, size=64)
    report = gifstream.process(source, out, restorer="classic", stabilize=True, stabilize_strength=0.8, metrics="none")
    details = report["stage_details"]["stabilize"]
    assert details["strength"] == 0.8 and details["e_warp_after"]["count"] == 4


def test_stabilize_without_flow_is_refused_in_one_line(tmp_path: Path) -> None:
    source = tmp_path / "in.gif"
    write_demo_gif(source, frames=3, size=32)
    result = gifstream_command("process", str(source), "-o", str(tmp_path / "o.gif"), "--stabilize", "--flow", "none")
    stderr = result.stderr.decode().strip()
    assert result.returncode == 2 and len(stderr.splitlines()) == 1 and "--stabilize needs optical flow" in stderr
    assert not (tmp_path / "o.gif").exists()
