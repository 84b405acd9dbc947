"""`gifstream process` end to end: GIFs, pipes, raw frames, video with audio, safety of outputs."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import gifstream_command, psnr, read_gif, textured_frames, write_reference_gif

from gifstream.cli import main

PASSTHROUGH = ["--restorer", "none", "--flow", "none", "--metrics", "none", "--quiet"]


@pytest.fixture
def timed_gif(tmp_path: Path) -> tuple[Path, list[int]]:
    durations = [20, 1000, 40, 70, 500, 30, 250, 90]
    path = tmp_path / "timed.gif"
    write_reference_gif(path, textured_frames(len(durations)), durations, loop=3)
    return path, durations


def test_a_gif_keeps_its_frames_durations_and_loop_count(tmp_path: Path, timed_gif: tuple[Path, list[int]]) -> None:
    source, durations = timed_gif
    out = tmp_path / "out.gif"
    assert main(["process", str(source), "-o", str(out), "--restorer", "none", "--flow", "none", "--quiet"]) == 0
    frames_in, _, _ = read_gif(source)
    frames_out, durations_out, loop = read_gif(out)
    assert len(frames_out) == len(frames_in) == len(durations)
    assert durations_out == durations
    assert loop == 3
    for a, b in zip(frames_in, frames_out, strict=True):
        assert psnr(a, b) >= 30


def test_a_gif_without_a_loop_extension_still_plays_once(tmp_path: Path) -> None:
    source = tmp_path / "once.gif"
    write_reference_gif(source, textured_frames(3), [100, 100, 100], loop=None)
    out = tmp_path / "out.gif"
    assert main(["process", str(source), "-o", str(out), *PASSTHROUGH]) == 0
    assert read_gif(out)[2] is None


def test_scale_resizes_with_lanczos_and_the_report_describes_the_run(
    tmp_path: Path, timed_gif: tuple[Path, list[int]]
) -> None:
    source, durations = timed_gif
    out, report = tmp_path / "big.gif", tmp_path / "r.json"
    argv = ["process", str(source), "-o", str(out), "--restorer", "none", "--scale", "2", "--report", str(report)]
    assert main([*argv, "--flow", "none", "--metrics", "psnr", "--quiet"]) == 0
    frames, _, _ = read_gif(out)
    assert frames[0].shape == (96, 128, 3)
    data = json.loads(report.read_text())
    assert data["frames"]["count"] == len(durations)
    assert data["frames"]["duration_ms_total"] == sum(durations)
    assert [s["name"] for s in data["stages"]] == ["resize", "metrics"]
    assert all(s["frames"] == len(durations) for s in data["stages"])
    assert data["peak_rss_mb"] > 0 and data["throughput"]["frames_per_s"] > 0
    assert data["summary"]["psnr"]["count"] == len(durations) and data["summary"]["psnr"]["min"] > 25


def test_gif_through_stdin_and_stdout(timed_gif: tuple[Path, list[int]], tmp_path: Path) -> None:
    source, durations = timed_gif
    result = gifstream_command("process", "-", "-o", "-", *PASSTHROUGH, stdin=source.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    out = tmp_path / "piped.gif"
    out.write_bytes(result.stdout)
    frames, durations_out, loop = read_gif(out)
    assert len(frames) == len(durations) and durations_out == durations and loop == 3


def test_raw_rgb24_on_stdin_with_a_size(tmp_path: Path) -> None:
    frames = textured_frames(5, 64, 48)
    out = tmp_path / "raw.gif"
    stdin = b"".join(f.tobytes() for f in frames)
    result = gifstream_command(
        "process", "-", "--size", "64x48", "--fps", "20", "-o", str(out), *PASSTHROUGH, stdin=stdin
    )
    assert result.returncode == 0, result.stderr.decode()
    decoded, durations, _ = read_gif(out)
    assert len(decoded) == 5 and durations == [50] * 5
    assert all(psnr(a, b) >= 30 for a, b in zip(frames, decoded, strict=True))


def test_raw_rgb24_out_is_byte_exact_for_raw_in() -> None:
    frames = textured_frames(3, 16, 8)
    stdin = b"".join(f.tobytes() for f in frames)
    result = gifstream_command(
        "process", "-", "--size", "16x8", "-o", "-", "--format", "raw", *PASSTHROUGH, stdin=stdin
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == stdin


def test_raw_stream_ending_mid_frame_is_a_clear_error() -> None:
    result = gifstream_command(
        "process", "-", "--size", "16x8", "-o", "-", "--format", "raw", *PASSTHROUGH, stdin=b"x" * 500
    )
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "mid-frame" in lines[0] and "Traceback" not in lines[0]


def make_mp4_with_audio(path: Path, frames: int = 12, fps: int = 12) -> None:
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        audio.layout = "mono"
        for index, pixels in enumerate(textured_frames(frames, 64, 48)):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode())
        seconds = frames / fps
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * seconds)) / 16000)).astype(np.float32)
        for start in range(0, tone.size, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, start
            container.mux(audio.encode(chunk))
        container.mux(audio.encode())


def test_mp4_with_aac_audio_keeps_the_audio_and_every_frame(tmp_path: Path) -> None:
    source, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_mp4_with_audio(source)
    assert main(["process", str(source), "-o", str(out), *PASSTHROUGH]) == 0
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 1
        audio_seconds = float(container.streams.audio[0].duration * container.streams.audio[0].time_base)
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 12
    assert audio_seconds == pytest.approx(1.0, abs=0.1)


def test_mp4_to_gif_keeps_every_frame(tmp_path: Path) -> None:
    source, out = tmp_path / "in.mp4", tmp_path / "out.gif"
    make_mp4_with_audio(source)
    assert main(["process", str(source), "-o", str(out), *PASSTHROUGH]) == 0
    frames, durations, _ = read_gif(out)
    assert len(frames) == 12
    assert sum(durations) == pytest.approx(1000, abs=10)


def test_an_existing_output_is_not_replaced_without_overwrite(
    tmp_path: Path, timed_gif: tuple[Path, list[int]]
) -> None:
    source, _ = timed_gif
    out = tmp_path / "keep.gif"
    out.write_bytes(b"precious")
    result = gifstream_command("process", str(source), "-o", str(out), *PASSTHROUGH)
    assert result.returncode != 0 and "--overwrite" in result.stderr.decode()
    assert out.read_bytes() == b"precious"
    assert main(["process", str(source), "-o", str(out), *PASSTHROUGH, "--overwrite"]) == 0
    assert out.read_bytes()[:6] == b"GIF89a"


def test_writing_over_the_input_is_refused(timed_gif: tuple[Path, list[int]]) -> None:
    source, _ = timed_gif
    before = source.read_bytes()
    result = gifstream_command("process", str(source), "-o", str(source), "--overwrite", *PASSTHROUGH)
    assert result.returncode != 0 and "is the input" in result.stderr.decode()
    assert source.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"hello, this is text\n" * 10, ""), (b"GIF89a\x10\x00", "")],
    ids=["zero-byte", "text", "truncated-gif"],
)
def test_bad_input_fails_with_one_line_and_leaves_no_output(tmp_path: Path, content: bytes, message: str) -> None:
    source, out = tmp_path / "bad.gif", tmp_path / "out.gif"
    source.write_bytes(content)
    result = gifstream_command("process", str(source), "-o", str(out), *PASSTHROUGH)
    stderr = result.stderr.decode().strip()
    assert result.returncode == 1, stderr
    assert len(stderr.splitlines()) == 1 and stderr.startswith("gifstream: error:") and message in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gif"]


def test_info_describes_size_frames_durations_and_loop(timed_gif: tuple[Path, list[int]]) -> None:
    source, durations = timed_gif
    result = gifstream_command("info", str(source), "--json")
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    assert data["size"] == "64x48" and data["frames"] == len(durations)
    assert data["duration_ms"] == sum(durations) and data["loop"] == "3" and data["alpha"] is False
