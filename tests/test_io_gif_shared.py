"""GifSource against other projects' GIF test files and reference renderings (../shared/testdata)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gifstream.engine import Frame, InputError, LimitExceededError, StreamInfo
from gifstream.io.gif import GifSink, GifSource

pytestmark = pytest.mark.shared


def read_all(path: Path | io.BytesIO) -> tuple[StreamInfo, list[Frame]]:
    source = GifSource(path)
    try:
        info = source.open()
        return info, list(source.frames())
    finally:
        source.close()


def durations(path: Path) -> list[float]:
    source = GifSource(path)
    try:
        source.open()
        return list(source.durations_ms())
    finally:
        source.close()


@pytest.fixture(scope="module")
def gifs(shared_testdata: Path) -> Path:
    return shared_testdata / "gif-conformance"


# Pillow's own tests compare frame `index` of each GIF with these RGBA renderings.
@pytest.mark.parametrize(
    ("gif", "expected", "index"),
    [
        ("different_transparency.gif", "different_transparency_merged.png", 1),
        ("dispose_none_load_end.gif", "dispose_none_load_end_second.png", 1),
        ("dispose_prev_first_frame.gif", "dispose_prev_first_frame_seeked.png", 1),
        ("missing_background.gif", "missing_background_first_frame.png", 1),
    ],
)
def test_compositing_matches_pillow_reference_renderings(gifs: Path, gif: str, expected: str, index: int) -> None:
    info, frames = read_all(gifs / "pillow" / gif)
    with Image.open(gifs / "pillow" / "expected" / expected) as reference:
        rgba = np.asarray(reference.convert("RGBA"))
    frame = frames[index]
    assert frame.pixels.shape == (*rgba.shape[:2], 3) == (info.height, info.width, 3)
    np.testing.assert_array_equal(frame.pixels, rgba[..., :3])
    assert frame.alpha is not None
    np.testing.assert_array_equal(frame.alpha, rgba[..., 3])


def test_transparent_dispose_pixel_values(gifs: Path) -> None:
    # The per-pixel values Pillow's test_transparent_dispose expects for frames 1 and 2.
    _, frames = read_all(gifs / "pillow" / "transparent_dispose.gif")
    expected = {
        1: [(0, 255, 24, 255), (0, 0, 255, 255), (0, 255, 24, 255)],
        2: [(0, 0, 0, 0), (0, 0, 255, 255), (0, 0, 0, 0)],
    }
    for index, pixels in expected.items():
        frame = frames[index]
        assert frame.alpha is not None
        got = [(*frame.pixels[0, x].tolist(), int(frame.alpha[0, x])) for x in range(3)]
        assert got == pixels
    assert [f.duration_ms for f in frames] == [100.0, 500.0, 500.0]


def test_disposal_to_background_clears_to_transparent(gifs: Path) -> None:
    # Pillow's test_dispose_background_transparency: pixel (35, 30) of frame 2 is see-through.
    _, frames = read_all(gifs / "pillow" / "dispose_bgnd_transparency.gif")
    assert frames[2].alpha is not None and frames[2].alpha[30, 35] == 0


# giflib's gif2rgb paints every image opaquely onto one screen; for these files
# (opaque, each image painted over the last) that equals the composited frame.
@pytest.mark.parametrize(
    ("name", "frame"),
    [("gifgrid", 0), ("porsche", 0), ("solid2", 0), ("treescap", 0), ("treescap-interlaced", 0), ("fire", -1)],
)
def test_compositing_matches_giflib_gif2rgb(gifs: Path, name: str, frame: int) -> None:
    info, frames = read_all(gifs / "giflib" / "pic" / f"{name}.gif")
    expected = np.fromfile(gifs / "giflib" / "expected_rgb" / f"{name}.rgb", np.uint8)
    np.testing.assert_array_equal(frames[frame].pixels, expected.reshape(info.height, info.width, 3))


def test_transparent_gif_matches_gif2rgb_where_opaque(gifs: Path) -> None:
    info, (frame,) = read_all(gifs / "giflib" / "pic" / "x-trans.gif")
    expected = np.fromfile(gifs / "giflib" / "expected_rgb" / "x-trans.rgb", np.uint8).reshape(info.height, -1, 3)
    assert frame.alpha is not None
    opaque = frame.alpha == 255
    assert 0 < opaque.sum() < opaque.size
    np.testing.assert_array_equal(frame.pixels[opaque], expected[opaque])


@pytest.mark.parametrize("name", ["test_extents.gif", "test_extents_transparency.gif"])
def test_frames_past_the_screen_are_cropped_to_it(gifs: Path, name: str) -> None:
    info, frames = read_all(gifs / "pillow" / name)
    assert (info.width, info.height) == (100, 100) and len(frames) == 2
    assert all(f.pixels.shape == (100, 100, 3) for f in frames)
    with Image.open(gifs / "pillow" / name) as image:
        image.seek(1)
        assert image.size == (150, 150)  # Pillow grew its canvas for frame 1
        canvas = np.asarray(image.convert("RGBA"))
    np.testing.assert_array_equal(frames[1].pixels, canvas[:100, :100, :3])


@pytest.mark.parametrize(
    ("path", "delays_cs", "loop"),
    [
        ("pillow/dispose_bgnd_transparency.gif", [200, 20, 20, 50, 10, 50, 10, 50, 10, 20], 0),
        ("image-gif/samples/anim-gr.gif", [1, 10000], 0),
        ("pillow/duplicate_number_of_loops.gif", [0, 0], 2),
        ("giflib/pic/welcome2.gif", [100] * 6, 1000),
        ("pillow/dispose_none_load_end.gif", [0, 0], None),
        ("image-gif/samples/moon_impact.gif", [15] * 14, 10),  # junk bytes after the trailer
    ],
)
def test_delays_and_loop_as_the_file_says(gifs: Path, path: str, delays_cs: list[int], loop: int | None) -> None:
    info, frames = read_all(gifs / path)
    expected_ms = [cs * 10.0 for cs in delays_cs]
    assert [f.duration_ms for f in frames] == expected_ms
    assert durations(gifs / path) == expected_ms
    assert info.frame_count == len(delays_cs) and info.loop == loop
    assert [f.pts for f in frames] == pytest.approx(np.cumsum([0, *expected_ms[:-1]]) / 1000)


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("pillow/decompression_bomb.gif", LimitExceededError, "frame 0: .*--max-frame-pixels"),
        ("pillow/decompression_bomb_extents.gif", LimitExceededError, "frame 1: .*--max-frame-pixels"),
        ("image-gif/crashtest/issue-96-small-codesize-2.gif", LimitExceededError, "logical screen"),
        ("image-gif/stall/issue-101-infinite-empty-loop.gif", LimitExceededError, "logical screen"),
        ("pillow/zero_width.gif", InputError, r"empty logical screen \(0x32\)"),
        ("image-gif/crashtest/issue-96-small-codesize.gif", InputError, r"empty logical screen \(185x0\)"),
        ("libnsgif/afl/afl-000001.gif", InputError, r"is not a GIF \(starts with b'\\xaf2'\)"),
        ("libnsgif/lzwof.gif", InputError, "frame 0 is truncated or corrupt"),
        ("libnsgif/lzwoob.gif", InputError, "frame 0 is truncated or corrupt"),
        ("libnsgif/afl/afl-000140.gif", InputError, "frame 0 is truncated or corrupt"),
        ("libnsgif/afl/afl-000658.gif", InputError, "frame 1 is truncated or corrupt"),
        ("image-gif/crashtest/issue-117-out-of-range.gif", InputError, "frame 0 is truncated or corrupt"),
    ],
)
def test_hostile_files_fail_fast_with_a_clear_error(gifs: Path, path: str, error: type, message: str) -> None:
    start = time.perf_counter()
    with pytest.raises(error, match=message) as caught:
        read_all(gifs / path)
    assert type(caught.value) is error
    assert path.rsplit("/", 1)[1] in str(caught.value)  # the message names the file
    assert time.perf_counter() - start < 2


def test_real_gif_cut_short_names_the_frame(gifs: Path) -> None:
    data = (gifs / "pillow" / "chi.gif").read_bytes()
    _, complete = read_all(gifs / "pillow" / "chi.gif")
    source = GifSource(io.BytesIO(data[: len(data) // 2 + 100]))
    source.open()
    good: list[Frame] = []
    with pytest.raises(InputError, match=r"frame (\d+) is truncated or corrupt") as caught:
        good.extend(source.frames())
    source.close()
    assert f"frame {len(good)} is truncated" in str(caught.value) and 5 < len(good) < 31
    for frame, reference in zip(good, complete, strict=False):
        np.testing.assert_array_equal(frame.pixels, reference.pixels)


def test_real_transparent_animation_round_trip(gifs: Path, tmp_path: Path) -> None:
    info, frames = read_all(gifs / "pillow" / "chi.gif")
    out = tmp_path / "chi.gif"
    sink = GifSink(out)
    sink.open(info)
    for frame in frames:
        sink.write(frame)
    sink.finish()
    again_info, again = read_all(out)
    assert (again_info.loop, again_info.has_alpha, len(again)) == (0, True, 31)
    assert [f.duration_ms for f in again] == [f.duration_ms for f in frames] == [100.0] * 31
    for before, after in zip(frames, again, strict=True):
        assert before.alpha is not None and after.alpha is not None
        np.testing.assert_array_equal(after.alpha, before.alpha)
        opaque = before.alpha == 255
        mse = np.mean((before.pixels[opaque].astype(float) - after.pixels[opaque]) ** 2)
        assert mse == 0 or 10 * np.log10(255**2 / mse) >= 30
