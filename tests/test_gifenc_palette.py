"""Palette building, colour lookup and GIF blocks of the streaming encoder, checked against independent references."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from gifstream.io.gifenc import blocks
from gifstream.io.gifenc.palette import (
    NearestColour,
    bayer_matrix,
    build_palette,
    colour_keys,
    colours_of_keys,
    exact_palette,
    image_keys,
    key_error,
    lloyd_gain,
    lloyd_gain_of_keys,
    refine_palette,
    squared_error,
)


def brute_force_nearest(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    distances = ((pixels[:, None, :].astype(np.int64) - palette[None].astype(np.int64)) ** 2).sum(axis=2)
    return distances.min(axis=1)


def photo_like(seed: int = 0, count: int = 4096) -> np.ndarray:
    """(N, 3) pixels of a smooth gradient with texture: thousands of distinct colours."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, count)[:, None]
    base = 30 + 190 * np.hstack([ramp, ramp**2, 1 - ramp])
    return np.clip(base + rng.normal(0, 10, (count, 3)), 0, 255).astype(np.uint8)


def test_colour_keys_pack_a_pixel_as_its_rgbx_bytes() -> None:
    rng = np.random.default_rng(9)
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    pixels = image.reshape(-1, 3)
    keys = image_keys(image)
    expected = (
        pixels[:, 0].astype(np.int64) + (pixels[:, 1].astype(np.int64) << 8) + (pixels[:, 2].astype(np.int64) << 16)
    )
    np.testing.assert_array_equal(keys, expected)
    np.testing.assert_array_equal(colour_keys(pixels), keys)
    np.testing.assert_array_equal(colours_of_keys(keys), pixels)
    # A strided (non-contiguous) image gives the same keys as its copy.
    np.testing.assert_array_equal(image_keys(image[:, ::2]), image_keys(np.ascontiguousarray(image[:, ::2])))
    other = rng.integers(0, 256, pixels.shape, dtype=np.uint8)
    reference = ((pixels.astype(np.int64) - other) ** 2).sum(axis=1)
    np.testing.assert_array_equal(key_error(keys, colour_keys(other)), reference)


def test_lloyd_gain_of_keys_agrees_with_lloyd_gain_on_colours() -> None:
    rng = np.random.default_rng(10)
    centres = rng.integers(20, 230, (12, 3)).astype(np.uint8)
    labels = rng.integers(0, 12, 3000)
    pixels = np.clip(centres[labels] + rng.normal(3, 5, (3000, 3)), 0, 255).astype(np.uint8)
    weights = rng.random(3000)
    expected = lloyd_gain(pixels, labels, centres, weights)
    got = lloyd_gain_of_keys(colour_keys(pixels), colour_keys(centres[labels]), labels, len(centres), weights)
    assert expected > 5 and abs(got - expected) < 1e-9 * expected


def test_few_colours_give_exactly_those_colours() -> None:
    rng = np.random.default_rng(1)
    colours = rng.integers(0, 256, (30, 3), dtype=np.uint8)
    pixels = colours[rng.integers(0, 30, 2000)]
    palette = build_palette(pixels, 255)
    assert {tuple(c) for c in palette} == {tuple(c) for c in colours}
    assert exact_palette(pixels, 29) is None


def test_built_palette_is_at_least_as_good_as_pillows_median_cut() -> None:
    pixels = photo_like()
    palette = build_palette(pixels, 64)
    assert len(palette) <= 64
    image = Image.fromarray(pixels.reshape(64, 64, 3))
    median_cut = np.array(image.quantize(64, method=Image.Quantize.MEDIANCUT).getpalette()[: 64 * 3]).reshape(-1, 3)
    ours = brute_force_nearest(pixels, palette).mean()
    theirs = brute_force_nearest(pixels, median_cut.astype(np.uint8)).mean()
    assert ours <= theirs


def test_lookup_matches_an_exhaustive_search() -> None:
    rng = np.random.default_rng(2)
    palette = build_palette(photo_like(3), 255)
    pixels = rng.integers(0, 256, (6000, 3), dtype=np.uint8)
    lookup = NearestColour(palette)
    indices = lookup.indices(pixels)
    ours = squared_error(pixels, palette[indices])
    best = brute_force_nearest(pixels, palette)
    assert (ours == best).mean() >= 0.98
    assert ours.mean() <= best.mean() * 1.01
    # Palette colours map to themselves, and a second look-up (from the cache) agrees with the first.
    np.testing.assert_array_equal(palette[lookup.indices(palette)], palette)
    np.testing.assert_array_equal(lookup.indices(pixels), indices)


def test_lookup_of_more_new_colours_than_one_piece_matches_an_exhaustive_search() -> None:
    """Over 65,536 new colours are resolved in pieces; every piece must land where one search would."""
    rng = np.random.default_rng(11)
    palette = rng.integers(0, 256, (32, 3), dtype=np.uint8)
    pixels = rng.integers(0, 256, (70_000, 3), dtype=np.uint8)
    ours = squared_error(pixels, palette[NearestColour(palette).indices(pixels)])
    best = brute_force_nearest(pixels, palette)
    assert (ours == best).mean() >= 0.98
    assert ours.mean() <= best.mean() * 1.01


def test_a_palette_built_from_a_sample_of_a_large_image_beats_median_cut_on_all_of_it() -> None:
    """An input of 147,456 pixels is built from a sample; the palette must still serve every pixel well."""
    pixels = photo_like(12, count=384 * 384)
    palette = build_palette(pixels, 255)
    image = Image.fromarray(pixels.reshape(384, 384, 3))
    median_cut = np.array(image.quantize(255, method=Image.Quantize.MEDIANCUT).getpalette()[: 255 * 3]).reshape(-1, 3)
    ours = brute_force_nearest(pixels[::37], palette).mean()
    theirs = brute_force_nearest(pixels[::37], median_cut.astype(np.uint8)).mean()
    assert ours <= theirs


def test_a_recycled_lookup_forgets_the_old_palette() -> None:
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (5000, 3), dtype=np.uint8)
    old = NearestColour(rng.integers(0, 256, (200, 3), dtype=np.uint8))
    old.indices(pixels)
    palette = rng.integers(0, 256, (50, 3), dtype=np.uint8)
    new = NearestColour(palette, recycle=old)
    ours = squared_error(pixels, palette[new.indices(pixels)])
    assert ours.mean() <= brute_force_nearest(pixels, palette).mean() * 1.01


def test_lloyd_gain_is_the_error_a_k_means_update_removes() -> None:
    rng = np.random.default_rng(5)
    centres = np.array([[40, 40, 40], [120, 200, 60], [220, 90, 180]], np.uint8)
    labels = rng.integers(0, 3, 6000)
    pixels = np.clip(np.rint(centres[labels] + rng.normal(0, 4, (6000, 3))), 0, 255).astype(np.uint8)
    assert lloyd_gain(pixels, labels, centres) < 0.5
    shifted = centres + np.array([10, 0, 0], np.uint8)
    # Each entry sits 10 levels from its pixels' mean: moving it there saves 10^2 a pixel.
    assert abs(lloyd_gain(pixels, labels, shifted) - 100) < 5
    # One pixel per entry tells nothing about where the entry should be.
    assert lloyd_gain(pixels[:3], np.arange(3), shifted) == 0


def test_refining_moves_entries_in_place_towards_the_pixels() -> None:
    pixels = photo_like(6)
    start = build_palette(photo_like(7), 32)
    lookup = NearestColour(start)
    refined = refine_palette(pixels, lookup, rounds=3)
    assert refined.shape == start.shape
    assert brute_force_nearest(pixels, refined).mean() < brute_force_nearest(pixels, start).mean()
    # Entries keep their places: each moved a little, not reshuffled.
    assert np.abs(refined.astype(int) - start).max(axis=1).mean() < 30


def test_bayer_matrix_spreads_thresholds_evenly() -> None:
    matrix = bayer_matrix()
    assert matrix.shape == (8, 8)
    np.testing.assert_allclose(np.sort(matrix.ravel()), (np.arange(64) + 0.5) / 64 - 0.5)
    # Neighbours differ a lot (a fine pattern, not a ramp).
    assert np.abs(np.diff(matrix, axis=1)).min() >= 0.25


def test_blocks_make_a_gif_pillow_decodes() -> None:
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0]], np.uint8)  # the last one transparent
    first = np.arange(48, dtype=np.uint8).reshape(6, 8) % 3
    local = np.array([[10, 20, 30], [200, 210, 220]], np.uint8)
    patch = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)  # 2 = transparent in the local table below
    table = np.vstack([local, [[0, 0, 0]]])
    data = (
        blocks.header(8, 6, palette, background=0, loop=0)
        + b"".join(blocks.frame_pieces(first, 0, 0, 7, 1, None, None, len(palette)))
        + b"".join(blocks.frame_pieces(patch, 4, 3, 12, 1, 2, table, len(table)))
        + blocks.TRAILER
    )
    with Image.open(io.BytesIO(data)) as image:
        assert image.n_frames == 2 and image.info["loop"] == 0
        expected = palette[first]
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), expected)
        assert image.info["duration"] == 70
        image.seek(1)
        expected[3:5, 4:7][patch != 2] = table[patch[patch != 2]]
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), expected)
        assert image.info["duration"] == 120


def test_a_frame_larger_than_one_piece_comes_in_equal_pieces_with_pillows_bytes() -> None:
    # Pieces of one size keep a long run's heap from fragmenting; their bytes are Pillow's own.
    rng = np.random.default_rng(3)
    indices = rng.integers(0, 256, (300, 400), dtype=np.uint8)  # noise: about 160 kB of LZW data
    pieces = blocks.lzw_pieces(indices, 8)
    assert len(pieces) > 2
    assert {len(piece) for piece in pieces[:-1]} == {blocks.LZW_PIECE_BYTES}
    assert 0 < len(pieces[-1]) <= blocks.LZW_PIECE_BYTES
    assert b"".join(pieces) == Image.fromarray(indices, "L").tobytes("gif", "L", 8, 0)
    frame = blocks.frame_pieces(indices, 0, 0, 4, 1, None, None, 256)
    assert frame[1:-1] == pieces and frame[-1] == b"\x00"
    with Image.open(
        io.BytesIO(blocks.header(400, 300, rng.integers(0, 256, (256, 3)), 0, None) + b"".join(frame) + blocks.TRAILER)
    ) as image:
        np.testing.assert_array_equal(np.asarray(image), indices)
