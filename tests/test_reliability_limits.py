"""Input limits: each refuses a small crafted input with its own flag, and bombs are refused before memory is spent."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import av
import pytest
from helpers import gifstream_command, textured_frames, write_reference_gif
from PIL import Image

from gifstream.cli import main

PASSTHROUGH = ["--restorer", "none", "--flow", "none", "--metrics", "none", "--quiet"]
WIDTH, HEIGHT, FRAMES = 32, 24, 5
PIXELS = WIDTH * HEIGHT


def write_mp4(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index, pixels in enumerate(textured_frames(FRAMES, WIDTH, HEIGHT)):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def make_input(kind: str, folder: Path) -> tuple[Path, list[str], int]:
    """A 5-frame 32x24 input of ``kind``, the flags it needs, and the bytes --max-input-bytes counts for it."""
    frames = textured_frames(FRAMES, WIDTH, HEIGHT)
    if kind == "gif":
        path = folder / "in.gif"
        write_reference_gif(path, frames, [100] * FRAMES, loop=0)
        return path, [], path.stat().st_size
    if kind == "mp4":
        path = folder / "in.mp4"
        write_mp4(path)
        return path, [], path.stat().st_size
    if kind == "raw":
        path = folder / "in.rgb"
        path.write_bytes(b"".join(f.tobytes() for f in frames))
        return path, ["--size", f"{WIDTH}x{HEIGHT}"], path.stat().st_size
    path = folder / "frames"
    path.mkdir()
    for index, pixels in enumerate(frames):
        Image.fromarray(pixels).save(path / f"{index}.png")
    return path, [], sum(p.stat().st_size for p in path.iterdir())


def passing_value(flag: str, input_bytes: int) -> int:
    """The smallest value of ``flag`` the 5-frame 32x24 input passes with; one less must refuse it."""
    return {
        "--max-frames": FRAMES,
        "--max-frame-pixels": PIXELS,
        "--max-total-pixels": FRAMES * PIXELS,
        "--max-input-bytes": input_bytes,
    }[flag]


KINDS = ["gif", "mp4", "raw", "folder"]
FLAGS = ["--max-frames", "--max-frame-pixels", "--max-total-pixels", "--max-input-bytes"]


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("kind", KINDS)
def test_each_limit_refuses_one_past_it_naming_its_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, flag: str
) -> None:
    source, extra, input_bytes = make_input(kind, tmp_path)
    limit = passing_value(flag, input_bytes) - 1
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = main(["process", str(source), "-o", str(out_dir / "out.gif"), *extra, *PASSTHROUGH, flag, str(limit)])
    lines = capsys.readouterr().err.splitlines()
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("gifstream: error: ") and f"{flag} {limit}" in lines[0]
    if kind != "raw":  # a raw stream has no name of its own in messages
        assert source.name in lines[0]
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("kind", KINDS)
def test_each_limit_lets_an_input_exactly_at_it_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, flag: str
) -> None:
    source, extra, input_bytes = make_input(kind, tmp_path)
    out = tmp_path / "out.gif"
    limit = str(passing_value(flag, input_bytes))
    assert main(["process", str(source), "-o", str(out), *extra, *PASSTHROUGH, flag, limit]) == 0, capsys.readouterr()
    with Image.open(out) as written:
        assert (written.n_frames, written.size) == (FRAMES, (WIDTH, HEIGHT))


# --------------------------------------------------------------------------- decompression bombs


def lzw_single_pixel() -> bytes:
    """Image data for one pixel of colour 0: LZW minimum code size 2, codes clear (4), 0, end (5) in 3 bits."""
    packed = 4 | 0 << 3 | 5 << 6
    return bytes([2, 2, packed & 0xFF, packed >> 8, 0])


def image_block(left: int, top: int, width: int, height: int) -> bytes:
    return b"\x2c" + struct.pack("<HHHHB", left, top, width, height, 0) + lzw_single_pixel()


def gif_with_screen(width: int, height: int, *blocks: bytes) -> bytes:
    """A GIF89a with a 2-colour global table and the given blocks (a 1x1 image when none is given)."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    return header + b"".join(blocks or (image_block(0, 0, 1, 1),)) + b";"


def gif_with_hidden_frame(width: int, height: int) -> bytes:
    """A 64x64 GIF whose first frame, as Pillow reads it, is ``width``x``height`` and disposed to the background.

    By the specification, ``21 01 00`` is an empty extension, followed by a
    comment and a 1x1 frame. Pillow reads an extension whose first sub-block
    is empty on past its terminator: ``21`` becomes a sub-block length (33),
    and the frame it then finds is the one inside the comment.
    """
    control = b"\x21\xf9\x04\x08\x00\x00\x00\x00"  # graphic control: disposal 2 (Pillow fills the frame's area)
    content = b"\x01" * 31 + b"\x00" + control + image_block(0, 0, width, height)
    comment = b"\x21\xfe" + bytes([len(content)]) + content + b"\x00"
    assert comment[34] == 0  # where Pillow's reading of sub-blocks ends
    return gif_with_screen(64, 64, b"\x21\x01\x00", comment, image_block(0, 0, 1, 1))


CRAFTED_BOMBS = {
    # Screens over Pillow's own MAX_IMAGE_PIXELS (178956970) and screens under it: those only our limit stops.
    "screen-65535x65535": (gif_with_screen(65535, 65535), "logical screen: frame size 65535x65535"),
    "screen-12000x12000": (gif_with_screen(12000, 12000), "logical screen: frame size 12000x12000"),
    "frame-past-a-small-screen": (
        gif_with_screen(64, 64, image_block(0, 0, 1, 1), image_block(0, 0, 12000, 12000)),
        "frame 1: frame size 12000x12000",
    ),
    "frame-hidden-behind-an-empty-extension": (gif_with_hidden_frame(12000, 12000), "frame 0: frame size 12000x12000"),
}
SHARED_BOMBS = {
    "pillow/decompression_bomb.gif": "frame 0: frame size 65535x66601",
    "pillow/decompression_bomb_extents.gif": "frame 1: frame size 65635x65635",
}

# Runs one GIF through the command line in a fresh interpreter, after a tiny GIF has
# warmed every import and thread up, and reports how far the run grew the peak RSS.
MEASURE = """
import json, resource, sys
from gifstream.cli import main
bomb, warm, out = sys.argv[1:4]
flags = ["--restorer", "none", "--flow", "none", "--metrics", "none", "--quiet"]
assert main(["process", warm, "-o", out + "/warm.gif", *flags]) == 0
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
code = main(["process", bomb, "-o", out + "/bomb.gif", *flags])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"code": code, "growth_mb": (after - before) / 1024}))
"""
# A 12000x12000 canvas alone is 137 MiB in Pillow's palette mode: 32 MiB of growth
# allows for interpreter noise and is far below any canvas a bomb makes Pillow fill.
MAX_GROWTH_MB = 32


def run_measured(bomb: Path, tmp_path: Path) -> tuple[dict[str, float], str]:
    warm, out = tmp_path / "warm-in.gif", tmp_path / "out"
    out.mkdir()
    warm.write_bytes(gif_with_screen(8, 8))
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(bomb), str(warm), str(out)], capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
    assert (out / "bomb.gif").exists() is False
    return json.loads(result.stdout), result.stderr.decode()


@pytest.mark.parametrize("name", CRAFTED_BOMBS)
def test_crafted_bombs_are_refused_before_memory_is_spent(tmp_path: Path, name: str) -> None:
    data, message = CRAFTED_BOMBS[name]
    bomb = tmp_path / f"{name}.gif"
    bomb.write_bytes(data)
    measured, stderr = run_measured(bomb, tmp_path)
    assert measured["code"] == 1
    assert stderr.splitlines() == [stderr.strip()] and f"{message} = " in stderr and "--max-frame-pixels" in stderr
    assert measured["growth_mb"] < MAX_GROWTH_MB


@pytest.mark.shared
@pytest.mark.parametrize("name", SHARED_BOMBS)
def test_shared_bombs_are_refused_before_memory_is_spent(shared_testdata: Path, tmp_path: Path, name: str) -> None:
    measured, stderr = run_measured(shared_testdata / "gif-conformance" / name, tmp_path)
    assert measured["code"] == 1
    assert SHARED_BOMBS[name] in stderr and "--max-frame-pixels" in stderr
    assert measured["growth_mb"] < MAX_GROWTH_MB


def test_a_hidden_frame_is_seen_by_the_limits_as_pillow_decodes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Small enough to decode: the frame count and size the limits see must be Pillow's, not the specification's.
    path = tmp_path / "hidden.gif"
    path.write_bytes(gif_with_hidden_frame(100, 100))
    with Image.open(path) as image:
        assert image.size == (100, 100)  # Pillow's canvas grew for the frame inside the comment
    argv = ["process", str(path), "-o", str(tmp_path / "out.gif"), *PASSTHROUGH, "--max-frame-pixels", "9999"]
    assert main(argv) == 1
    assert "frame 0: frame size 100x100 = 10000 pixels exceeds --max-frame-pixels 9999" in capsys.readouterr().err


def test_limits_are_checked_on_a_piped_gif_too() -> None:
    result = gifstream_command("process", "-", "-o", "-", *PASSTHROUGH, stdin=gif_with_screen(12000, 12000))
    stderr = result.stderr.decode()
    assert result.returncode == 1 and result.stdout == b""
    assert stderr.startswith("gifstream: error: standard input: logical screen: frame size 12000x12000")
    assert len(stderr.splitlines()) == 1


def test_input_bytes_are_counted_on_a_piped_video() -> None:
    # FFmpeg reads a pipe itself: the bytes it reads are what the limit counts.
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index, pixels in enumerate(textured_frames(FRAMES, WIDTH, HEIGHT)):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    clip = buffer.getvalue()
    refused = gifstream_command("process", "-", "-o", "-", *PASSTHROUGH, "--max-input-bytes", "1000", stdin=clip)
    stderr = refused.stderr.decode()
    assert refused.returncode == 1 and len(stderr.splitlines()) == 1
    assert stderr.startswith("gifstream: error: standard input: input is ") and "--max-input-bytes 1000" in stderr
    limit = str(len(clip))
    allowed = gifstream_command("process", "-", "-o", "-", *PASSTHROUGH, "--max-input-bytes", limit, stdin=clip)
    assert allowed.returncode == 0, allowed.stderr.decode()
    assert allowed.stdout[:6] == b"GIF89a"
