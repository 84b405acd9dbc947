"""Compiled loops for the per-pixel work of the GIF encoder.

The encoder's decisions are whole-array steps, but at GIF sizes (a few
hundred to a few hundred thousand pixels a frame) a chain of numpy calls
spends most of its time in the fixed cost of each call and in the
temporaries between them. These loops do the same arithmetic in one pass,
with the same results to the bit: ties go to the first candidate, as in the
numpy forms they replace. They are compiled by numba on first use and cached
beside this file (or in numba's user cache when that is read-only).

Colour keys are int32 ``R | G << 8 | B << 16`` (see :mod:`.palette`).
"""

from __future__ import annotations

import numpy as np

from ...jit import CompiledLoops

# The loops of this module, compiled together on the first call of any: numba is imported only by a
# process that writes a GIF, not by one that reads one.
_loop = CompiledLoops(globals())


# Colour keys index a 2**24-entry table; the mask keeps a key with a stray top byte inside it
# (numba does not check bounds).
_KEY_MASK = 0xFFFFFF


@_loop
def _distance(a: int, b: int) -> int:
    red = (a & 255) - (b & 255)
    green = ((a >> 8) & 255) - ((b >> 8) & 255)
    blue = ((a >> 16) & 255) - ((b >> 16) & 255)
    return red * red + green * green + blue * blue


@_loop
def key_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel squared RGB distance between two equal-length arrays of colour keys, as int32."""
    out = np.empty(a.size, np.int32)
    for i in range(a.size):
        out[i] = _distance(a[i], b[i])
    return out


@_loop
def nearest_entries(keys: np.ndarray, entry_keys: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each key, the nearest of its (k, N) ``candidates`` (indices into ``entry_keys``) and the squared distance.

    The first of equally near candidates wins.
    """
    count = keys.size
    best = np.empty(count, candidates.dtype)
    best_distance = np.empty(count, np.int32)
    for i in range(count):
        key = keys[i]
        chosen = _nearest_in_shortlist(key, candidates, i, candidates.shape[0], entry_keys)
        best[i] = chosen
        best_distance[i] = _distance(key, entry_keys[chosen])
    return best, best_distance


@_loop
def lookup(
    table: np.ndarray,
    keys: np.ndarray,
    cell_known: np.ndarray,
    cell_candidates: np.ndarray,
    shortlist: int,
    entry_keys: np.ndarray,
    bits: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each key's entry in ``table`` (palette index + 1), resolving new colours whose cell shortlist is known.

    A new colour (table entry 0) takes the nearest of its cell's
    ``shortlist`` candidates and is remembered in the table. Returns the
    entries (0 where the cell is not known yet), the positions left
    unresolved, their cells not known yet (once each, in order of first
    use), and the keys written to the table.
    """
    count = keys.size
    found = np.empty(count, np.uint8)
    deferred = np.empty(count, np.intp)
    fresh_cells = np.empty(count, np.int32)
    written = np.empty(count, np.int32)
    marked = np.zeros(cell_known.size, np.bool_)
    waiting = fresh = learned = 0
    for i in range(count):
        key = keys[i] & _KEY_MASK
        value = table[key]
        if value == 0:
            cell = _cell(key, bits)
            if cell_known[cell]:
                value = _nearest_in_shortlist(key, cell_candidates, cell, shortlist, entry_keys) + 1
                table[key] = value
                written[learned] = key
                learned += 1
            else:
                deferred[waiting] = i
                waiting += 1
                if not marked[cell]:
                    marked[cell] = True
                    fresh_cells[fresh] = cell
                    fresh += 1
        found[i] = value
    return found, deferred[:waiting], fresh_cells[:fresh], written[:learned]


@_loop
def _nearest_in_shortlist(
    key: int, cell_candidates: np.ndarray, cell: int, shortlist: int, entry_keys: np.ndarray
) -> int:
    """The nearest to ``key`` of the first ``shortlist`` entries in column ``cell`` of ``cell_candidates``.

    The first of equally near entries wins.
    """
    chosen = cell_candidates[0, cell]
    least = _distance(key, entry_keys[chosen])
    for row in range(1, shortlist):
        entry = cell_candidates[row, cell]
        distance = _distance(key, entry_keys[entry])
        if distance < least:
            chosen, least = entry, distance
    return chosen


@_loop
def _cell(key: int, bits: int) -> int:
    shift, mask = 8 - bits, (1 << bits) - 1
    red = (key >> shift) & mask
    green = (key >> (8 + shift)) & mask
    blue = (key >> (16 + shift)) & mask
    return red | (green << bits) | (blue << (2 * bits))


@_loop
def resolve_missing(
    table: np.ndarray,
    keys: np.ndarray,
    found: np.ndarray,
    missing: np.ndarray,
    cell_candidates: np.ndarray,
    shortlist: int,
    entry_keys: np.ndarray,
    bits: int,
) -> np.ndarray:
    """Fill ``found`` (table entries, index + 1) at ``missing`` from each key's cell shortlist; remember them.

    Returns the keys written to ``table``. A colour met twice is resolved
    once; the numpy form resolved it twice, to the same entry.
    """
    written = np.empty(missing.size, np.int32)
    count = 0
    for position in missing:
        key = keys[position] & _KEY_MASK
        value = table[key]
        if value == 0:
            chosen = _nearest_in_shortlist(key, cell_candidates, _cell(key, bits), shortlist, entry_keys)
            value = chosen + 1
            table[key] = value
            written[count] = key
            count += 1
        found[position] = value
    return written[:count]


@_loop
def lloyd_round(
    point_keys: np.ndarray,
    points: np.ndarray,
    weights: np.ndarray,
    centres: np.ndarray,
    centre_keys: np.ndarray,
    candidates: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One weighted k-means round: each point to the nearest of its candidate centres, used centres to their means.

    ``centres`` (C, 3) float64 is updated in place; returns each point's
    squared distance to its centre (as the colours they round to) and each
    centre's mass (0: unused, left where it was). Sums run in point order,
    as numpy's bincount adds them.
    """
    nearest, distance = nearest_entries(point_keys, centre_keys, candidates)
    size = centres.shape[0]
    mass = np.zeros(size)
    totals = np.zeros((size, 3))
    for i in range(point_keys.size):
        entry = nearest[i]
        weight = weights[i]
        mass[entry] += weight
        for channel in range(3):
            totals[entry, channel] += weight * points[i, channel]
    for entry in range(size):
        if mass[entry] > 0:
            for channel in range(3):
                centres[entry, channel] = totals[entry, channel] / mass[entry]
    return distance, mass


@_loop
def histogram(keys: np.ndarray, weights: np.ndarray, weighted: bool, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The occupied cells (``bits`` a channel) of the keys' colours, in cell order: mean colour and total weight.

    Unweighted (``weighted`` False, ``weights`` ignored) every pixel weighs 1.
    Cells whose weight is 0 are left out.
    """
    cells = np.empty(keys.size, np.int32)
    distinct = np.empty(keys.size, np.int32)
    seen = np.zeros(1 << (3 * bits), np.bool_)
    occupied = 0
    for i in range(keys.size):
        cell = _cell(keys[i], bits)
        cells[i] = cell
        if not seen[cell]:
            seen[cell] = True
            distinct[occupied] = cell
            occupied += 1
    # Only the slots of occupied cells are ever read: no need to clear the rest.
    slot = np.empty(seen.size, np.int32)
    for place, cell in enumerate(np.sort(distinct[:occupied])):
        slot[cell] = place
    mass = np.zeros(occupied)
    sums = np.zeros((occupied, 3))
    for i in range(keys.size):
        place = slot[cells[i]]
        key = keys[i]
        weight = weights[i] if weighted else 1.0
        mass[place] += weight
        for channel in range(3):
            level = (key >> (8 * channel)) & 255
            sums[place, channel] += weight * level if weighted else level
    kept = 0
    for place in range(occupied):
        if mass[place] > 0:
            kept += 1
    means = np.empty((kept, 3))
    masses = np.empty(kept)
    kept = 0
    for place in range(occupied):
        if mass[place] > 0:
            for channel in range(3):
                means[kept, channel] = sums[place, channel] / mass[place]
            masses[kept] = mass[place]
            kept += 1
    return means, masses


@_loop
def still_change_counts(
    keys: np.ndarray, previous: np.ndarray, probe: np.ndarray, levels: int
) -> tuple[np.ndarray, int]:
    """At the ``probe`` positions, how often each channel change 0..``levels`` occurs among still pixels.

    A pixel is still when no channel changed by more than ``levels``; returns
    the counts over the R, G and B changes of still pixels, and their number.
    """
    counts = np.zeros(levels + 1, np.int64)
    still = 0
    for position in probe:
        a, b = keys[position], previous[position]
        red = abs((a & 255) - (b & 255))
        green = abs(((a >> 8) & 255) - ((b >> 8) & 255))
        blue = abs(((a >> 16) & 255) - ((b >> 16) & 255))
        if max(red, green, blue) <= levels:
            still += 1
            counts[red] += 1
            counts[green] += 1
            counts[blue] += 1
    return counts, still


@_loop
def changed_pixels(
    keys: np.ndarray, previous: np.ndarray, canvas: np.ndarray, was_still: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The pixels a frame may rewrite: positions, their keys and squared error as the canvas shows them.

    First (their number is returned last) every pixel the canvas shows worse
    than ``tolerance``, then those shown within it but not exactly whose
    input has just come to rest (equal to ``previous`` now, not at the
    previous frame), each group in screen order. ``was_still`` (bool, per
    pixel) is updated to this frame's stillness.
    """
    count = keys.size
    order = np.empty(count, np.intp)
    worse = 0
    resting_from = count
    for i in range(count):
        key = keys[i]
        error = _distance(key, canvas[i])
        still = key == previous[i]
        if error > tolerance:
            order[worse] = i
            worse += 1
        elif still and not was_still[i] and error > 0:
            resting_from -= 1
            order[resting_from] = i
        was_still[i] = still
    total = worse + count - resting_from
    positions = np.empty(total, np.intp)
    positions[:worse] = order[:worse]
    positions[worse:] = order[resting_from:][::-1]
    pixels = np.empty(total, keys.dtype)
    kept = np.empty(total, np.int32)
    for place in range(total):
        position = positions[place]
        pixels[place] = keys[position]
        kept[place] = _distance(keys[position], canvas[position])
    return positions, pixels, kept, worse


@_loop
def improved(kept: np.ndarray, error: np.ndarray, worse: int, tolerance: float, settle_ratio: float) -> np.ndarray:
    """Where a rewrite pays: for the first ``worse`` pixels, the canvas error ``kept`` exceeds the new ``error`` plus
    ``tolerance``; for the rest (pixels come to rest), it exceeds ``settle_ratio`` times the new error."""
    chosen = np.empty(kept.size, np.intp)
    count = 0
    for i in range(kept.size):
        threshold = error[i] + tolerance if i < worse else error[i] * settle_ratio
        if kept[i] > threshold:
            chosen[count] = i
            count += 1
    return chosen[:count]
