"""One-frame spikes taken out before quantising, and the one frame of lookahead that needs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import read_gif

from gifstream.engine import Frame, StreamInfo
from gifstream.io.gif_sink import GifOptions, GifSink
from gifstream.io.gifenc import FramePlanner, SpikeFilter, despiked


def still(value: tuple[int, int, int], size: tuple[int, int] = (4, 6)) -> np.ndarray:
    return np.full((*size, 3), value, np.uint8)


def test_a_small_one_frame_spike_is_clamped_into_its_neighbours_range() -> None:
    before, after = still((100, 50, 20)), still((104, 50, 22))
    spike = still((110, 48, 22))  # red 6 above the range, green 2 below it, blue inside it
    np.testing.assert_array_equal(despiked(before, spike, after, limit=6), still((104, 50, 22)))


def test_a_spike_beyond_the_limit_on_any_channel_is_kept_whole() -> None:
    before, after = still((100, 50, 20)), still((100, 50, 20))
    flash = still((103, 58, 20))  # green 8 off: a change for real
    np.testing.assert_array_equal(despiked(before, flash, after, limit=6), flash)


def test_motion_that_goes_one_way_is_left_exactly_as_it_is() -> None:
    rng = np.random.default_rng(0)
    start = rng.integers(0, 200, (8, 8, 3)).astype(np.uint8)
    steps = rng.integers(0, 20, (2, 8, 8, 3)).astype(np.uint8)
    middle = start + steps[0]
    end = middle + steps[1]
    np.testing.assert_array_equal(despiked(start, middle, end, limit=255), middle)
    np.testing.assert_array_equal(despiked(end, middle, start, limit=255), middle)


def test_matches_a_per_channel_temporal_median_where_no_channel_moves_more_than_the_limit() -> None:
    rng = np.random.default_rng(1)
    a, b, c = (rng.integers(0, 256, (30, 40, 3)).astype(np.uint8) for _ in range(3))
    median = np.median(np.stack([a, b, c]).astype(np.int16), axis=0)
    for limit in (0, 6.5, 40, 255):
        small = (np.abs(b - median).max(axis=2) <= limit)[..., None]
        expected = np.where(small, median, b).astype(np.uint8)
        np.testing.assert_array_equal(despiked(a, b, c, limit), expected)


def test_pixels_see_through_in_any_of_the_three_frames_are_left_alone() -> None:
    before, after = still((0, 0, 0)), still((0, 0, 0))
    spike = still((5, 5, 5))
    opaque = np.ones(spike.shape[:2], bool)
    opaque[0, 0] = False
    result = despiked(before, spike, after, limit=6, opaque=opaque)
    assert tuple(result[0, 0]) == (5, 5, 5) and not result[1:].any() and not result[0, 1:].any()


def test_frames_of_different_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="different shapes"):
        despiked(still((0, 0, 0)), still((0, 0, 0), (4, 5)), still((0, 0, 0)), limit=6)


def test_the_filter_holds_one_frame_and_the_last_one_comes_out_at_drain() -> None:
    spikes: SpikeFilter[str] = SpikeFilter(limit=6)
    frames = [still((10, 10, 10)), still((14, 10, 10)), still((10, 10, 10))]
    out = []
    for name, frame in zip("abc", frames, strict=True):
        out += spikes.push(frame, None, name)
        frame[:] = 255  # the caller reuses its buffer: the filter kept its own copy
    assert [ready.payload for ready in out] == ["a", "b"]
    out += spikes.drain()
    assert [ready.payload for ready in out] == ["a", "b", "c"]
    assert [int(ready.rgb[0, 0, 0]) for ready in out] == [10, 10, 10]
    assert spikes.drain() == []


def test_with_limit_zero_frames_pass_through_at_once() -> None:
    spikes: SpikeFilter[int] = SpikeFilter(limit=0)
    frame = still((1, 2, 3))
    (ready,) = spikes.push(frame, None, 7)
    assert ready.rgb is frame and ready.payload == 7 and spikes.drain() == []


def encode(frames: list[np.ndarray], options: GifOptions) -> list[np.ndarray]:
    out = io.BytesIO()
    height, width = frames[0].shape[:2]
    sink = GifSink(out, options)
    sink.open(StreamInfo(width=width, height=height, format="test", loop=0))
    for index, pixels in enumerate(frames):
        sink.write(Frame(index, pixels, duration_ms=40))
    sink.finish()
    return read_gif(io.BytesIO(out.getvalue()))[0]


def test_the_gif_shows_no_one_frame_shimmer_but_every_real_change() -> None:
    rng = np.random.default_rng(2)
    colours = rng.integers(40, 200, (8, 3)).astype(np.uint8)  # few enough for every palette to hold exactly
    scene = np.repeat(np.repeat(colours[rng.integers(0, 8, (4, 4))], 4, 0), 4, 1)
    scene[12:16, 12:16] = scene[4, 4] + 5  # the palette holds the shimmer's colour: only the lookahead keeps it out
    shimmer = scene.copy()
    shimmer[4:8, 4:8] += 5  # ringing for one frame
    flash = scene.copy()
    flash[8:12, 8:12] = 255  # a real one-frame event
    frames = [scene, shimmer, scene, flash, scene]
    decoded = encode(frames, GifOptions())
    assert len(decoded) == 5
    np.testing.assert_array_equal(decoded[1], decoded[0])
    np.testing.assert_array_equal(decoded[3][8:12, 8:12], flash[8:12, 8:12])
    # The planner alone (no lookahead) would have written the shimmer.
    planner = FramePlanner(16, 16, GifOptions().planner_settings())
    first, second = planner.plan(scene, None), planner.plan(shimmer, None)
    assert first.transparent is None and np.count_nonzero(second.indices != second.transparent) == 16


@pytest.mark.parametrize("despike", [-1, 256, True, "6", float("nan")])
def test_despike_setting_is_validated(despike: object) -> None:
    from gifstream.engine import ConfigError

    with pytest.raises(ConfigError, match="despike must be None or a number of levels from 0 to 255"):
        GifOptions(despike=despike)  # type: ignore[arg-type]


def test_despike_follows_quality_unless_set() -> None:
    assert GifOptions().spike_limit() == pytest.approx(2 * 10 / 3)
    assert GifOptions(quality=100).spike_limit() == 0
    assert GifOptions(despike=0).spike_limit() == 0 and GifOptions(quality=100, despike=4).spike_limit() == 4


def test_despike_zero_writes_each_frame_as_it_arrives() -> None:
    out = io.BytesIO()
    sink = GifSink(out, GifOptions(despike=0))
    sink.open(StreamInfo(width=6, height=4, format="test"))
    sink.write(Frame(0, still((1, 2, 3)), duration_ms=40))
    assert len(read_gif(io.BytesIO(out.getvalue() + b";"))[0]) == 1
