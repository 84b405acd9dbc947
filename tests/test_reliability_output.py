"""Output safety: a failed run leaves no output and no temporary; an existing file or the input is never clobbered."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import textured_frames, write_reference_gif
from PIL import Image

from gifstream.api import process_async
from gifstream.cli import main
from gifstream.engine import BlockingStage, Frame, OutputError, StageError
from gifstream.options import ProcessOptions

PASSTHROUGH = ["--restorer", "none", "--flow", "none", "--metrics", "none", "--quiet"]
FRAMES = 5
OPTIONS = ProcessOptions(restorer="none", flow="none", metrics=(), quiet=True)
# Where each kind of output goes, relative to the run's folder (a PNG output is a folder).
OUTPUTS = {"gif": "out.gif", "mp4": "out.mp4", "png": "frames/"}


class FaultStage(BlockingStage):
    """Passes frames through and fails on frame ``at``, as a stage with a bug would."""

    name = "fault"

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def process_sync(self, batch: list[Frame], previous: Frame | None) -> list[Frame]:
        for frame in batch:
            if frame.index == self.at:
                raise RuntimeError(f"injected fault on frame {frame.index}")
        return batch


class ShrinkStage(BlockingStage):
    """Hands the encoder a smaller frame at ``at``: the output itself then fails mid-stream."""

    name = "shrink"

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def process_sync(self, batch: list[Frame], previous: Frame | None) -> list[Frame]:
        for frame in batch:
            if frame.index == self.at:
                frame.pixels = np.ascontiguousarray(frame.pixels[:-2, :-2])
        return batch


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.gif"
    write_reference_gif(path, textured_frames(FRAMES, 32, 24), [100] * FRAMES, loop=0)
    return path


async def run(source: Path | str, output: str, stages: Sequence[BlockingStage] = (), **options: object) -> None:
    # A hang fails the test rather than stalling the suite.
    run_options = OPTIONS.replace(**options)
    await asyncio.wait_for(process_async(str(source), output, run_options, extra_stages=stages), timeout=30)


def target_in(folder: Path, kind: str) -> str:
    # Joined as text: a Path would drop the trailing "/" that asks for PNG frames.
    return os.path.join(folder, OUTPUTS[kind])


def folder_listing(folder: Path) -> list[str]:
    """Every entry, hidden ones (temporaries) included."""
    return sorted(os.listdir(folder))


def snapshot(path: Path) -> dict[str, bytes]:
    """The bytes of a file, or of every file in a folder."""
    if path.is_dir():
        return {p.name: p.read_bytes() for p in sorted(path.iterdir())}
    return {path.name: path.read_bytes()}


@pytest.mark.parametrize("at", [0, FRAMES // 2, FRAMES - 1], ids=["first", "middle", "last"])
@pytest.mark.parametrize("kind", OUTPUTS)
async def test_a_stage_failing_leaves_no_output_and_no_temporary(
    tmp_path: Path, source: Path, kind: str, at: int
) -> None:
    with pytest.raises(StageError) as caught:
        await run(source, target_in(tmp_path, kind), [FaultStage(at)])
    error = caught.value
    assert (error.stage, error.frame_index) == ("fault", at)
    assert f"stage 'fault' failed at frame {at}" in str(error) and f"injected fault on frame {at}" in str(error)
    assert folder_listing(tmp_path) == ["in.gif"]


@pytest.mark.parametrize("kind", OUTPUTS)
async def test_the_encoder_failing_mid_stream_leaves_nothing(tmp_path: Path, source: Path, kind: str) -> None:
    with pytest.raises(OutputError, match="frame 2 is 30x22"):
        await run(source, target_in(tmp_path, kind), [ShrinkStage(2)])
    assert folder_listing(tmp_path) == ["in.gif"]


def make_previous_output(tmp_path: Path, kind: str) -> Path:
    """An output of ``kind`` from an earlier run, which a later run must not lose."""
    target = tmp_path / OUTPUTS[kind].rstrip("/")
    if kind == "png":
        target.mkdir()
        (target / "frame_000000.png").write_bytes(b"earlier frame")
        (target / "frames.csv").write_text("index,duration_ms\n0,40.0\n")
    else:
        target.write_bytes(b"earlier output")
    return target


@pytest.mark.parametrize("kind", OUTPUTS)
async def test_a_failing_run_with_overwrite_keeps_the_previous_output(tmp_path: Path, source: Path, kind: str) -> None:
    previous = make_previous_output(tmp_path, kind)
    before = snapshot(previous)
    with pytest.raises(StageError, match="frame 3"):
        await run(source, target_in(tmp_path, kind), [FaultStage(3)], overwrite=True)
    assert snapshot(previous) == before
    assert folder_listing(tmp_path) == sorted(["in.gif", previous.name])


@pytest.mark.parametrize("kind", OUTPUTS)
def test_an_existing_output_is_refused_without_overwrite(
    tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    previous = make_previous_output(tmp_path, kind)
    before = snapshot(previous)
    assert main(["process", str(source), "-o", target_in(tmp_path, kind), *PASSTHROUGH]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "exists; pass --overwrite to replace it" in lines[0]
    assert snapshot(previous) == before
    assert folder_listing(tmp_path) == sorted(["in.gif", previous.name])


@pytest.mark.parametrize("kind", OUTPUTS)
async def test_a_successful_run_with_overwrite_replaces_the_previous_output(
    tmp_path: Path, source: Path, kind: str
) -> None:
    previous = make_previous_output(tmp_path, kind)
    await run(source, target_in(tmp_path, kind), overwrite=True)
    assert folder_listing(tmp_path) == sorted(["in.gif", previous.name])
    if kind == "png":
        assert len(list(previous.glob("frame_*.png"))) == FRAMES
    elif kind == "gif":
        with Image.open(previous) as image:
            assert image.n_frames == FRAMES
    else:
        with av.open(str(previous)) as container:
            assert sum(1 for _ in container.decode(video=0)) == FRAMES


# --------------------------------------------------------------------------- output over the input


def make_input(tmp_path: Path, kind: str) -> Path:
    frames = textured_frames(FRAMES, 32, 24)
    if kind == "gif":
        path = tmp_path / "in.gif"
        write_reference_gif(path, frames, [100] * FRAMES, loop=0)
    elif kind == "mp4":
        path = tmp_path / "in.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
            stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
            for index, pixels in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = index
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
    else:
        path = tmp_path / "frames"
        path.mkdir()
        for index, pixels in enumerate(frames):
            Image.fromarray(pixels).save(path / f"frame_{index:06d}.png")
    return path


def spellings_of(path: Path, tmp_path: Path, how: str) -> str:
    """Another way to write ``path``: itself, a symlink to it, or a different relative path (from ``tmp_path``)."""
    if how == "same":
        return str(path)
    if how == "symlink":
        link = tmp_path / f"link-{path.name}"
        link.symlink_to(path)
        return str(link)
    (tmp_path / "sub").mkdir()
    return os.path.join(".", "sub", "..", path.name)


@pytest.mark.parametrize("how", ["same", "symlink", "relative"])
@pytest.mark.parametrize("kind", ["gif", "mp4", "png"])
def test_writing_over_the_input_is_refused_however_it_is_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kind: str, how: str
) -> None:
    monkeypatch.chdir(tmp_path)
    source = make_input(tmp_path, kind)
    before = snapshot(source)
    output = spellings_of(source, tmp_path, how)
    listing = folder_listing(tmp_path)
    fmt = ["--format", "png"] if kind == "png" else []
    code = main(["process", str(source), "-o", output, *fmt, "--overwrite", *PASSTHROUGH])
    lines = capsys.readouterr().err.splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("gifstream: error: ")
    assert "is the input" in lines[0]
    assert snapshot(source) == before
    assert folder_listing(tmp_path) == listing
