"""GifSource and GifSink on small GIFs built here with Pillow's own encoder."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import GifImagePlugin, Image

from gifstream.engine import ConfigError, Frame, InputError, LimitExceededError, OutputError, StreamInfo
from gifstream.io.gif import GifOptions, GifSink, GifSource
from gifstream.io.limits import Limits

WIDTH, HEIGHT = 64, 48
DURATIONS_MS = [20, 40, 100, 1000, 70, 30, 250, 500]
# 16 clearly distinct colours; index 15 is the transparent one in the transparent GIFs.
PALETTE = np.array(
    [
        (0, 0, 0), (255, 255, 255), (200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40),
        (40, 220, 220), (220, 40, 220), (120, 60, 20), (20, 120, 60), (60, 20, 120), (128, 128, 128),
        (250, 150, 0), (0, 150, 250), (150, 0, 250), (90, 90, 90),
    ],
    dtype=np.uint8,
)  # fmt: skip
TRANSPARENT = 15


def index_frames(count: int = len(DURATIONS_MS), transparent_band: bool = False) -> list[np.ndarray]:
    """Palette indices: a tiled background and a square that moves, so every frame differs."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = []
    for i in range(count):
        indices = ((xx // 8 + yy // 8) % 12).astype(np.uint8)
        indices[8 + 2 * i : 20 + 2 * i, 4 + 6 * i : 16 + 6 * i] = 12 + i % 3
        indices[-1, :15] = np.arange(15)  # every opaque colour in every frame (a stable palette)
        if transparent_band:
            indices[:, (5 * i) % WIDTH : (5 * i) % WIDTH + 12] = TRANSPARENT
        frames.append(indices)
    return frames


def write_reference_gif(target: Path | io.BytesIO, frames: list[np.ndarray], loop: int | None, **save: object) -> None:
    """Encode palette frames with Pillow's encoder (an independent writer, sub-rectangles and all)."""
    images = []
    for indices in frames:
        image = Image.frombytes("P", (WIDTH, HEIGHT), indices.tobytes())
        image.putpalette(PALETTE.tobytes())
        images.append(image)
    options: dict[str, object] = {
        "save_all": True,
        "append_images": images[1:],
        "duration": DURATIONS_MS[: len(frames)],
    }
    if loop is not None:
        options["loop"] = loop
    images[0].save(target, format="GIF", **options, **save)


def read_all(src: Path | io.BytesIO, limits: Limits | None = None) -> tuple[StreamInfo, list[Frame]]:
    source = GifSource(src, limits=limits or Limits())
    try:
        info = source.open()
        return info, list(source.frames())
    finally:
        source.close()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def encode(frames: list[Frame], info: StreamInfo, target: Path | io.BytesIO, options: GifOptions | None = None) -> None:
    sink = GifSink(target, options or GifOptions())
    sink.open(info)
    for frame in frames:
        sink.write(frame)
    sink.finish()


@pytest.fixture
def opaque_gif(tmp_path: Path) -> Path:
    path = tmp_path / "in.gif"
    # optimize=False: Pillow would otherwise turn unchanged pixels transparent.
    write_reference_gif(path, index_frames(), loop=3, optimize=False)
    return path


@pytest.fixture
def transparent_gif(tmp_path: Path) -> Path:
    path = tmp_path / "alpha.gif"
    write_reference_gif(path, index_frames(transparent_band=True), loop=0, transparency=TRANSPARENT, disposal=2)
    return path


# --------------------------------------------------------------------------- GifSource


def test_source_decodes_every_frame_exactly(opaque_gif: Path) -> None:
    info, frames = read_all(opaque_gif)
    assert (info.width, info.height, info.format) == (WIDTH, HEIGHT, "gif")
    assert (info.frame_count, info.loop, info.has_alpha, info.path) == (8, 3, False, str(opaque_gif))
    assert [f.index for f in frames] == list(range(8))
    for frame, indices in zip(frames, index_frames(), strict=True):
        assert frame.pixels.dtype == np.uint8 and frame.pixels.flags.c_contiguous and frame.pixels.flags.writeable
        np.testing.assert_array_equal(frame.pixels, PALETTE[indices])
        assert frame.alpha is None
    assert [f.duration_ms for f in frames] == DURATIONS_MS
    assert [f.pts for f in frames] == pytest.approx(np.cumsum([0, *DURATIONS_MS[:-1]]) / 1000)


def test_source_gives_alpha_for_transparent_gif(transparent_gif: Path) -> None:
    info, frames = read_all(transparent_gif)
    assert info.has_alpha and info.loop == 0
    for frame, indices in zip(frames, index_frames(transparent_band=True), strict=True):
        opaque = indices != TRANSPARENT
        assert frame.alpha is not None
        np.testing.assert_array_equal(frame.alpha, np.where(opaque, 255, 0))
        np.testing.assert_array_equal(frame.pixels[opaque], PALETTE[indices][opaque])


def test_durations_without_decoding(opaque_gif: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = GifSource(opaque_gif)
    source.open()
    try:

        def no_decoding(*_: object) -> None:
            raise AssertionError("durations_ms decoded pixels")

        monkeypatch.setattr(Image.Image, "load", no_decoding)
        assert list(source.durations_ms()) == DURATIONS_MS
    finally:
        source.close()


def test_source_reads_a_non_seekable_pipe(opaque_gif: Path) -> None:
    data = opaque_gif.read_bytes()
    fds_before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as pipe:
            for start in range(0, len(data), 1000):
                pipe.write(data[start : start + 1000])

    feeder = threading.Thread(target=feed)
    feeder.start()
    with os.fdopen(read_fd, "rb") as pipe:
        assert not pipe.seekable()
        info, frames = read_all(pipe)  # type: ignore[arg-type]
    feeder.join()
    assert info.path is None and info.frame_count == 8 and info.loop == 3
    for frame, indices in zip(frames, index_frames(), strict=True):
        np.testing.assert_array_equal(frame.pixels, PALETTE[indices])
    if fds_before is not None:
        # The spool file was closed (and so removed) by close().
        assert len(os.listdir("/proc/self/fd")) == fds_before


def test_pipe_over_the_input_limit(opaque_gif: Path) -> None:
    read_fd, write_fd = os.pipe()
    data = opaque_gif.read_bytes()

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    with os.fdopen(read_fd, "rb") as pipe, pytest.raises(LimitExceededError, match="--max-input-bytes 100"):
        GifSource(pipe, limits=Limits(max_input_bytes=100)).open()
    feeder.join()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), r"is not a GIF \(starts with b'\\x89PNG\\r\\n'\)"),
        (b"GIF89a\x10\x00", "truncated: its GIF header has 8 of 13 bytes"),
        (b"GIF89a\x00\x00\x10\x00\x00\x00\x00;", r"empty logical screen \(0x16\)"),
        (b"GIF89a\x10\x00\x10\x00\x00\x00\x00;", "holds no image"),
    ],
)
def test_source_refuses_bad_input(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_all(io.BytesIO(data))


def test_gif_cut_inside_a_frame_names_that_frame(opaque_gif: Path) -> None:
    with Image.open(opaque_gif) as image:
        image.seek(5)
        frame5_data = image.tile[0].offset  # where frame 5's LZW data starts
    source = GifSource(io.BytesIO(opaque_gif.read_bytes()[: frame5_data + 20]))
    source.open()
    good: list[Frame] = []
    with pytest.raises(InputError, match=r"^input stream: frame 5 is truncated or corrupt"):
        good.extend(source.frames())
    source.close()
    assert len(good) == 5  # the complete frames before it, exactly; no partial frame
    for frame, indices in zip(good, index_frames(), strict=False):
        np.testing.assert_array_equal(frame.pixels, PALETTE[indices])


def test_missing_file() -> None:
    with pytest.raises(InputError, match="does not exist"):
        GifSource("/nonexistent/x.gif").open()


def test_limits(opaque_gif: Path) -> None:
    with pytest.raises(LimitExceededError, match="--max-frames 3"):
        read_all(opaque_gif, Limits(max_frames=3))
    with pytest.raises(LimitExceededError, match=r"logical screen: .* exceeds --max-frame-pixels 1000"):
        read_all(opaque_gif, Limits(max_frame_pixels=1000))
    with pytest.raises(LimitExceededError, match="frame 2: decoded pixels exceed --max-total-pixels"):
        read_all(opaque_gif, Limits(max_total_pixels=WIDTH * HEIGHT * 2))


def test_pillow_bomb_limit_becomes_limit_error(opaque_gif: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(LimitExceededError, match="MAX_IMAGE_PIXELS 1000"):
        read_all(opaque_gif)


# --------------------------------------------------------------------------- GifSink


@pytest.mark.parametrize("palette", ["adaptive", "global"])
@pytest.mark.parametrize("dither", ["none", "floyd-steinberg"])
def test_round_trip_keeps_count_durations_loop_and_pixels(
    opaque_gif: Path, tmp_path: Path, palette: str, dither: str
) -> None:
    info, frames = read_all(opaque_gif)
    out = tmp_path / "out.gif"
    encode(frames, info, out, GifOptions(palette=palette, dither=dither))
    again_info, again = read_all(out)
    assert len(again) == 8
    assert [f.duration_ms for f in again] == DURATIONS_MS
    assert again_info.loop == 3 and b"NETSCAPE2.0\x03\x01\x03\x00" in out.read_bytes()
    for before, after in zip(frames, again, strict=True):
        assert psnr(before.pixels, after.pixels) >= 30


def test_no_loop_extension_is_kept(tmp_path: Path) -> None:
    src = tmp_path / "once.gif"
    write_reference_gif(src, index_frames(3), loop=None, optimize=False)
    info, frames = read_all(src)
    assert info.loop is None
    out = tmp_path / "out.gif"
    encode(frames, info, out)
    assert b"NETSCAPE2.0" not in out.read_bytes()
    assert read_all(out)[0].loop is None


@pytest.mark.parametrize(("option", "expected"), [(0, 0), (7, 7), (None, None)])
def test_loop_option_overrides_the_input(
    opaque_gif: Path, tmp_path: Path, option: int | None, expected: int | None
) -> None:
    info, frames = read_all(opaque_gif)
    out = tmp_path / "out.gif"
    encode(frames[:2], info, out, GifOptions(loop=option))
    assert read_all(out)[0].loop == expected


def test_transparent_round_trip_keeps_alpha(transparent_gif: Path, tmp_path: Path) -> None:
    info, frames = read_all(transparent_gif)
    out = tmp_path / "out.gif"
    encode(frames, info, out)
    again_info, again = read_all(out)
    assert again_info.has_alpha
    assert [f.duration_ms for f in again] == DURATIONS_MS
    for before, after in zip(frames, again, strict=True):
        assert before.alpha is not None and after.alpha is not None
        np.testing.assert_array_equal(after.alpha, before.alpha)
        opaque = before.alpha == 255
        assert psnr(before.pixels[opaque], after.pixels[opaque]) >= 30
    with Image.open(out) as image:
        assert isinstance(image, GifImagePlugin.GifImageFile)
        for index in range(1, 8):
            image.seek(index)
            assert image.disposal_method == 2


def test_alpha_threshold_and_background_shows_through(tmp_path: Path) -> None:
    red = np.zeros((8, 12, 3), np.uint8)
    red[...] = (255, 0, 0)
    half = np.full((8, 12), 255, np.uint8)
    half[:, :6] = [0, 60, 127, 127, 20, 0]  # all below 128: see-through
    half[:, 6:] = [128, 200, 255, 128, 130, 255]  # all 128 or more: opaque
    green = np.zeros_like(red)
    green[...] = (0, 255, 0)
    info = StreamInfo(width=12, height=8, format="test", has_alpha=True)
    frames = [Frame(0, red, duration_ms=100), Frame(1, green, duration_ms=100, alpha=half)]
    out = tmp_path / "out.gif"
    encode(frames, info, out)
    _, again = read_all(out)
    assert again[1].alpha is not None
    # The left half shows the background (transparent), not the red first frame.
    np.testing.assert_array_equal(again[1].alpha[:, :6], 0)
    np.testing.assert_array_equal(again[1].alpha[:, 6:], 255)
    np.testing.assert_array_equal(again[1].pixels[:, 6:], green[:, 6:])
    np.testing.assert_array_equal(again[0].pixels, red)


def delays_written(durations: list[float]) -> list[float]:
    info = StreamInfo(width=4, height=4, format="test")
    frames = [Frame(i, np.full((4, 4, 3), i * 20, np.uint8), duration_ms=d) for i, d in enumerate(durations)]
    out = io.BytesIO()
    encode(frames, info, out)
    source = GifSource(out)
    source.open()
    try:
        return list(source.durations_ms())
    finally:
        source.close()


def test_delays_carry_their_rounding_remainder() -> None:
    video = [1000 / 30] * 9
    written = delays_written(video)
    assert set(written) <= {30.0, 40.0}
    assert sum(written) == 300.0
    # Every prefix stays within half a centisecond of the true elapsed time.
    assert all(abs(w - v) <= 5 for w, v in zip(np.cumsum(written), np.cumsum(video), strict=True))
    assert delays_written([15.0] * 4) == [20.0, 10.0, 20.0, 10.0]
    assert delays_written([0.0, 10.0, 1230.0, 0.0]) == [0.0, 10.0, 1230.0, 0.0]


def test_missing_duration_uses_the_stream_rate(tmp_path: Path) -> None:
    info = StreamInfo(width=4, height=4, format="test", fps=25.0)
    out = tmp_path / "out.gif"
    encode([Frame(i, np.full((4, 4, 3), i * 50, np.uint8)) for i in range(3)], info, out)
    assert [f.duration_ms for f in read_all(out)[1]] == [40.0, 40.0, 40.0]


def frames_for_sink(count: int) -> Iterator[Frame]:
    rng = np.random.default_rng(1)
    for i in range(count):
        yield Frame(i, rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), duration_ms=50)


def test_sink_writes_each_frame_once_the_next_arrives(tmp_path: Path) -> None:
    """One frame of lookahead (one-frame spikes are judged against the next frame); the last at finish."""
    target = tmp_path / "out.gif"
    sink = GifSink(target)
    sink.open(StreamInfo(width=32, height=24, format="test"))
    sizes = []
    for frame in frames_for_sink(4):
        sink.write(frame)
        (partial,) = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
        sizes.append(partial.stat().st_size)
        assert not target.exists()
    assert sizes[0] == 0 and sizes[1] > 800 and all(b > a for a, b in itertools.pairwise(sizes[1:]))
    sink.finish()
    assert [p.name for p in tmp_path.iterdir()] == ["out.gif"]
    data = target.read_bytes()
    assert len(data) > sizes[-1] + 1 and data.endswith(b";")
    assert len(read_all(target)[1]) == 4


@pytest.mark.parametrize(("quality", "held"), [(90, 1), (100, 0)])
def test_sink_to_a_stream_flushes_each_frame_and_leaves_it_open(quality: int, held: int) -> None:
    """Each frame reaches the reader as soon as it is encoded: one frame later, or at once at quality 100."""
    stream = io.BytesIO()
    sink = GifSink(stream, GifOptions(quality=quality))
    sink.open(StreamInfo(width=32, height=24, format="test"))
    frames_out = []
    for frame in frames_for_sink(3):
        sink.write(frame)
        written = stream.getvalue()
        # What has arrived so far, closed with a trailer, is a GIF of the frames written.
        frames_out.append(len(read_all(io.BytesIO(written + b";"))[1]) if written else 0)
    assert frames_out == [max(0, n + 1 - held) for n in range(3)]
    assert not stream.getvalue().endswith(b";")
    sink.finish()
    sink.finish()  # the trailer is written once
    assert not stream.closed and stream.getvalue().endswith(b";")
    assert len(read_all(io.BytesIO(stream.getvalue()))[1]) == 3


def test_abort_leaves_no_file_and_no_temporary(tmp_path: Path) -> None:
    sink = GifSink(tmp_path / "out.gif")
    sink.open(StreamInfo(width=32, height=24, format="test"))
    for frame in frames_for_sink(2):
        sink.write(frame)
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_existing_target_is_refused_unless_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.gif"
    target.write_bytes(b"old")
    with pytest.raises(OutputError, match="exists; pass --overwrite"):
        GifSink(target).open(StreamInfo(width=32, height=24, format="test"))
    assert target.read_bytes() == b"old"
    sink = GifSink(target, overwrite=True)
    sink.open(StreamInfo(width=32, height=24, format="test"))
    for frame in frames_for_sink(2):
        sink.write(frame)
    assert target.read_bytes() == b"old"  # replaced only at finish
    sink.finish()
    assert target.read_bytes().startswith(b"GIF89a")


def test_frame_of_another_size_is_an_output_error(tmp_path: Path) -> None:
    sink = GifSink(tmp_path / "out.gif")
    sink.open(StreamInfo(width=32, height=24, format="test"))
    sink.write(Frame(0, np.zeros((24, 32, 3), np.uint8), duration_ms=10))
    with pytest.raises(OutputError, match=r"frame 1 is 30x24 but .*out\.gif is 32x24"):
        sink.write(Frame(1, np.zeros((24, 30, 3), np.uint8), duration_ms=10))
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_colors_option_bounds_the_palette(opaque_gif: Path, tmp_path: Path) -> None:
    info, frames = read_all(opaque_gif)
    out = tmp_path / "out.gif"
    encode(frames, info, out, GifOptions(colors=4))
    decoded = [frame.pixels for frame in read_all(out)[1]]
    assert len(np.unique(decoded[0].reshape(-1, 3), axis=0)) <= 4
    # Each frame draws with at most 4 colours; pixels it leaves transparent keep earlier frames' colours.
    for before, after in itertools.pairwise(decoded):
        drawn = after[(after != before).any(axis=2)]
        assert len(np.unique(drawn, axis=0)) <= 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colors": 1}, "--gif-colors"),
        ({"colors": 257}, "--gif-colors"),
        ({"colors": True}, "--gif-colors"),
        ({"dither": "atkinson"}, "--gif-dither"),
        ({"palette": "web"}, "--gif-palette"),
        ({"loop": -1}, "loop"),
        ({"loop": 65536}, "loop"),
        ({"loop": "forever"}, "loop"),
    ],
)
def test_options_are_validated(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GifOptions(**options)  # type: ignore[arg-type]


def test_a_finished_output_follows_the_umask_not_the_temporary_file_mode(tmp_path: Path) -> None:
    target = tmp_path / "mode.gif"
    sink = GifSink(target)
    sink.open(StreamInfo(width=4, height=4, format="gif"))
    sink.write(Frame(0, np.zeros((4, 4, 3), np.uint8), duration_ms=100))
    sink.finish()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
