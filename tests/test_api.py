"""The Python API: `gifstream.process` and the streaming interface for services."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import read_gif, textured_frames, write_reference_gif

import gifstream
from gifstream.engine import ConfigError


def test_process_runs_a_file_and_returns_the_report(tmp_path: Path) -> None:
    source, out = tmp_path / "in.gif", tmp_path / "out.gif"
    write_reference_gif(source, textured_frames(4), [50, 60, 70, 80], loop=0)
    report = gifstream.process(source, out, restorer="none", scale=2, flow="none", metrics="psnr")
    assert report["frames"]["count"] == 4 and report["frames"]["width"] == 128
    frames, durations, loop = read_gif(out)
    assert len(frames) == 4 and durations == [50, 60, 70, 80] and loop == 0


def test_unknown_keyword_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="restorrer"):
        gifstream.process("in.gif", "out.gif", restorrer="none")


async def test_stream_takes_arrays_and_yields_frames_in_order_as_they_are_done() -> None:
    frames = textured_frames(6, 32, 24)

    async def arriving():  # frames trickling in, as from a camera or a socket
        for frame in frames:
            await asyncio.sleep(0)
            yield frame

    out = []
    async with gifstream.stream(arriving(), restorer="none", scale=2, flow="none", metrics="none", fps=25) as enhanced:
        async for frame in enhanced:
            out.append(frame)
    assert [f.index for f in out] == list(range(6))
    assert all(f.pixels.shape == (48, 64, 3) for f in out)
    assert all(f.duration_ms == 40 for f in out)
    assert all(np.array_equal(f.source, src) for f, src in zip(out, frames, strict=True))


async def test_stream_rejects_arrays_that_are_not_rgb_uint8() -> None:
    with pytest.raises(ConfigError, match=r"expected an \(H, W, 3\) uint8 RGB array"):
        async with gifstream.stream(
            [np.zeros((4, 4), np.float32)], restorer="none", metrics="none", flow="none"
        ) as out:
            async for _ in out:
                pass


def test_the_default_run_without_gfpgan_weights_never_imports_torch(tmp_path: Path) -> None:
    """Finding the device would import torch; the classic fallback needs none of it."""
    write_reference_gif(tmp_path / "in.gif", textured_frames(3, 48, 32), [100] * 3, 0)
    script = (
        "import sys, gifstream\n"
        f"gifstream.process({str(tmp_path / 'in.gif')!r}, {str(tmp_path / 'out.gif')!r}, quiet=True)\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert len(read_gif(tmp_path / "out.gif")[0]) == 3
