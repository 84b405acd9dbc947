"""Broken inputs through `gifstream process`: exit 1, one line naming the problem, no traceback, no output left.

Zero-byte, text and truncated GIF inputs and a raw stream cut short on its way
to standard output are covered in test_cli_process.py; these are the rest.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import av
import pytest
from helpers import gifstream_command, textured_frames
from PIL import Image

from gifstream.cli import main

PASSTHROUGH = ["--restorer", "none", "--flow", "none", "--metrics", "none", "--quiet"]


def write_mp4(path: Path, frames: int = 10, *, index_first: bool = False, codec_options: dict | None = None) -> None:
    options = {"movflags": "+faststart"} if index_first else {}
    with av.open(str(path), "w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=10, options={"preset": "ultrafast", **(codec_options or {})})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index, pixels in enumerate(textured_frames(frames, 64, 48)):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def fails_cleanly(capsys: pytest.CaptureFixture[str], argv: list[str], *fragments: str) -> str:
    """Run the command line here; it must exit 1 with one error line holding every fragment."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith("gifstream: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def only(folder: Path, *names: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def test_mp4_cut_in_half_before_its_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole = tmp_path / "whole.mp4"
    write_mp4(whole)
    data = whole.read_bytes()
    assert data.index(b"moov") > data.index(b"mdat")  # the index comes last: half the file has none
    whole.unlink()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    fails_cleanly(
        capsys, ["process", str(cut), "-o", str(tmp_path / "out.gif"), *PASSTHROUGH], "cut.mp4 cannot be read"
    )
    only(tmp_path, "cut.mp4")


def test_mp4_with_its_pictures_cut_leaves_no_partial_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Index first, pictures cut: the run starts writing, then stops at the first missing frame.
    whole = tmp_path / "whole.mp4"
    write_mp4(whole, frames=30, index_first=True, codec_options={"crf": "0"})
    data = whole.read_bytes()
    whole.unlink()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    line = fails_cleanly(capsys, ["process", str(cut), "-o", str(tmp_path / "out.gif"), *PASSTHROUGH], "cut.mp4")
    failed_at = int(re.search(r"cannot decode frame (\d+)", line).group(1))  # type: ignore[union-attr]
    assert 5 < failed_at < 30  # frames before it were already written
    only(tmp_path, "cut.mp4")


@pytest.mark.parametrize("box", [b"stsz", b"stco", b"stsc"])
def test_mp4_whose_sample_tables_are_zeroed(tmp_path: Path, capsys: pytest.CaptureFixture[str], box: bytes) -> None:
    # FFmpeg opens such a file and yields no picture: the error must blame the input, not the output.
    whole = tmp_path / "whole.mp4"
    write_mp4(whole, index_first=True)
    data = bytearray(whole.read_bytes())
    whole.unlink()
    at = data.index(box)
    data[at + 4 : at + 40] = bytes(36)
    bad = tmp_path / "zeroed.mp4"
    bad.write_bytes(data)
    argv = ["process", str(bad), "-o", str(tmp_path / "out.gif"), *PASSTHROUGH]
    fails_cleanly(capsys, argv, "zeroed.mp4 holds no video frame that can be decoded")
    only(tmp_path, "zeroed.mp4")


def test_mp4_with_a_corrupt_decoder_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole = tmp_path / "whole.mp4"
    write_mp4(whole, index_first=True)
    data = bytearray(whole.read_bytes())
    whole.unlink()
    at = data.index(b"avcC")  # H.264's sequence and picture parameter sets
    data[at + 4 : at + 40] = b"\xff" * 36
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(data)
    argv = ["process", str(bad), "-o", str(tmp_path / "out.mp4"), *PASSTHROUGH]
    fails_cleanly(capsys, argv, "corrupt.mp4: cannot decode frame 0")
    only(tmp_path, "corrupt.mp4")


def test_video_whose_codec_this_ffmpeg_cannot_decode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "clip.mkv"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index, pixels in enumerate(textured_frames(3, 64, 48)):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    data = clip.read_bytes()
    clip.unlink()
    unknown = tmp_path / "unknown.mkv"
    unknown.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_XPEG4/ISO/AVC"))  # a Matroska codec id nobody has
    argv = ["process", str(unknown), "-o", str(tmp_path / "out.gif"), *PASSTHROUGH]
    fails_cleanly(capsys, argv, "unknown.mkv", "video codec is not supported")
    only(tmp_path, "unknown.mkv")


def test_raw_stream_ending_mid_frame_leaves_no_partial_gif(tmp_path: Path) -> None:
    frames = textured_frames(4, 16, 8)
    stdin = b"".join(f.tobytes() for f in frames[:3]) + frames[3].tobytes()[:100]
    out = tmp_path / "out.gif"
    result = gifstream_command("process", "-", "--size", "16x8", "-o", str(out), *PASSTHROUGH, stdin=stdin)
    stderr = result.stderr.decode()
    assert result.returncode == 1 and len(stderr.splitlines()) == 1 and "Traceback" not in stderr
    assert "ended mid-frame: got 100 of 384 bytes for frame 3" in stderr
    assert list(tmp_path.iterdir()) == []


def test_size_that_does_not_divide_the_raw_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "frames.rgb"
    raw.write_bytes(b"".join(f.tobytes() for f in textured_frames(5, 16, 8)))  # 1920 bytes = 5.33 frames of 15x8
    argv = ["process", str(raw), "--size", "15x8", "-o", str(tmp_path / "out.gif"), *PASSTHROUGH]
    fails_cleanly(capsys, argv, "got 120 of 360 bytes for frame 5", "is --size right?")
    only(tmp_path, "frames.rgb")


def test_folder_of_images_of_different_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, pixels in enumerate(textured_frames(3, 32, 24)):
        Image.fromarray(pixels).save(folder / f"{index}.png")
    Image.fromarray(textured_frames(1, 32, 20)[0]).save(folder / "3.png")
    argv = ["process", str(folder), "-o", str(tmp_path / "out.gif"), *PASSTHROUGH]
    fails_cleanly(capsys, argv, "3.png is 32x20 but 0.png is 32x24")
    only(tmp_path, "frames")


def test_folder_with_an_image_cut_short(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Its header is intact, so the run starts; the error comes when its pixels are decoded, mid-run.
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, pixels in enumerate(textured_frames(4, 32, 24)):
        Image.fromarray(pixels).save(folder / f"{index}.png")
    data = (folder / "2.png").read_bytes()
    (folder / "2.png").write_bytes(data[: len(data) // 2])
    argv = ["process", str(folder), "-o", str(tmp_path / "out.gif"), *PASSTHROUGH]
    fails_cleanly(capsys, argv, "2.png cannot be decoded")
    only(tmp_path, "frames")


def test_input_that_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["process", str(tmp_path / "missing.gif"), "-o", str(tmp_path / "out.gif"), *PASSTHROUGH]
    fails_cleanly(capsys, argv, "missing.gif does not exist")
    assert list(tmp_path.iterdir()) == []


def test_gif_without_any_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.gif"
    empty.write_bytes(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")  # a screen descriptor, then the trailer
    argv = ["process", str(empty), "-o", str(tmp_path / "out.gif"), *PASSTHROUGH]
    fails_cleanly(capsys, argv, "empty.gif holds no image")
    only(tmp_path, "empty.gif")


def test_gif_whose_first_frame_is_cut_inside_its_colour_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The message names the frame, not a Python object (Pillow's own message names only the file object).
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0x81)  # a 4-colour local table follows...
    data = b"GIF89a\x01\x00\x01\x00\x00\x00\x00" + descriptor + b"\x00\x00\x00"  # ...cut after one colour
    cut = tmp_path / "cut.gif"
    cut.write_bytes(data)
    line = fails_cleanly(capsys, ["process", str(cut), "-o", str(tmp_path / "out.gif"), *PASSTHROUGH])
    assert line == f"gifstream: error: {cut}: frame 0 is truncated or corrupt (its blocks cannot be parsed)"
    only(tmp_path, "cut.gif")
