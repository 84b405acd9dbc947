"""The GIF encoder's compiled loops give what the plain numpy forms give, to the bit.

Each reference below is the numpy form a loop replaced. Inputs are random
with many ties (few distinct levels), since ties are where a loop and an
array expression most easily part ways.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import COMPILED_SIGNATURES, run_python

from gifstream.io.gifenc import kernels
from gifstream.io.gifenc.palette import KEY, NearestColour, colour_keys, key_channels
from gifstream.jit import forget_if_stale, jit


def keys_of(rng: np.random.Generator, count: int, levels: int = 256) -> np.ndarray:
    """Random colour keys; with few ``levels`` a channel, many equal distances."""
    step = 256 // levels
    return colour_keys((rng.integers(0, levels, (count, 3)) * step).astype(np.uint8))


def reference_key_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    diff = key_channels(a)[:, :3].astype(np.int32) - key_channels(b)[:, :3]
    return (diff * diff).sum(axis=1, dtype=np.int32)


def reference_nearest(
    keys: np.ndarray, entry_keys: np.ndarray, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    best = candidates[0].copy()
    best_distance = reference_key_error(keys, entry_keys.take(best))
    for row in candidates[1:]:
        distance = reference_key_error(keys, entry_keys.take(row))
        np.copyto(best, row, where=distance < best_distance)
        np.minimum(best_distance, distance, out=best_distance)
    return best, best_distance


def cells_of(keys: np.ndarray, bits: int) -> np.ndarray:
    channels = key_channels(keys)[:, :3].astype(np.int64) >> (8 - bits)
    return channels[:, 0] | channels[:, 1] << bits | channels[:, 2] << (2 * bits)


@pytest.mark.parametrize("levels", [4, 256])
def test_key_error_is_the_squared_rgb_distance(levels: int) -> None:
    rng = np.random.default_rng(levels)
    a, b = keys_of(rng, 1000, levels), keys_of(rng, 1000, levels)
    got = kernels.key_error(a, b)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, reference_key_error(a, b))
    np.testing.assert_array_equal(kernels.key_error(a[::3], b[::3]), reference_key_error(a[::3], b[::3]))


@pytest.mark.parametrize("dtype", [np.uint8, np.intp])
def test_nearest_entries_take_the_first_of_equally_near_candidates(dtype: type) -> None:
    rng = np.random.default_rng(1)
    entry_keys = keys_of(rng, 40, levels=4)  # many repeated entries: ties everywhere
    keys = keys_of(rng, 2000, levels=4)
    candidates = rng.integers(0, 40, (4, 2000)).astype(dtype)
    best, distance = kernels.nearest_entries(keys, entry_keys, candidates)
    expected_best, expected_distance = reference_nearest(keys, entry_keys, candidates)
    assert best.dtype == candidates.dtype
    np.testing.assert_array_equal(best, expected_best)
    np.testing.assert_array_equal(distance, expected_distance)


@pytest.mark.parametrize("weighted", [False, True])
def test_histogram_matches_bincounts_over_sorted_cells(weighted: bool) -> None:
    rng = np.random.default_rng(2)
    keys = keys_of(rng, 5000, levels=32)
    weights = np.sqrt(rng.integers(0, 50, 5000)).astype(np.float64) if weighted else None
    cells = cells_of(keys, 6)
    occupied, inverse = np.unique(cells, return_inverse=True)
    channels = key_channels(keys)
    if weights is None:
        mass = np.bincount(inverse, minlength=occupied.size).astype(np.float64)
        sums = [np.bincount(inverse, weights=channels[:, c], minlength=occupied.size) for c in range(3)]
        means, masses = kernels.histogram(keys, np.empty(0), False, 6)
    else:
        mass = np.bincount(inverse, weights=weights, minlength=occupied.size)
        sums = [np.bincount(inverse, weights=weights * channels[:, c], minlength=occupied.size) for c in range(3)]
        means, masses = kernels.histogram(keys, weights, True, 6)
    nonzero = mass > 0
    np.testing.assert_array_equal(masses, mass[nonzero])
    np.testing.assert_array_equal(means, np.stack(sums, axis=1)[nonzero] / mass[nonzero, None])
    if weighted:
        assert masses.size < occupied.size, "cells of zero weight are left out"


def test_a_lloyd_round_moves_used_centres_to_their_weighted_means() -> None:
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 255, (600, 3))
    point_keys = colour_keys(np.clip(np.rint(points), 0, 255).astype(np.uint8))
    weights = rng.uniform(0, 3, 600)
    centres = rng.uniform(0, 255, (30, 3))
    centre_keys = colour_keys(np.clip(np.rint(centres), 0, 255).astype(np.uint8))
    candidates = rng.integers(0, 25, (4, 600))  # centres 25..29 are nobody's candidate: unused
    nearest, expected_distance = reference_nearest(point_keys, centre_keys, candidates)
    expected_mass = np.bincount(nearest, weights=weights, minlength=30)
    expected = centres.copy()
    used = expected_mass > 0
    for channel in range(3):
        total = np.bincount(nearest, weights=weights * points[:, channel], minlength=30)
        expected[used, channel] = total[used] / expected_mass[used]
    distance, mass = kernels.lloyd_round(point_keys, points, weights, centres, centre_keys, candidates)
    np.testing.assert_array_equal(distance, expected_distance)
    np.testing.assert_array_equal(mass, expected_mass)
    np.testing.assert_array_equal(centres, expected)
    assert not used[25:].any()


def test_still_change_counts_count_the_channel_changes_of_still_probes() -> None:
    rng = np.random.default_rng(4)
    previous = keys_of(rng, 3000)
    moved = key_channels(previous)[:, :3].astype(np.int64) + rng.integers(-10, 11, (3000, 3))
    keys = colour_keys(np.clip(moved, 0, 255).astype(np.uint8))
    probe = np.unique(rng.integers(0, 3000, 800))
    change = np.abs(key_channels(keys.take(probe))[:, :3].astype(np.int64) - key_channels(previous.take(probe))[:, :3])
    still = change.max(axis=1) <= 8
    counts, still_count = kernels.still_change_counts(keys, previous, probe, 8)
    assert still_count == np.count_nonzero(still)
    np.testing.assert_array_equal(counts, np.bincount(change[still].reshape(-1), minlength=9))


def test_changed_pixels_are_the_worse_shown_then_those_come_to_rest() -> None:
    rng = np.random.default_rng(5)
    count, tolerance = 4000, 40.0
    previous = keys_of(rng, count, levels=8)
    keys = np.where(rng.random(count) < 0.5, previous, keys_of(rng, count, levels=8)).astype(KEY)
    canvas = np.where(rng.random(count) < 0.3, keys, keys ^ rng.integers(0, 8, count).astype(KEY)).astype(KEY)
    was_still = rng.random(count) < 0.5
    expected_still = keys == previous
    kept_error = reference_key_error(keys, canvas)
    worse = np.flatnonzero(kept_error > tolerance)
    came_to_rest = np.flatnonzero(expected_still & ~was_still)
    resting = came_to_rest[(kept_error[came_to_rest] > 0) & (kept_error[came_to_rest] <= tolerance)]
    positions, pixels, kept, first = kernels.changed_pixels(keys, previous, canvas, was_still, tolerance)
    assert first == worse.size and resting.size > 0
    np.testing.assert_array_equal(positions, np.concatenate([worse, resting]))
    np.testing.assert_array_equal(pixels, keys.take(positions))
    np.testing.assert_array_equal(kept, kept_error.take(positions))
    np.testing.assert_array_equal(was_still, expected_still)


def test_improved_pixels_clear_the_tolerance_or_the_settle_ratio() -> None:
    rng = np.random.default_rng(6)
    kept, error = rng.integers(0, 300, 500).astype(np.int32), rng.integers(0, 300, 500).astype(np.int32)
    first, tolerance, ratio = 200, 27.5, 9.0
    threshold = np.concatenate([error[:first] + tolerance, error[first:] * ratio])
    np.testing.assert_array_equal(
        kernels.improved(kept, error, first, tolerance, ratio), np.flatnonzero(kept > threshold)
    )


def test_lookups_match_an_exhaustive_search_over_each_cells_shortlist() -> None:
    rng = np.random.default_rng(7)
    palette = rng.integers(0, 256, (200, 3)).astype(np.uint8)
    lookup = NearestColour(palette)
    keys = keys_of(rng, 20000, levels=64)
    first = lookup.indices_of_keys(keys[:7000])  # some cells known before the rest come
    indices = lookup.indices_of_keys(keys)
    np.testing.assert_array_equal(indices[:7000], first)
    shortlists = lookup.shortlists(keys).astype(np.intp)
    expected, _ = reference_nearest(keys, lookup.keys, shortlists)
    np.testing.assert_array_equal(indices, expected)
    # Palette colours map to themselves, whatever their cell's shortlist says.
    np.testing.assert_array_equal(lookup.indices(palette[:50]), _first_equal(palette[:50], palette))


def _first_equal(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    matches = (colours[:, None, :] == palette[None, :, :]).all(axis=2)
    return matches.argmax(axis=1).astype(np.uint8)


def test_a_recycled_lookup_forgets_every_colour_it_learnt() -> None:
    rng = np.random.default_rng(8)
    first = NearestColour(rng.integers(0, 256, (100, 3)).astype(np.uint8))
    first.indices_of_keys(keys_of(rng, 5000))
    second_palette = rng.integers(0, 256, (120, 3)).astype(np.uint8)
    second = NearestColour(second_palette, recycle=first)
    keys = keys_of(rng, 5000)
    fresh = NearestColour(second_palette)
    np.testing.assert_array_equal(second.indices_of_keys(keys), fresh.indices_of_keys(keys))


def test_without_a_writable_cache_the_loops_compile_in_each_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import numba

    real_njit = numba.njit

    def njit_without_cache(**options: object):
        if options.get("cache"):
            # What numba raises when neither the package's folder nor the user's cache can be written.
            raise RuntimeError("cannot cache function: no locator available")
        return real_njit(**options)

    monkeypatch.setattr(numba, "njit", njit_without_cache)

    def add_one(values: np.ndarray) -> np.ndarray:
        return values + 1

    compiled = jit(add_one)
    np.testing.assert_array_equal(compiled(np.arange(3)), [1, 2, 3])
    assert compiled.py_func is add_one


def test_reading_a_gif_does_not_load_the_compiler(tmp_path: Path) -> None:
    """numba (and LLVM) come in with the first GIF written, not with the GIF reader."""
    script = (
        "import sys, io, numpy as np\n"
        "import gifstream.io.gif\n"
        "assert 'numba' not in sys.modules, 'imported with the reader'\n"
        "from gifstream.io.gif_sink import GifSink\n"
        "from gifstream.engine import Frame, StreamInfo\n"
        "sink = GifSink(io.BytesIO()); sink.open(StreamInfo(width=4, height=2, format='gif'))\n"
        "sink.write(Frame(0, np.zeros((2, 4, 3), np.uint8))); sink.finish()\n"
        "assert 'numba' in sys.modules, 'the loops ran without numba'\n"
    )
    run_python(script, tmp_path)


def test_the_warm_up_compiles_every_loop_a_real_gif_uses(tmp_path: Path) -> None:
    """compile_encoder() must leave nothing for the first real GIF to compile: numba compiles each new
    argument type (a strided sample is one) on first use, which would stall that GIF for seconds."""
    script = COMPILED_SIGNATURES + (
        "import io, numpy as np\n"
        "from gifstream.io.gif_sink import GifSink, compile_encoder\n"
        "from gifstream.io.gifenc import kernels\n"
        "from gifstream.engine import Frame, StreamInfo\n"
        "compile_encoder()\n"
        "warmed = signatures(kernels)\n"
        "rng = np.random.default_rng(1)\n"
        "base = rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)\n"
        "sink = GifSink(io.BytesIO()); sink.open(StreamInfo(width=400, height=300, format='gif', fps=25.0))\n"
        "for i in range(5):\n"
        "    sink.write(Frame(i, np.ascontiguousarray(base[:, 3 * i : 3 * i + 400]), duration_ms=40.0))\n"
        "sink.finish()\n"
        "assert_nothing_new(warmed, kernels)\n"
    )
    run_python(script, tmp_path)


def test_a_loop_that_calls_another_modules_loop_is_recompiled_when_that_module_changes(tmp_path: Path) -> None:
    """numba ties a cached loop to its own file; one that calls another module's loop holds a copy of it."""
    (tmp_path / "used.py").write_text(
        "from gifstream.jit import CompiledLoops\n"
        "loop = CompiledLoops(globals())\n"
        "@loop\n"
        "def scale(x):\n"
        "    return x * 2\n"
    )
    (tmp_path / "user.py").write_text(
        "import used\n"
        "from gifstream.jit import CompiledLoops\n"
        "loop = CompiledLoops(globals(), uses=(used.loop,))\n"
        "@loop\n"
        "def scaled_plus_one(x):\n"
        "    return used.scale(x) + 1\n"
    )
    check = "import user\nprint(user.scaled_plus_one(3))\n"
    first = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert first.stdout.strip() == "7", first.stderr
    (tmp_path / "used.py").write_text((tmp_path / "used.py").read_text().replace("x * 2", "x * 3"))

    second = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path)

    assert second.stdout.strip() == "10", second.stderr


class _RecordingCache:
    """Stands in for a numba dispatcher's disk cache."""

    def __init__(self, path: Path, flush_fails: bool = False) -> None:
        self.cache_path = str(path)
        self.flushes = 0
        self.enabled = True
        self._flush_fails = flush_fails

    def flush(self) -> None:
        if self._flush_fails:
            raise OSError("read-only cache")
        self.flushes += 1

    def disable(self) -> None:
        self.enabled = False


class _Dispatcher:
    def __init__(self, cache: _RecordingCache) -> None:
        self._cache = cache
        self.py_func = _add_one


def _add_one(values: np.ndarray) -> np.ndarray:
    return values + 1


def test_stale_code_is_forgotten_once_per_change_and_never_run_when_it_cannot_be(tmp_path: Path) -> None:
    source = tmp_path / "used.py"
    source.write_text("def scale(x):\n    return x * 2\n")
    cache = _RecordingCache(tmp_path)
    dispatcher = _Dispatcher(cache)

    forget_if_stale([dispatcher], [source])
    forget_if_stale([dispatcher], [source])
    assert cache.flushes == 1  # no fingerprint yet, then the same one
    source.write_text("def scale(x):\n    return x * 3\n")
    forget_if_stale([dispatcher], [source])
    assert cache.flushes == 2 and cache.enabled

    read_only = _RecordingCache(tmp_path / "elsewhere", flush_fails=True)
    forget_if_stale([_Dispatcher(read_only)], [source])
    assert not read_only.enabled
