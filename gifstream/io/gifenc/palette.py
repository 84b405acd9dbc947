"""Palettes for GIF frames: building them from pixels and mapping pixels onto them.

Pixels are handled as colour keys: one little-endian int32 a pixel holding
``R | G << 8 | B << 16``, which is the memory layout of an RGBX pixel. A frame
becomes keys with one OpenCV conversion, and a set of pixels is gathered or
scattered as one 1-D array instead of an (N, 3) one (200,000 pixels of a
960x540 frame: 0.12 ms against 2.8 ms). The (N, 3) uint8 forms are kept for
callers that have colours at hand. Distances are plain squared RGB
distances, the measure PSNR scores a GIF by.
"""

from __future__ import annotations

import mmap

import cv2
import numpy as np
from PIL import Image
from scipy.spatial import cKDTree

from . import kernels

KEY = np.dtype("<i4")

# Colour histogram resolution for palette building: 6 bits a channel (262,144
# cells). Measured on the first frame of the carphone clip (255 colours, 4
# k-means rounds): 5 bits 39.6 dB, 6 bits 40.0 dB, 7 bits 40.1 dB at twice
# the cost of 6 bits.
_HISTOGRAM_BITS = 6
# Palettes are built and refined from at most this many pixels (an even
# stride through them). Measured on three 960x540 frames (the synthetic pan,
# Big Buck Bunny and carphone upscaled 2x): 0.04 to 0.08 dB below a palette
# built from every pixel, in 40 to 80 % of the time (14 ms against 38 ms on
# the synthetic frame).
_PALETTE_SAMPLE = 1 << 16
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
# Keys written to a colour table are gathered into one array beyond this many pieces.
_WRITTEN_PIECES = 64
# Clearing a recycled colour table key by key stops paying off beyond this many keys.
_CLEAR_ALL_ABOVE = 1 << 20


# --------------------------------------------------------------------------- colour keys


def image_keys(rgb: np.ndarray) -> np.ndarray:
    """The (H*W,) colour keys of an (H, W, 3) uint8 RGB image, row by row."""
    rgbx = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2RGBA)
    rgbx[..., 3] = 0
    return rgbx.reshape(-1).view(KEY)


def colour_keys(pixels: np.ndarray) -> np.ndarray:
    """The colour keys of (N, 3) uint8 pixels."""
    rgbx = np.zeros((len(pixels), 4), np.uint8)
    rgbx[:, :3] = pixels
    return rgbx.reshape(-1).view(KEY)


def key_channels(keys: np.ndarray) -> np.ndarray:
    """An (N, 4) uint8 RGBX view of colour keys (copied first if they are not contiguous)."""
    return np.ascontiguousarray(keys, KEY).view(np.uint8).reshape(-1, 4)


def colours_of_keys(keys: np.ndarray) -> np.ndarray:
    """The (N, 3) uint8 colours of colour keys."""
    return np.ascontiguousarray(key_channels(keys)[:, :3])


def squared_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel squared RGB distance between two (N, 3) uint8 arrays, as int32."""
    diff = a.astype(np.int32)
    diff -= b
    diff *= diff
    return diff[:, 0] + diff[:, 1] + diff[:, 2]


def key_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel squared RGB distance between two arrays of colour keys, as int32."""
    return kernels.key_error(a, b)


def sample_stride(count: int, limit: int = _PALETTE_SAMPLE) -> int:
    """The stride that takes at most about ``limit`` of ``count`` items."""
    return max(1, -(-count // limit))


def _cells(keys: np.ndarray, bits: int) -> np.ndarray:
    """Each colour key's cell in a grid of ``bits`` bits a channel, as ``r | g << bits | b << 2 * bits``."""
    shift, mask = 8 - bits, (1 << bits) - 1
    cells = keys >> shift
    cells &= mask
    for channel in (1, 2):
        part = keys >> (8 * channel + shift)
        part &= mask
        part <<= bits * channel
        cells |= part
    return cells


def _cell_centres(cells: np.ndarray, bits: int) -> np.ndarray:
    mask = (1 << bits) - 1
    corner = np.stack([cells & mask, (cells >> bits) & mask, cells >> (2 * bits)], axis=1)
    return corner * float(1 << (8 - bits)) + ((1 << (8 - bits)) - 1) / 2


# --------------------------------------------------------------------------- building palettes


def _occupied_cells(cells: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct cells (sorted) of ``count`` and, for each of ``cells``, its place among them.

    A boolean mark and a slot table that is written only where read (np.empty,
    not zeroed) cost a fraction of a bincount or a sort over the cells.
    """
    seen = np.zeros(count, bool)
    seen[cells] = True
    occupied = np.flatnonzero(seen)
    slot = np.empty(count, np.int32)
    slot[occupied] = np.arange(occupied.size, dtype=np.int32)
    return occupied, slot.take(cells)


def _distinct(cells: np.ndarray, count: int) -> np.ndarray:
    """The distinct values (sorted) of ``cells``, each below ``count``: by sorting when few, else by marking."""
    if cells.size * 16 < count:
        return np.unique(cells)
    seen = np.zeros(count, bool)
    seen[cells] = True
    return np.flatnonzero(seen)


def _occupied_count(cells: np.ndarray, count: int) -> int:
    seen = np.zeros(count, bool)
    seen[cells] = True
    return int(np.count_nonzero(seen))


def _histogram(keys: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The occupied cells of a 6-bit colour histogram: each cell's (weighted) mean colour and total weight."""
    if weights is None:
        return kernels.histogram(keys, np.empty(0), False, _HISTOGRAM_BITS)
    return kernels.histogram(keys, np.ascontiguousarray(weights, np.float64), True, _HISTOGRAM_BITS)


def _octree_palette(keys: np.ndarray, colors: int) -> np.ndarray:
    """Pillow's fast octree palette of the pixels: a cheap, reasonable start for k-means."""
    image = Image.fromarray(colours_of_keys(keys).reshape(1, -1, 3))
    quantized = image.quantize(colors, method=Image.Quantize.FASTOCTREE)
    flat = np.array(quantized.getpalette() or [0, 0, 0], dtype=np.float64)
    return flat[: 3 * colors].reshape(-1, 3)


def _lloyd(points: np.ndarray, weights: np.ndarray, centres: np.ndarray, candidates: np.ndarray, rounds: int) -> None:
    """Weighted k-means rounds on ``centres`` (in place); an unused centre moves to the worst-served point.

    Each point chooses among its ``candidates`` (k, N), the centres nearest
    it at the start: centres move little in a few rounds.
    """
    # Points and centres are compared as the colours they round to: it changes no choice that matters.
    point_keys = colour_keys(_to_colours(points))
    for _ in range(rounds):
        centre_keys = colour_keys(_to_colours(centres))
        distance, mass = kernels.lloyd_round(point_keys, points, weights, centres, centre_keys, candidates)
        unused = np.flatnonzero(~(mass > 0))
        if unused.size:
            worst = np.argsort(weights * distance)[::-1][: unused.size]
            centres[unused[: worst.size]] = points[worst]
            candidates[0, worst] = unused[: worst.size]


def _to_colours(centres: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(np.rint(centres), 0, 255), dtype=np.uint8)


def exact_palette_of_keys(keys: np.ndarray, colors: int) -> np.ndarray | None:
    """The distinct colours of the keys, (n, 3) uint8, if there are no more than ``colors`` of them."""
    # More occupied cells than allowed colours, in a sample or in all: no need to look at every colour.
    stride = sample_stride(len(keys))
    for sample in (keys[::stride], keys) if stride > 1 else (keys,):
        if len(sample) > colors and _occupied_count(_cells(sample, _LOOKUP_BITS), _LOOKUP_CELLS) > colors:
            return None
    distinct = np.unique(keys)
    return colours_of_keys(distinct) if distinct.size <= colors else None


def exact_palette(pixels: np.ndarray, colors: int) -> np.ndarray | None:
    """The distinct colours of (N, 3) uint8 pixels, if there are no more than ``colors`` of them."""
    return exact_palette_of_keys(colour_keys(pixels), colors)


def palette_of_keys(keys: np.ndarray, colors: int, weights: np.ndarray | None = None, rounds: int = 4) -> np.ndarray:
    """At most ``colors`` colours, (n, 3) uint8, that represent the pixels of ``keys`` (N >= 1) well.

    When the pixels hold no more than ``colors`` distinct colours the palette is
    exactly those colours (lossless). Otherwise it is k-means (Lloyd) on a
    6-bit histogram of (a sample of) the pixels weighted by pixel count
    (times ``weights``, if given), started from Pillow's fast octree palette.
    """
    exact = exact_palette_of_keys(keys, colors)
    if exact is not None:
        return exact
    stride = sample_stride(len(keys))
    keys = keys[::stride]
    weights = None if weights is None else weights[::stride]
    points, mass = _histogram(keys, weights)
    if len(points) <= colors:
        return np.unique(_to_colours(points), axis=0)
    centres = _octree_palette(keys, colors)
    if len(centres) < colors:
        # Fill the remaining entries from the most populated cells.
        centres = np.vstack([centres, points[np.argsort(mass)[::-1][: colors - len(centres)]]])
    shortlist = min(_SHORTLIST, len(centres))
    candidates = _shortlists_from_tree(colour_keys(_to_colours(points)), cKDTree(centres), shortlist)
    _lloyd(points, mass, centres, candidates, rounds)
    return colours_of_keys(np.unique(colour_keys(_to_colours(centres))))


def build_palette(pixels: np.ndarray, colors: int, weights: np.ndarray | None = None, rounds: int = 4) -> np.ndarray:
    """:func:`palette_of_keys` for (N, 3) uint8 pixels."""
    return palette_of_keys(colour_keys(pixels), colors, weights, rounds)


def refine_palette_of_keys(
    keys: np.ndarray, lookup: NearestColour, weights: np.ndarray | None = None, rounds: int = 3
) -> np.ndarray:
    """``lookup``'s palette moved by k-means rounds towards (a sample of) the pixels of ``keys``.

    Entries keep their places (entry i of the result is entry i moved), so
    what is known about where colours fall carries over.
    """
    stride = sample_stride(len(keys))
    points, mass = _histogram(keys[::stride], None if weights is None else weights[::stride])
    centres = lookup.palette.astype(np.float64)
    _lloyd(points, mass, centres, lookup.shortlists(colour_keys(_to_colours(points))), rounds)
    return _to_colours(centres)


def refine_palette(
    pixels: np.ndarray, lookup: NearestColour, weights: np.ndarray | None = None, rounds: int = 3
) -> np.ndarray:
    """:func:`refine_palette_of_keys` for (N, 3) uint8 pixels."""
    return refine_palette_of_keys(colour_keys(pixels), lookup, weights, rounds)


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
    return _lloyd_gain(pixels.astype(np.float64) - palette[indices], indices, len(palette), weights)


def lloyd_gain_of_keys(
    keys: np.ndarray, shown: np.ndarray, indices: np.ndarray, size: int, weights: np.ndarray | None = None
) -> float:
    """:func:`lloyd_gain` for colour keys mapped to entries ``indices`` (of ``size``) that show the keys ``shown``."""
    offsets = key_channels(keys)[:, :3].astype(np.float64)
    offsets -= key_channels(shown)[:, :3]
    return _lloyd_gain(offsets, indices, size, weights)


def _lloyd_gain(offsets: np.ndarray, indices: np.ndarray, size: int, weights: np.ndarray | None) -> float:
    """:func:`lloyd_gain` from each pixel's offset from its entry, (N, 3) float64."""
    if weights is None:
        weights = np.ones(len(offsets))
    mass = np.bincount(indices, weights=weights, minlength=size)
    used = mass > 0
    mass = mass[used]
    squares = np.bincount(indices, weights=weights * weights, minlength=size)[used]
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


# --------------------------------------------------------------------------- mapping onto a palette


def _shortlists_from_tree(keys: np.ndarray, tree: cKDTree, shortlist: int) -> np.ndarray:
    """(shortlist, N): for each colour key, the entries of ``tree`` nearest the centre of its cell."""
    occupied, slot = _occupied_cells(_cells(keys, _LOOKUP_BITS), _LOOKUP_CELLS)
    _, nearest = tree.query(_cell_centres(occupied, _LOOKUP_BITS), k=shortlist)
    return np.ascontiguousarray(nearest.reshape(occupied.size, shortlist).take(slot, axis=0).T)


class NearestColour:
    """Maps colours to the index of the nearest palette entry.

    Every distinct colour is resolved once and remembered in a table indexed
    by its key (allocated zeroed, so only the pages of colours actually seen
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
        self.keys = colour_keys(palette)
        self._tree = cKDTree(palette.astype(np.float64))
        self._shortlist = min(_SHORTLIST, len(palette))
        self._refinements = 0
        if recycle is None:
            self._table = _zeroed_on_demand(1 << 24)  # palette index + 1; 0 = not resolved yet
            self._cell_known = np.zeros(_LOOKUP_CELLS, bool)
            self._cell_candidates = np.zeros((_SHORTLIST, _LOOKUP_CELLS), np.uint8)
        else:
            keep = refined and recycle._shortlist == self._shortlist
            keep = keep and recycle._refinements + 1 < _SHORTLIST_REFRESH
            self._table, self._cell_known, self._cell_candidates = recycle._handed_over(keep)
            self._refinements = recycle._refinements + 1 if keep else 0
        # Keys written to the table, so it can be cleared without touching all 16 MiB.
        self._written: list[np.ndarray] = []
        # A cell can crowd an exact match out of its shortlist: palette colours map to themselves.
        self._remember(self.keys, np.arange(1, len(palette) + 1, dtype=np.uint8))

    def indices(self, pixels: np.ndarray) -> np.ndarray:
        """The (N,) uint8 palette index nearest to each of the (N, 3) uint8 pixels."""
        return self.indices_of_keys(colour_keys(pixels))

    def indices_of_keys(self, keys: np.ndarray) -> np.ndarray:
        """The (N,) uint8 palette index nearest to the colour of each key."""
        found, deferred, fresh_cells, written = kernels.lookup(
            self._table, keys, self._cell_known, self._cell_candidates, self._shortlist, self.keys, _LOOKUP_BITS
        )
        self._note_written(written)
        if deferred.size:
            # Colours in cells met for the first time wait for those cells' shortlists.
            self._learn_cells(fresh_cells)
            self._note_written(
                kernels.resolve_missing(
                    self._table, keys, found, deferred, self._cell_candidates, self._shortlist, self.keys, _LOOKUP_BITS
                )
            )
        found -= 1
        return found

    def _learn_cells(self, cells: np.ndarray) -> None:
        """Find the shortlists of ``cells`` (distinct, not known yet)."""
        if cells.size:
            shortlist = self._shortlist
            _, nearest = self._tree.query(_cell_centres(cells, _LOOKUP_BITS), k=shortlist)
            self._cell_candidates[:shortlist, cells] = nearest.reshape(cells.size, shortlist).T
            self._cell_known[cells] = True

    def shortlists(self, keys: np.ndarray) -> np.ndarray:
        """(k, N): for each colour key, the palette entries nearest the centre of its cell."""
        return self._shortlists_of_cells(_cells(keys, _LOOKUP_BITS))

    def _shortlists_of_cells(self, cells: np.ndarray) -> np.ndarray:
        fresh = cells[~self._cell_known.take(cells)]
        self._learn_cells(_distinct(fresh, _LOOKUP_CELLS))
        return self._cell_candidates[: self._shortlist].take(cells, axis=1)

    def _remember(self, keys: np.ndarray, entries: np.ndarray) -> None:
        self._table[keys] = entries
        self._note_written(keys)

    def _note_written(self, keys: np.ndarray) -> None:
        if keys.size:
            self._written.append(keys)
            if len(self._written) > _WRITTEN_PIECES:
                # A palette kept for thousands of frames adds a few keys a frame: hold them as one array.
                self._written = [np.concatenate(self._written)]

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


def _zeroed_on_demand(size: int) -> np.ndarray:
    """A zeroed uint8 array whose pages the system maps only when they are first touched.

    An anonymous mapping: a colour table of which a clip touches a few pages
    costs those pages, not a clearing of all 16 MiB (about 4,000 page faults,
    16 ms here, when the allocator hands out fresh memory).
    """
    return np.frombuffer(mmap.mmap(-1, size), np.uint8)


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
