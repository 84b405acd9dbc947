"""Interruption: signals stop a run quickly and leave nothing behind; a closed stdout pipe ends quietly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import textured_frames, write_reference_gif

PASSTHROUGH = ["--restorer", "none", "--flow", "none", "--metrics", "none", "--quiet"]


def start_reading_stdin(out: Path) -> subprocess.Popen[bytes]:
    """A run fed raw frames through a pipe that stays open, so it is mid-stream when signalled."""
    cmd = [sys.executable, "-m", "gifstream.cli", "process", "-", "--size", "16x8", "-o", str(out), *PASSTHROUGH]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    for frame in textured_frames(4, 16, 8):
        proc.stdin.write(frame.tobytes())
    proc.stdin.flush()
    return proc


def wait_for_partial_output(folder: Path, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not any(p.name.endswith(".part") for p in folder.iterdir()):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.05)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_within_two_seconds_and_removes_the_temporary(
    tmp_path: Path, signum: int, code: int
) -> None:
    out = tmp_path / "out.gif"
    proc = start_reading_stdin(out)
    try:
        wait_for_partial_output(tmp_path, proc)
        sent = time.monotonic()
        proc.send_signal(signum)
        returncode = proc.wait(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        proc.kill()
    assert returncode == code
    assert elapsed < 2.0
    assert list(tmp_path.iterdir()) == [], "no output and no temporary may be left"


def test_a_closed_stdout_pipe_ends_quietly(tmp_path: Path) -> None:
    source = tmp_path / "in.gif"
    write_reference_gif(source, textured_frames(30, 96, 64), [40] * 30, loop=0)
    cmd = f"{sys.executable} -m gifstream.cli process {source} -o - {' '.join(PASSTHROUGH)} | head -c 100 > /dev/null"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, timeout=60, env={**os.environ})
    assert result.stderr.decode() == ""
