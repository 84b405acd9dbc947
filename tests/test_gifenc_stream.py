"""The streaming GIF encoder end to end: what it writes, frame by frame, read back independently.

Written GIFs are taken apart by a small block parser and LZW decoder here
(independent of the encoder) to see each frame's rectangle, colour table,
disposal and raw indices, and decoded by Pillow to compare with the input.
"""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from helpers import read_gif
from PIL import Image

from gifstream.engine import Frame, StreamInfo
from gifstream.io.gif_sink import GifOptions, GifSink
from gifstream.io.gifenc import FramePlanner

WIDTH, HEIGHT = 64, 48


# --------------------------------------------------------------------------- an independent GIF reader


@dataclass(frozen=True)
class Written:
    """One image of a GIF as stored: its rectangle, table, control data and raw indices."""

    left: int
    top: int
    width: int
    height: int
    local_table: np.ndarray | None
    disposal: int
    transparent: int | None
    delay_cs: int
    indices: np.ndarray


def lzw_decode(data: bytes, min_code_size: int, count: int) -> np.ndarray:
    """GIF LZW (codes read least significant bit first, no early change) into ``count`` indices."""
    clear, end = 1 << min_code_size, (1 << min_code_size) + 1
    table: list[bytes] = [bytes([i]) for i in range(clear)] + [b"", b""]
    size = min_code_size + 1
    out = bytearray()
    previous: bytes | None = None
    bits = bit_count = 0
    for byte in data:
        bits |= byte << bit_count
        bit_count += 8
        while bit_count >= size:
            code = bits & ((1 << size) - 1)
            bits >>= size
            bit_count -= size
            if code == clear:
                table, size, previous = table[: clear + 2], min_code_size + 1, None
                continue
            if code == end:
                return np.frombuffer(bytes(out[:count]), np.uint8)
            if code < len(table):
                entry = table[code]
            elif previous is not None and code == len(table):
                entry = previous + previous[:1]
            else:
                raise AssertionError(f"bad LZW code {code} (table has {len(table)})")
            out += entry
            if previous is not None and len(table) < 4096:
                table.append(previous + entry[:1])
            previous = entry
            if len(table) == 1 << size and size < 12:
                size += 1
    return np.frombuffer(bytes(out[:count]), np.uint8)


def read_blocks(data: bytes) -> tuple[np.ndarray, list[Written]]:
    """The global colour table and every image of a GIF89a file."""
    assert data[:6] == b"GIF89a"
    flags = data[10]
    position = 13
    global_table = np.zeros((0, 3), np.uint8)
    if flags & 0x80:
        entries = 2 << (flags & 7)
        global_table = np.frombuffer(data[position : position + 3 * entries], np.uint8).reshape(-1, 3)
        position += 3 * entries
    images: list[Written] = []
    control = (0, None, 0)
    while data[position] != 0x3B:
        kind = data[position]
        position += 1
        if kind == 0x21:
            label = data[position]
            payload, position = read_sub_blocks(data, position + 1)
            if label == 0xF9:
                packed, delay, index = payload[0], struct.unpack("<H", payload[1:3])[0], payload[3]
                control = ((packed >> 2) & 7, index if packed & 1 else None, delay)
        elif kind == 0x2C:
            left, top, width, height, packed = struct.unpack("<HHHHB", data[position : position + 9])
            position += 9
            local = None
            if packed & 0x80:
                entries = 2 << (packed & 7)
                local = np.frombuffer(data[position : position + 3 * entries], np.uint8).reshape(-1, 3)
                position += 3 * entries
            min_code_size = data[position]
            compressed, position = read_sub_blocks(data, position + 1)
            indices = lzw_decode(compressed, min_code_size, width * height).reshape(height, width)
            disposal, transparent, delay = control
            images.append(Written(left, top, width, height, local, disposal, transparent, delay, indices))
            control = (0, None, 0)
        else:
            raise AssertionError(f"unexpected block 0x{kind:02x} at {position - 1}")
    return global_table, images


def read_sub_blocks(data: bytes, position: int) -> tuple[bytes, int]:
    """The payload of the data sub-blocks starting at ``position``, and the position after their terminator."""
    payload = bytearray()
    while data[position]:
        payload += data[position + 1 : position + 1 + data[position]]
        position += 1 + data[position]
    return bytes(payload), position + 1


def decode_with_pillow(data: bytes) -> list[np.ndarray]:
    return read_gif(io.BytesIO(data))[0]


# --------------------------------------------------------------------------- helpers


def encode(
    frames: list[np.ndarray],
    options: GifOptions | None = None,
    durations: list[float] | None = None,
    loop: int | None = 0,
    alphas: list[np.ndarray | None] | None = None,
) -> bytes:
    height, width = frames[0].shape[:2]
    out = io.BytesIO()
    info = StreamInfo(width=width, height=height, format="test", loop=loop, has_alpha=alphas is not None)
    sink = GifSink(out, options or GifOptions())
    sink.open(info)
    for index, pixels in enumerate(frames):
        alpha = None if alphas is None else alphas[index]
        sink.write(Frame(index, pixels, duration_ms=100 if durations is None else durations[index], alpha=alpha))
    sink.finish()
    return out.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def textured(seed: int = 0, tint: tuple[int, int, int] = (1, 1, 1)) -> np.ndarray:
    """A smooth gradient with blocky texture: a few hundred colours, like a small photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    base = np.stack([60 + 2 * xx, 40 + 3 * yy, 120 + xx - yy], axis=2) * np.array(tint)
    blocks = np.repeat(np.repeat(rng.normal(0, 12, (HEIGHT // 4, WIDTH // 4, 3)), 4, 0), 4, 1)
    return np.clip(base + blocks, 0, 255).astype(np.uint8)


def tiled(seed: int = 0, colours: int = 16) -> np.ndarray:
    """Blocks of 8x8 pixels in a few colours, each colour many times over: a palette holds them exactly."""
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 200, (colours, 3), dtype=np.uint8)
    return np.repeat(np.repeat(table[rng.integers(0, colours, (HEIGHT // 8, WIDTH // 8))], 8, 0), 8, 1)


def with_square(background: np.ndarray, top: int, left: int, size: int = 8) -> np.ndarray:
    frame = background.copy()
    frame[top : top + size, left : left + size] = (250, 250, 250)
    return frame


def changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the pixels that differ between two input frames."""
    rows, columns = np.nonzero((before != after).any(axis=2))
    return int(columns.min()), int(rows.min()), int(np.ptp(columns)) + 1, int(np.ptp(rows)) + 1


# --------------------------------------------------------------------------- changed rectangles and transparency


def test_each_frame_is_cropped_to_what_changed_and_the_rest_is_transparent() -> None:
    background = tiled()
    moves = [(4, 4), (6, 10), (20, 30), (20, 30), (30, 50)]
    frames = [with_square(background, top, left) for top, left in moves]
    data = encode(frames)
    global_table, images = read_blocks(data)
    assert len(images) == len(frames)
    first = images[0]
    assert (first.left, first.top, first.width, first.height) == (0, 0, WIDTH, HEIGHT)
    assert first.transparent is None  # an opaque stream's first frame declares no transparency
    for index in (1, 2, 4):
        image = images[index]
        assert (image.left, image.top, image.width, image.height) == changed_box(frames[index - 1], frames[index])
        assert image.disposal == 1 and image.transparent is not None and image.local_table is None
        # Inside the rectangle, pixels that did not change are written as the transparent index.
        area = (slice(image.top, image.top + image.height), slice(image.left, image.left + image.width))
        still = (frames[index - 1][area] == frames[index][area]).all(axis=2)
        assert still.any() and (image.indices[still] == image.transparent).all()
        assert (image.indices[~still] != image.transparent).all()
        np.testing.assert_array_equal(global_table[image.indices[~still]], frames[index][area][~still])
    # An identical frame writes a single transparent pixel: only its delay.
    repeat = images[3]
    assert (repeat.width, repeat.height) == (1, 1) and repeat.indices[0, 0] == repeat.transparent
    for source, decoded in zip(frames, decode_with_pillow(data), strict=True):
        np.testing.assert_array_equal(decoded, source)


def test_small_changes_within_the_tolerance_are_not_rewritten_but_larger_ones_are() -> None:
    background = tiled()
    nudged = background.copy()
    nudged[10:20, 10:20] += 2  # 2 levels a channel: within the default tolerance
    moved = nudged.copy()
    moved[30:40, 40:50] += 50  # 50 levels: rewritten
    data = encode([background, nudged, moved])
    _, images = read_blocks(data)
    assert (images[1].width, images[1].height) == (1, 1)
    assert (images[2].left, images[2].top, images[2].width, images[2].height) == (40, 30, 10, 10)
    decoded = decode_with_pillow(data)
    np.testing.assert_array_equal(decoded[2][30:40, 40:50], moved[30:40, 40:50])
    assert np.abs(decoded[2].astype(int) - moved).max() <= 2


def test_error_does_not_build_up_over_100_frames_of_a_slow_drift() -> None:
    """Brightness creeps up 0.3 levels a frame: kept pixels are judged against what is shown, not the last input."""
    base = textured().astype(np.float64)
    frames = [np.clip(base + 0.3 * i, 0, 255).astype(np.uint8) for i in range(100)]
    for options in (GifOptions(quality=100), GifOptions()):
        decoded = decode_with_pillow(encode(frames, options))
        scores = [psnr(s, d) for s, d in zip(frames, decoded, strict=True)]
        if options.quality == 100:
            assert scores[-1] >= scores[0] - 0.5
        else:
            # The tolerance costs a bounded amount once, then nothing accumulates.
            assert scores[-1] >= min(scores[1:20]) - 0.5
            assert min(scores) >= 36


def noisy_still_scene(frames: int = 12, levels: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    scene = textured().astype(np.int16)
    return [
        np.clip(scene + rng.integers(-levels, levels + 1, scene.shape), 0, 255).astype(np.uint8) for _ in range(frames)
    ]


def pixels_planned(frames: list[np.ndarray], options: GifOptions) -> int:
    """Pixels the planner alone writes after the first frame (no lookahead)."""
    planner = FramePlanner(WIDTH, HEIGHT, options.planner_settings())
    planned = [planner.plan(frame, None) for frame in frames]
    return sum(int((p.indices != p.transparent).sum()) for p in planned[1:])


def test_sensor_noise_raises_the_tolerance_so_still_noise_is_not_resent() -> None:
    frames = noisy_still_scene()
    assert pixels_planned(frames, GifOptions()) < 0.02 * pixels_planned(frames, GifOptions(quality=100))


def test_still_noise_is_not_resent_after_despiking_either() -> None:
    """Despiking takes part of the noise out first, so the planner measures less noise, and the tolerance follows."""
    frames = noisy_still_scene()

    def written(images: list[Written]) -> int:
        return sum(int((image.indices != image.transparent).sum()) for image in images[1:])

    default = written(read_blocks(encode(frames))[1])
    assert default < 0.05 * written(read_blocks(encode(frames, GifOptions(quality=100)))[1])


def dim_trail_frames() -> tuple[list[np.ndarray], tuple[slice, slice]]:
    """A bright square leaves a faint trail (a few levels above black) that then fades to black and stays.

    The trail's colours also appear in a corner from the first frame, so the
    palette holds them and black exactly: how they are shown is down to the
    planner's choices, not to palette precision.
    """
    trail = (slice(20, 28), slice(30, 38))
    faint = np.array([[4, 0, 2], [3, 0, 0], [0, 3, 2], [5, 1, 0]], np.uint8)
    rng = np.random.default_rng(7)
    first = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    first[:4, :4] = faint[np.arange(16).reshape(4, 4) % 4]
    first[trail] = (230, 10, 10)
    fading = first.copy()
    fading[trail] = faint[rng.integers(0, 4, (8, 8))]
    black = first.copy()
    black[trail] = 0
    return [first, fading, black, black, black], trail


def test_a_faint_trail_is_cleaned_up_once_the_input_comes_to_rest() -> None:
    """Within the tolerance a trail may linger while the input moves, but not once it is still."""
    frames, trail = dim_trail_frames()
    data = encode(frames)
    decoded = decode_with_pillow(data)
    # The square's departure is a large change: the trail is written as it is.
    np.testing.assert_array_equal(decoded[1][trail], frames[1][trail])
    # Black arrives within the tolerance of the trail (at most 5 levels), so it is kept for now ...
    assert 0 < np.abs(decoded[2][trail].astype(int)).max() <= 5
    # ... and written the frame the input has stayed black: from then on black exactly.
    np.testing.assert_array_equal(decoded[3][trail], 0)
    np.testing.assert_array_equal(decoded[4][trail], 0)
    _, images = read_blocks(data)
    clean_up = images[3]
    # Only the trail is rewritten; everything else stays transparent, and the next frame writes nothing.
    assert (clean_up.left, clean_up.top) == (trail[1].start, trail[0].start)
    assert (clean_up.width, clean_up.height) == (8, 8)
    assert (images[4].width, images[4].height) == (1, 1)


# --------------------------------------------------------------------------- palettes


def test_the_palette_is_kept_on_static_content_and_rebuilt_when_the_content_changes() -> None:
    rng = np.random.default_rng(4)
    warm = textured(seed=1, tint=(1.6, 0.9, 0.3))
    cold = textured(seed=2, tint=(0.2, 0.7, 1.8))

    def jittered(scene: np.ndarray) -> np.ndarray:
        return np.clip(scene.astype(int) + rng.integers(-1, 2, scene.shape), 0, 255).astype(np.uint8)

    frames = [jittered(warm) for _ in range(5)] + [jittered(cold) for _ in range(4)]
    data = encode(frames)
    global_table, images = read_blocks(data)
    # Still (if jittery) warm frames: the first frame's palette is kept and next to nothing is re-sent.
    assert all(image.local_table is None for image in images[:5])
    assert all((image.indices != image.transparent).sum() < 0.01 * WIDTH * HEIGHT for image in images[1:5])
    # The switch to cold colours brings a new palette, written as a local colour table.
    switched = images[5].local_table
    assert switched is not None
    cold_pixels = frames[5].reshape(-1, 3).astype(np.int64)

    def error_on(table: np.ndarray) -> float:
        return float(((cold_pixels[:, None, :] - table[None].astype(np.int64)) ** 2).sum(2).min(1).mean())

    assert error_on(switched) < 0.25 * error_on(global_table)
    assert psnr(frames[5], decode_with_pillow(data)[5]) >= 36


def test_a_moving_object_in_known_colours_keeps_the_palette() -> None:
    planner = FramePlanner(WIDTH, HEIGHT, GifOptions().planner_settings())
    background = tiled()
    plans = [planner.plan(with_square(background, 4 + 3 * i, 2 + 5 * i), None) for i in range(8)]
    assert plans[0].new_palette
    assert not any(plan.new_palette or plan.local_table for plan in plans[1:])


def test_a_few_pixels_a_little_off_the_palette_get_a_new_one_once_it_pays_for_its_table() -> None:
    """A small object alternating between two colours 3 levels off palette entries (within the tolerance).

    Too few pixels for a colour table on one frame (36 of 3072), but the
    error a new palette would remove adds up: 27 a pixel a frame, against a
    table of 16 entries worth 3 * 16 rewrites at the tolerance (33.3), so it
    comes on the second frame of the object, and shows it exactly.
    """
    background = tiled()
    entries = np.unique(background.reshape(-1, 3), axis=0).astype(int)
    apart = ((entries[:, None] - entries[None]) ** 2).sum(axis=2)
    first, second = np.unravel_index(np.argmax(apart), apart.shape)
    colours = [entries[first] + 3, entries[second] + 3]
    # Far apart (over 16 levels RMS): each frame rewrites the object, whatever the palette holds.
    assert apart[first, second] > 3 * 16**2
    area = (slice(10, 16), slice(10, 16))
    frames = [background]
    for index in range(6):
        frame = background.copy()
        frame[area] = colours[index % 2]
        frames.append(frame)
    planner = FramePlanner(WIDTH, HEIGHT, GifOptions().planner_settings())
    plans = [planner.plan(frame, None) for frame in frames]
    assert not plans[1].new_palette and not plans[1].local_table
    assert plans[2].new_palette and plans[2].local_table
    decoded = decode_with_pillow(encode(frames))
    # Before: the palette entry 3 levels off; from the new palette on: exact. The background is never touched.
    assert np.abs(decoded[1][area].astype(int) - frames[1][area]).max() == 3
    for index in range(2, len(frames)):
        np.testing.assert_array_equal(decoded[index], frames[index])


def test_global_palette_option_never_writes_a_local_table() -> None:
    warm = textured(seed=1, tint=(1.6, 0.9, 0.3))
    cold = textured(seed=2, tint=(0.2, 0.7, 1.8))
    _, images = read_blocks(encode([warm, cold, warm], GifOptions(palette="global")))
    assert all(image.local_table is None for image in images)


def test_a_local_table_holds_only_the_colours_its_frame_uses() -> None:
    warm, cold = tiled(seed=1), tiled(seed=2)
    cold_moved = with_square(cold, 10, 10, size=4)
    _, images = read_blocks(encode([warm, cold, cold_moved]))
    small = images[2]
    assert small.local_table is not None
    used = np.unique(small.indices)
    # A 4x4 square of one colour, plus the transparent entry: a 2-entry table.
    assert len(small.local_table) == 2 and len(used) <= 2


def test_few_colours_are_kept_exactly() -> None:
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    frames = [colours[rng.integers(0, 40, (HEIGHT, WIDTH))] for _ in range(3)]
    for source, decoded in zip(frames, decode_with_pillow(encode(frames)), strict=True):
        np.testing.assert_array_equal(decoded, source)


# --------------------------------------------------------------------------- dithering


def test_ordered_dither_is_stable_over_time() -> None:
    """The same input at the same place gets the same indices in every frame that writes it."""
    gradient = textured()
    changed = with_square(gradient, 16, 20, size=12)
    data = encode([gradient, changed, gradient, changed], GifOptions(dither="ordered", palette="global"))
    _, images = read_blocks(data)
    first, back = images[0], images[2]
    area = (slice(back.top, back.top + back.height), slice(back.left, back.left + back.width))
    drawn = back.indices != back.transparent
    assert drawn.sum() >= 12 * 12
    np.testing.assert_array_equal(back.indices[drawn], first.indices[area][drawn])
    np.testing.assert_array_equal(images[3].indices, images[1].indices)
    # Identical frames in a row write nothing.
    _, repeated = read_blocks(encode([gradient, gradient, gradient], GifOptions(dither="ordered")))
    assert all((image.width, image.height) == (1, 1) for image in repeated[1:])


def test_ordered_dither_renders_shades_between_palette_colours() -> None:
    """With 8 colours, 8x8 block averages of a smooth ramp come out closer to the input dithered than not."""
    ramp = np.repeat(np.linspace(0, 255, WIDTH)[None, :, None], HEIGHT, 0).repeat(3, 2).astype(np.uint8)

    def block_error(options: GifOptions) -> float:
        decoded = decode_with_pillow(encode([ramp], options))[0].astype(np.float64)
        blocks = (HEIGHT // 8, 8, WIDTH // 8, 8, 3)
        return float(np.abs(decoded.reshape(blocks).mean((1, 3)) - ramp.reshape(blocks).mean((1, 3))).mean())

    assert block_error(GifOptions(colors=8, dither="ordered")) < 0.8 * block_error(GifOptions(colors=8))


def test_floyd_steinberg_rewrites_only_the_pixels_that_changed() -> None:
    gradient = tiled()
    changed = with_square(gradient, 16, 20, size=12)
    data = encode([gradient, changed], GifOptions(dither="floyd-steinberg"))
    _, images = read_blocks(data)
    assert (images[1].left, images[1].top, images[1].width, images[1].height) == (20, 16, 12, 12)
    decoded = decode_with_pillow(data)
    np.testing.assert_array_equal(decoded[1][:16], decoded[0][:16])  # above the square: untouched
    assert psnr(changed, decoded[1]) >= 30


# --------------------------------------------------------------------------- timing, loop, alpha


def test_durations_loop_and_alpha_stay_exact() -> None:
    background = textured()
    frames = [with_square(background, 4 + i, 4 + 2 * i) for i in range(9)]
    durations = [1000 / 30] * 9
    alphas: list[np.ndarray | None] = []
    for i in range(9):
        alpha = np.full((HEIGHT, WIDTH), 255, np.uint8)
        alpha[:, 50 + i % 3 :] = 0
        alphas.append(alpha)
    data = encode(frames, durations=durations, loop=5, alphas=alphas)
    _, images = read_blocks(data)
    assert [image.delay_cs for image in images] == [3, 4, 3, 3, 4, 3, 3, 4, 3]
    assert b"NETSCAPE2.0\x03\x01\x05\x00" in data
    assert all(image.disposal == 2 and image.transparent is not None for image in images)
    with Image.open(io.BytesIO(data)) as image:
        for index, alpha in enumerate(alphas):
            image.seek(index)
            rgba = np.asarray(image.convert("RGBA"))
            np.testing.assert_array_equal(rgba[..., 3], alpha)
            assert psnr(rgba[..., :3][alpha == 255], frames[index][alpha == 255]) >= 36


# --------------------------------------------------------------------------- memory


def moving_frames(count: int) -> Iterator[Frame]:
    rng = np.random.default_rng(5)
    texture = rng.integers(0, 256, (HEIGHT // 4 + 1, (WIDTH + count) // 4 + 2, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture, 4, 0), 4, 1)
    for index in range(count):
        shift = index % (texture.shape[1] - WIDTH)
        pixels = np.ascontiguousarray(texture[:HEIGHT, shift : shift + WIDTH])
        yield Frame(index, pixels, duration_ms=40)


def peak_bytes(count: int) -> int:
    with open(os.devnull, "wb") as devnull:
        sink = GifSink(devnull)
        tracemalloc.start()
        try:
            sink.open(StreamInfo(width=WIDTH, height=HEIGHT, format="test"))
            for frame in moving_frames(count):
                sink.write(frame)
            sink.finish()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def test_memory_is_flat_over_300_frames() -> None:
    short, long = peak_bytes(30), peak_bytes(300)
    assert long <= short * 1.05 + 64 * 1024, (short, long)


@pytest.mark.parametrize("options", [{"quality": 0}, {"quality": 101}, {"quality": 9.5}, {"quality": True}])
def test_quality_is_validated(options: dict[str, object]) -> None:
    from gifstream.engine import ConfigError

    with pytest.raises(ConfigError, match="--gif-quality must be an integer from 1 to 100"):
        GifOptions(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 3])
def test_a_few_pixels_in_a_colour_the_palette_lacks_are_still_written(size: int) -> None:
    # Too few pixels to be worth a new colour table in general, but kept they would stay wrong forever.
    black = np.zeros((size, size, 3), np.uint8)
    spot = black.copy()
    spot[0, 0] = (255, 0, 0)
    nearly_black = black.copy()
    nearly_black[-1, -1] = (0, 0, 17)
    frames = [black, spot, nearly_black]
    decoded = decode_with_pillow(encode(frames))
    for expected, got in zip(frames, decoded, strict=True):
        assert np.abs(expected.astype(int) - got.astype(int)).max() <= 4
