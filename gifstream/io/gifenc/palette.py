"""Palettes for GIF frames: building them from pixels and mapping pixels onto them.

Pixels are handled as flat ``(N, 3)`` uint8 RGB arrays. Distances are plain
squared RGB distances, the measure PSNR scores a GIF by.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.spatial import cKDTree

# Colour histogram resolution for palette building: 6 bits a channel (262,144
# cells). Measured on the first frame of the carphone clip (255 colours, 4
# k-means rounds): 5 bits 39.6 dB, 6 bits 40.0 dB, 7 bits 40.1 dB at twice
# the cost of 6 bits.
_HISTOGRAM_BITS = 6
# Palette look-ups go through cells of 5 bits a channel (8x8x8 levels), each
# keeping this many entries nearest its centre. Against an exhaustive search,
# on a Big Buck Bunny and a carphone frame: 2 entries lose 0.19 / 0.38 dB,
# 3 lose 0.04 / 0.05 dB, 4 lose 0.008 / 0.006 dB.
_LOOKUP_BITS = 5
_SHORTLIST = 4
_LOOKUP_CELLS = 1 << (3 * _LOOKUP_BITS)
# A refined palette moves its entries a little, so the cells' shortlists stay
# good for a while; they are recomputed after this many refinements.
_SHORTLIST_REFRESH = 4
# Clearing a recycled colour table key by key stops paying off beyond this many keys.
_CLEAR_ALL_ABOVE = 1 << 20


def colour_keys(pixels: np.ndarray) -> np.ndarray:
    """Each pixel's colour as one int32, 0xRRGGBB."""
    keys = pixels[:, 0].astype(np.int32)
    keys <<= 8
    keys |= pixels[:, 1]
    keys <<= 8
    keys |= pixels[:, 2]
    return keys


def colours_of_keys(keys: np.ndarray) -> np.ndarray:
    """The (N, 3) uint8 colours of 0xRRGGBB keys."""
    return np.stack([keys >> 16, (keys >> 8) & 0xFF, keys & 0xFF], axis=1).astype(np.uint8)


def squared_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel squared RGB distance between two (N, 3) uint8 arrays, as int32."""
    diff = a.astype(np.int32)
    diff -= b
    diff *= diff
    return diff[:, 0] + diff[:, 1] + diff[:, 2]


def _cells(pixels: np.ndarray, bits: int) -> np.ndarray:
    """Each pixel's cell in a grid of ``bits`` bits a channel, as one int32."""
    shift = 8 - bits
    cells = (pixels[:, 0] >> shift).astype(np.int32)
    cells <<= bits
    cells |= pixels[:, 1] >> shift
    cells <<= bits
    cells |= pixels[:, 2] >> shift
    return cells


def _cell_centres(cells: np.ndarray, bits: int) -> np.ndarray:
    mask = (1 << bits) - 1
    corner = np.stack([cells >> (2 * bits), (cells >> bits) & mask, cells & mask], axis=1)
    return corner * float(1 << (8 - bits)) + ((1 << (8 - bits)) - 1) / 2


def _histogram(pixels: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The occupied cells of a 6-bit colour histogram: each cell's (weighted) mean colour and total weight."""
    cells = _cells(pixels, _HISTOGRAM_BITS)
    occupied = np.flatnonzero(np.bincount(cells, minlength=1 << (3 * _HISTOGRAM_BITS)))
    compact = np.zeros(1 << (3 * _HISTOGRAM_BITS), np.int32)
    compact[occupied] = np.arange(occupied.size, dtype=np.int32)
    inverse = compact[cells]
    if weights is None:
        mass: np.ndarray = np.bincount(inverse, minlength=occupied.size).astype(np.float64)
        sums = [np.bincount(inverse, weights=pixels[:, c], minlength=occupied.size) for c in range(3)]
    else:
        mass = np.bincount(inverse, weights=weights, minlength=occupied.size)
        sums = [np.bincount(inverse, weights=weights * pixels[:, c], minlength=occupied.size) for c in range(3)]
    nonzero = mass > 0
    means = np.stack(sums, axis=1)[nonzero] / mass[nonzero, None]
    return means, mass[nonzero]


def _octree_palette(pixels: np.ndarray, colors: int) -> np.ndarray:
    """Pillow's fast octree palette of the pixels: a cheap, reasonable start for k-means."""
    image = Image.fromarray(pixels.reshape(1, -1, 3))
    quantized = image.quantize(colors, method=Image.Quantize.FASTOCTREE)
    flat = np.array(quantized.getpalette() or [0, 0, 0], dtype=np.float64)
    return flat[: 3 * colors].reshape(-1, 3)


def _nearest_of(points: np.ndarray, planes: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point, the nearest of its (k, N) candidate entries, and the squared distance to it.

    ``points`` is (N, 3) and ``planes`` (3, n) holds the entries one channel
    a row, both of the type to compute in (int32 for colours, float32 for
    means).
    """
    best = candidates[0].copy()
    best_distance = _distances_to(points, planes, best)
    for row in candidates[1:]:
        distance = _distances_to(points, planes, row)
        closer = distance < best_distance
        best[closer] = row[closer]
        np.minimum(best_distance, distance, out=best_distance)
    return best, best_distance


def _distances_to(points: np.ndarray, planes: np.ndarray, entries: np.ndarray) -> np.ndarray:
    total = np.take(planes[0], entries) - points[:, 0]
    total *= total
    for channel in (1, 2):
        offset = np.take(planes[channel], entries) - points[:, channel]
        offset *= offset
        total += offset
    return np.asarray(total)


def _lloyd(points: np.ndarray, weights: np.ndarray, centres: np.ndarray, candidates: np.ndarray, rounds: int) -> None:
    """Weighted k-means rounds on ``centres`` (in place); an unused centre moves to the worst-served point.

    Each point chooses among its ``candidates`` (k, N), the centres nearest
    it at the start: centres move little in a few rounds.
    """
    points32 = points.astype(np.float32)
    for _ in range(rounds):
        nearest, distance = _nearest_of(points32, centres.T.astype(np.float32), candidates)
        mass = np.bincount(nearest, weights=weights, minlength=len(centres))
        used = mass > 0
        for channel in range(3):
            total = np.bincount(nearest, weights=weights * points[:, channel], minlength=len(centres))
            centres[used, channel] = total[used] / mass[used]
        unused = np.flatnonzero(~used)
        if unused.size:
            worst = np.argsort(weights * distance)[::-1][: unused.size]
            centres[unused[: worst.size]] = points[worst]
            candidates[0, worst] = unused[: worst.size]


def _to_colours(centres: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(np.rint(centres), 0, 255), dtype=np.uint8)


def exact_palette(pixels: np.ndarray, colors: int) -> np.ndarray | None:
    """The pixels' distinct colours, if there are no more than ``colors`` of them."""
    if len(pixels) > colors and np.count_nonzero(np.bincount(_cells(pixels, _LOOKUP_BITS))) > colors:
        return None  # more occupied cells than allowed colours: no need to look at every colour
    distinct = np.unique(colour_keys(pixels))
    return colours_of_keys(distinct) if distinct.size <= colors else None


def build_palette(pixels: np.ndarray, colors: int, weights: np.ndarray | None = None, rounds: int = 4) -> np.ndarray:
    """At most ``colors`` colours, (n, 3) uint8, that represent ``pixels`` ((N, 3) uint8, N >= 1) well.

    When the pixels hold no more than ``colors`` distinct colours the palette is
    exactly those colours (lossless). Otherwise it is k-means (Lloyd) on a
    6-bit histogram weighted by pixel count (times ``weights``, if given),
    started from Pillow's fast octree palette.
    """
    exact = exact_palette(pixels, colors)
    if exact is not None:
        return exact
    points, mass = _histogram(pixels, weights)
    if len(points) <= colors:
        return np.unique(_to_colours(points), axis=0)
    centres = _octree_palette(pixels, colors)
    if len(centres) < colors:
        # Fill the remaining entries from the most populated cells.
        centres = np.vstack([centres, points[np.argsort(mass)[::-1][: colors - len(centres)]]])
    candidates = _shortlists_from_tree(_to_colours(points), cKDTree(centres), min(_SHORTLIST, len(centres)))
    _lloyd(points, mass, centres, candidates, rounds)
    return colours_of_keys(np.unique(colour_keys(_to_colours(centres))))


def refine_palette(
    pixels: np.ndarray, lookup: NearestColour, weights: np.ndarray | None = None, rounds: int = 3
) -> np.ndarray:
    """``lookup``'s palette moved by k-means rounds towards ``pixels`` (weighted by ``weights``).

    Entries keep their places (entry i of the result is entry i moved), so
    what is known about where colours fall carries over.
    """
    points, mass = _histogram(pixels, weights)
    centres = lookup.palette.astype(np.float64)
    _lloyd(points, mass, centres, lookup.shortlists(_to_colours(points)), rounds)
    return _to_colours(centres)


def lloyd_gain(
    pixels: np.ndarray, indices: np.ndarray, palette: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """How much the (weighted) mean squared error of ``pixels`` mapped to ``indices`` drops in one k-means update.

    Moving each entry to the mean of its pixels lowers their error by the
    squared distance it moves; that is the least a refitted palette would
    gain on these pixels (it also re-assigns pixels and moves unused
    entries), and costs a few bincounts over pixels already mapped. The mean
    of a few pixels strays from the true centre by their spread over their
    number, which is taken off so small samples do not overstate the gain;
    an entry with a single pixel tells nothing and counts for nothing.
    """
    if weights is None:
        weights = np.ones(len(pixels))
    size = len(palette)
    mass = np.bincount(indices, weights=weights, minlength=size)
    used = mass > 0
    mass = mass[used]
    squares = np.bincount(indices, weights=weights * weights, minlength=size)[used]
    offsets = pixels.astype(np.float64) - palette[indices]
    spread = np.bincount(indices, weights=weights * np.einsum("nc,nc->n", offsets, offsets), minlength=size)[used]
    shift = np.zeros(mass.size)
    for channel in range(3):
        mean_offset = np.bincount(indices, weights=weights * offsets[:, channel], minlength=size)[used] / mass
        shift += mean_offset * mean_offset
    variance = np.maximum(spread / mass - shift, 0.0)
    effective_count = mass * mass / squares
    # An entry's spread is known only from two pixels on; the pooled spread stands in where it is larger.
    judged = effective_count >= 2
    if not judged.any():
        return 0.0
    pooled = float(np.dot(mass[judged], variance[judged]) / mass[judged].sum())
    variance = np.maximum(variance, pooled)
    gain = np.where(judged, np.maximum(shift - variance / effective_count, 0.0), 0.0)
    return float(np.dot(mass, gain)) / max(float(weights.sum()), 1e-12)


def _shortlists_from_tree(colours: np.ndarray, tree: cKDTree, shortlist: int) -> np.ndarray:
    """(shortlist, N): for each colour, the entries of ``tree`` nearest the centre of its cell."""
    cells = _cells(colours, _LOOKUP_BITS)
    seen = np.zeros(_LOOKUP_CELLS, bool)
    seen[cells] = True
    occupied = np.flatnonzero(seen)
    _, nearest = tree.query(_cell_centres(occupied, _LOOKUP_BITS), k=shortlist)
    slot = np.zeros(_LOOKUP_CELLS, np.int32)
    slot[occupied] = np.arange(occupied.size, dtype=np.int32)
    return np.ascontiguousarray(nearest.reshape(occupied.size, shortlist)[slot[cells]].T)


class NearestColour:
    """Maps colours to the index of the nearest palette entry.

    Every distinct colour is resolved once and remembered in a table indexed
    by 0xRRGGBB (allocated zeroed, so only the pages of colours actually seen
    take memory): a palette kept over many frames costs a table read for the
    colours it has seen. A new colour is resolved through its cell of 8x8x8
    levels, which remembers the four palette entries nearest its centre
    (found once per cell with a k-d tree); the colour takes the nearest of
    those four. Against an exhaustive search on real frames with 255-colour
    palettes this costs under 0.01 dB of PSNR, at a fraction of the look-ups.
    A colour that is itself in the palette always maps to that entry.

    ``recycle`` hands over the tables of a lookup that is no longer needed
    (cleared), so a stream holds one set of tables however often its palette
    changes. With ``refined`` (the new palette is the recycled one's entries
    moved a little, in the same places) the cells' shortlists are kept too,
    and recomputed only every few refinements.
    """

    def __init__(self, palette: np.ndarray, recycle: NearestColour | None = None, refined: bool = False) -> None:
        if not 1 <= len(palette) <= 255:
            raise ValueError(f"a mapped palette has 1 to 255 colours; got {len(palette)}")
        self.palette = palette
        self._planes = palette.T.astype(np.int32)  # (3, n): one row a channel
        self._tree = cKDTree(palette.astype(np.float64))
        self._shortlist = min(_SHORTLIST, len(palette))
        self._refinements = 0
        if recycle is None:
            self._table = np.zeros(1 << 24, np.uint8)  # palette index + 1; 0 = not resolved yet
            self._cell_known = np.zeros(_LOOKUP_CELLS, bool)
            self._cell_candidates = np.zeros((_SHORTLIST, _LOOKUP_CELLS), np.intp)
        else:
            keep = refined and recycle._shortlist == self._shortlist
            keep = keep and recycle._refinements + 1 < _SHORTLIST_REFRESH
            self._table, self._cell_known, self._cell_candidates = recycle._handed_over(keep)
            self._refinements = recycle._refinements + 1 if keep else 0
        # Keys written to the table, so it can be cleared without touching all 16 MiB.
        self._written: list[np.ndarray] = []
        # A cell can crowd an exact match out of its shortlist: palette colours map to themselves.
        self._remember(colour_keys(palette), np.arange(1, len(palette) + 1, dtype=np.uint8))

    def indices(self, pixels: np.ndarray) -> np.ndarray:
        """The (N,) uint8 palette index nearest to each of the (N, 3) uint8 pixels."""
        keys = colour_keys(pixels)
        found = self._table[keys]
        missing = np.flatnonzero(found == 0)
        if missing.size:
            # Repeated colours are resolved more than once: cheaper than finding the distinct ones.
            colours = pixels[missing]
            resolved, _ = _nearest_of(colours.astype(np.int32), self._planes, self.shortlists(colours))
            resolved = resolved.astype(np.uint8) + 1
            self._remember(keys[missing], resolved)
            found[missing] = resolved
        found -= 1
        return np.asarray(found)

    def shortlists(self, colours: np.ndarray) -> np.ndarray:
        """(k, N): for each colour, the palette entries nearest the centre of its cell."""
        cells = _cells(colours, _LOOKUP_BITS)
        seen = np.zeros(_LOOKUP_CELLS, bool)
        seen[cells] = True
        unknown = np.flatnonzero(seen & ~self._cell_known)
        shortlist = self._shortlist
        if unknown.size:
            _, nearest = self._tree.query(_cell_centres(unknown, _LOOKUP_BITS), k=shortlist)
            self._cell_candidates[:shortlist, unknown] = nearest.reshape(unknown.size, shortlist).T
            self._cell_known[unknown] = True
        return np.take(self._cell_candidates[:shortlist], cells, axis=1)

    def _remember(self, keys: np.ndarray, entries: np.ndarray) -> None:
        self._table[keys] = entries
        self._written.append(keys)

    def _handed_over(self, keep_shortlists: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This lookup's tables for a successor: the colour table cleared, the shortlists kept if asked."""
        written = sum(keys.size for keys in self._written)
        if written > _CLEAR_ALL_ABOVE:
            self._table.fill(0)
        else:
            for keys in self._written:
                self._table[keys] = 0
        self._written = []
        if not keep_shortlists:
            self._cell_known.fill(False)
        return self._table, self._cell_known, self._cell_candidates


def mean_spacing(palette: np.ndarray) -> float:
    """The typical step between neighbouring palette entries, in levels a channel.

    The median distance from an entry to its nearest other entry, over sqrt(3):
    entries a step apart in every channel are that step apart per channel.
    """
    if len(palette) < 2:
        return 0.0
    distance, _ = cKDTree(palette.astype(np.float64)).query(palette.astype(np.float64), k=2)
    return float(np.median(distance[:, 1]) / np.sqrt(3))


def bayer_matrix(order: int = 3) -> np.ndarray:
    """The (2^order)^2 Bayer threshold matrix, values spread evenly over [-0.5, 0.5)."""
    matrix = np.zeros((1, 1), np.int64)
    for _ in range(order):
        matrix = np.block([[4 * matrix, 4 * matrix + 2], [4 * matrix + 3, 4 * matrix + 1]])
    size = matrix.size
    return (matrix + 0.5) / size - 0.5
