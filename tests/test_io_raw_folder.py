"""Raw rgb24 streams and image folders, in and out."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gifstream.engine import ConfigError, Frame, InputError, LimitExceededError, OutputError, StreamInfo
from gifstream.io.folder import DURATIONS_FILE, FolderSource, PngFolderSink, natural_key
from gifstream.io.limits import Limits
from gifstream.io.raw import RawSink, RawSource

W, H = 5, 3


def random_frames(count: int, alpha: bool = False, seed: int = 0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    return [
        Frame(
            i,
            rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
            duration_ms=40.0,
            alpha=rng.integers(0, 256, (H, W), dtype=np.uint8) if alpha else None,
        )
        for i in range(count)
    ]


def read_raw(stream: io.RawIOBase | io.BufferedIOBase, fps: float = 25.0) -> tuple[StreamInfo, list[Frame]]:
    source = RawSource(stream, W, H, fps=fps)  # type: ignore[arg-type]
    info = source.open()
    try:
        return info, list(source.frames())
    finally:
        source.close()


class TrickleStream(io.RawIOBase):
    """A stream that hands out at most 7 bytes per read, like a slow pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(7, len(buffer), len(self._data))
        buffer[:count] = self._data[:count]
        self._data = self._data[count:]
        return count


# --------------------------------------------------------------------------- raw


def test_raw_round_trip_is_exact() -> None:
    frames = random_frames(4, alpha=True)
    out = io.BytesIO()
    sink = RawSink(out)
    sink.open(StreamInfo(width=W, height=H, format="test"))
    for frame in frames:
        sink.write(frame)
    sink.finish()
    assert len(out.getvalue()) == 4 * W * H * 3  # alpha dropped
    info, again = read_raw(io.BytesIO(out.getvalue()), fps=25.0)
    assert (info.width, info.height, info.format, info.fps) == (W, H, "rawvideo", 25.0)
    for before, after in zip(frames, again, strict=True):
        np.testing.assert_array_equal(after.pixels, before.pixels)
        assert after.alpha is None
    assert [f.duration_ms for f in again] == [40.0] * 4
    assert [f.pts for f in again] == [0.0, 0.04, 0.08, 0.12]


def test_raw_source_handles_short_reads() -> None:
    frames = random_frames(3)
    data = b"".join(f.pixels.tobytes() for f in frames)
    _, again = read_raw(TrickleStream(data))
    assert len(again) == 3
    for before, after in zip(frames, again, strict=True):
        np.testing.assert_array_equal(after.pixels, before.pixels)


def test_raw_source_reads_a_pipe_written_in_pieces() -> None:
    frames = random_frames(3)
    data = b"".join(f.pixels.tobytes() for f in frames)
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb", buffering=0) as pipe:
            for start in range(0, len(data), 11):
                pipe.write(data[start : start + 11])

    feeder = threading.Thread(target=feed)
    feeder.start()
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        _, again = read_raw(pipe)
    feeder.join()
    assert [f.pixels.tobytes() for f in again] == [f.pixels.tobytes() for f in frames]


def test_raw_stream_ending_mid_frame() -> None:
    data = bytes(W * H * 3 * 2 + 10)
    with pytest.raises(InputError) as caught:
        read_raw(io.BytesIO(data))
    assert str(caught.value) == ("raw rgb24 stream ended mid-frame: got 10 of 45 bytes for frame 2 (is --size right?)")


def test_empty_raw_stream() -> None:
    with pytest.raises(InputError, match="raw rgb24 stream is empty"):
        read_raw(io.BytesIO(b""))


def test_raw_limits_and_options() -> None:
    with pytest.raises(LimitExceededError, match=r"frame 2: .*--max-frames 2"):
        list(RawSource(io.BytesIO(bytes(W * H * 3 * 3)), W, H, limits=Limits(max_frames=2)).frames())
    with pytest.raises(ConfigError, match="--size"):
        RawSource(io.BytesIO(), 0, 3)
    with pytest.raises(ConfigError, match="--fps"):
        RawSource(io.BytesIO(), 2, 3, fps=0)


def test_raw_sink_leaves_the_stream_open_and_refuses_a_new_size() -> None:
    out = io.BytesIO()
    sink = RawSink(out)
    sink.open(StreamInfo(width=W, height=H, format="test"))
    sink.write(random_frames(1)[0])
    with pytest.raises(OutputError, match="frame 1 is 4x3 but the raw stream started at 5x3"):
        sink.write(Frame(1, np.zeros((3, 4, 3), np.uint8)))
    sink.abort()
    assert not out.closed and len(out.getvalue()) == W * H * 3


# --------------------------------------------------------------------------- folders


def save_png(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
    Image.fromarray(rgb if alpha is None else np.dstack((rgb, alpha))).save(path)


def read_folder(path: Path, fps: float = 10.0) -> tuple[StreamInfo, list[Frame]]:
    source = FolderSource(path, fps=fps)
    try:
        info = source.open()
        return info, list(source.frames())
    finally:
        source.close()


def test_natural_order(tmp_path: Path) -> None:
    for number in (10, 2, 1, 33, 100):
        save_png(tmp_path / f"frame{number}.png", np.full((H, W, 3), number, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    info, frames = read_folder(tmp_path, fps=20.0)
    assert [int(f.pixels[0, 0, 0]) for f in frames] == [1, 2, 10, 33, 100]
    assert (info.frame_count, info.has_alpha) == (5, False)
    assert [f.duration_ms for f in frames] == [50.0] * 5
    assert sorted(["b10", "a2", "b9", "a10"], key=natural_key) == ["a2", "a10", "b9", "b10"]


def test_folder_images_must_share_a_size(tmp_path: Path) -> None:
    save_png(tmp_path / "a1.png", np.zeros((H, W, 3), np.uint8))
    save_png(tmp_path / "a2.png", np.zeros((H, W + 1, 3), np.uint8))
    with pytest.raises(InputError, match=r"a2\.png is 6x3 but a1\.png is 5x3"):
        read_folder(tmp_path)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(InputError, match="holds no images"):
        read_folder(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        read_folder(tmp_path / "missing")


def test_folder_with_rgba_keeps_alpha_and_mixed_formats_load(tmp_path: Path) -> None:
    (rgba,) = random_frames(1, alpha=True)
    save_png(tmp_path / "f1.png", rgba.pixels, rgba.alpha)
    Image.fromarray(np.full((H, W, 3), 200, np.uint8)).save(tmp_path / "f2.bmp")
    info, frames = read_folder(tmp_path)
    assert info.has_alpha
    np.testing.assert_array_equal(frames[0].pixels, rgba.pixels)
    np.testing.assert_array_equal(frames[0].alpha, rgba.alpha)
    np.testing.assert_array_equal(frames[1].alpha, 255)  # an opaque image in a stream with alpha
    np.testing.assert_array_equal(frames[1].pixels, 200)


def write_folder(target: Path, frames: list[Frame], overwrite: bool = False) -> PngFolderSink:
    sink = PngFolderSink(target, overwrite=overwrite)
    sink.open(StreamInfo(width=W, height=H, format="test"))
    for frame in frames:
        sink.write(frame)
    return sink


def test_png_folder_round_trip_with_durations(tmp_path: Path) -> None:
    frames = random_frames(3, alpha=True)
    for frame, duration in zip(frames, [1000 / 30, 0.0, 1234.5], strict=True):
        frame.duration_ms = duration
    target = tmp_path / "out"
    write_folder(target, frames).finish()
    names = {p.name for p in target.iterdir()}
    assert names == {DURATIONS_FILE, "frame_000000.png", "frame_000001.png", "frame_000002.png"}
    info, again = read_folder(target, fps=99.0)
    assert [f.duration_ms for f in again] == [1000 / 30, 0.0, 1234.5]
    assert info.has_alpha
    for before, after in zip(frames, again, strict=True):
        np.testing.assert_array_equal(after.pixels, before.pixels)
        np.testing.assert_array_equal(after.alpha, before.alpha)


def test_frames_csv_must_match_the_images(tmp_path: Path) -> None:
    save_png(tmp_path / "f1.png", np.zeros((H, W, 3), np.uint8))
    (tmp_path / DURATIONS_FILE).write_text("index,duration_ms\n0,40\n1,40\n")
    with pytest.raises(InputError, match="lists 2 frame durations but the folder holds 1 images"):
        read_folder(tmp_path)
    (tmp_path / DURATIONS_FILE).write_text("index,duration_ms\n0,soon\n")
    with pytest.raises(InputError, match="line 2"):
        read_folder(tmp_path)


def test_png_folder_sink_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "out"
    sink = write_folder(target, random_frames(2))
    assert not target.exists()  # nothing at the target before finish
    sink.abort()
    assert list(tmp_path.iterdir()) == []  # and no temporary folder after abort


def test_png_folder_sink_refuses_or_replaces_an_existing_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(OutputError, match="exists; pass --overwrite"):
        write_folder(target, [])
    sink = write_folder(target, random_frames(2), overwrite=True)
    assert (target / "old.txt").exists()  # the old folder stays until finish
    sink.finish()
    assert {p.name for p in target.iterdir()} == {DURATIONS_FILE, "frame_000000.png", "frame_000001.png"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
