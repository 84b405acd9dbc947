"""Deciding, frame by frame, what a streaming GIF writes.

The planner keeps what a decoder shows after the frames written so far (the
canvas), the previous input frame, the palette in use and a few numbers, so
memory is flat however long the stream. For each new frame it

- keeps every pixel the canvas already shows well enough: such pixels are
  written as the transparent index over the previous frame (disposal 1), so
  a static background is neither re-sent nor re-dithered, and the frame is
  cropped to the rectangle that holds the rest. A pixel is rewritten only
  when that brings it closer to the input by more than a tolerance, judged
  against the canvas (the pixels actually encoded), so error cannot build up
  from frame to frame. The tolerance grows with the noise measured in the
  stream: re-sending sensor noise costs bytes and shows as flicker;
- lets a pixel settle: when its input has just stopped changing (it equals
  the previous frame's), the tolerance no longer protects an error the
  palette can clearly undo, so the pixel is rewritten if the palette shows
  it at least three times closer (RMS) than the canvas does. The tolerance
  is there to keep transient change (noise, motion) off the wire; without
  this, what a moving object leaves behind within the tolerance (a faint
  trail on a still background) would stay on screen for good. It costs one
  write when the input comes to rest, and nothing while it keeps changing;
- maps the pixels it writes onto the current palette while that palette
  still fits them, and builds a new one when one k-means update alone would
  cut their quantisation error by more than a set fraction: the content has
  moved away from the palette. When only a few pixels change (a small
  object over a still scene), a new palette waits until what it would save,
  summed over the frames since, is worth its colour table. The new palette
  is the current one refined by k-means (or, after a cut, one built
  afresh), fitted to every pixel the canvas shows worse than the tolerance,
  so those the old palette served badly improve as well. On still content
  nothing is rewritten and the palette is kept.

Pixels are handled as colour keys (see :mod:`.palette`): one int32 a pixel,
so the canvas, the input and every subset of them move as 1-D arrays.

Streams with see-through pixels are written as whole frames that clear
themselves (disposal 2), since what shows beneath a GIF frame cannot be
un-drawn. A stream that declares no alpha but later brings see-through
pixels switches to that from its first such frame; that frame itself still
shows the previous one where it is see-through (GIF cannot take back a
disposal already written).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import kernels
from .palette import (
    NearestColour,
    bayer_matrix,
    colour_keys,
    exact_palette_of_keys,
    image_keys,
    key_channels,
    key_error,
    lloyd_gain_of_keys,
    mean_spacing,
    palette_of_keys,
    refine_palette_of_keys,
)

# Pixels with less alpha than this are written as the transparent index.
ALPHA_THRESHOLD = 128

DITHERS = ("none", "ordered", "floyd-steinberg")
PALETTES = ("adaptive", "global")


@dataclass(frozen=True)
class PlannerSettings:
    """How the planner trades size for fidelity.

    A pixel is rewritten only when that brings it closer to the input by more
    than ``3 * (tolerance + noise_tolerance * noise)**2`` (squared RGB
    distance), where ``noise`` is the median frame-to-frame change of still
    pixels measured in the stream (levels), or, the frame its input comes to
    rest, when the palette shows it ``settle_ratio`` times closer (squared
    distance) than the canvas does. With ``palette="adaptive"`` a new
    palette is built when one k-means update would lower the (weighted)
    quantisation error of the pixels to write by more than ``refit_gain``.
    """

    colors: int = 256
    tolerance: float = 0.0
    noise_tolerance: float = 0.0
    dither: str = "none"
    palette: str = "adaptive"
    refit_gain: float = 0.01
    refit_rounds: int = 3
    settle_ratio: float = 9.0


@dataclass(frozen=True)
class PlannedFrame:
    """One frame as it is to be written.

    ``indices`` (h, w) uint8 is placed at (``left``, ``top``) and indexes
    ``palette`` (the colour table, its transparent entry included), which is
    written as the frame's local colour table when ``local_table`` is set and
    is otherwise the global table from the first frame. ``new_palette`` tells
    that a palette was built for this frame.
    """

    indices: np.ndarray
    left: int
    top: int
    palette: np.ndarray
    local_table: bool
    transparent: int | None
    disposal: int
    new_palette: bool


@dataclass(frozen=True)
class _Palette:
    """A palette in use: its colours and their lookup."""

    colours: np.ndarray  # (n, 3) uint8, n <= 255; the transparent entry n follows in the colour table
    lookup: NearestColour
    dither_amplitude: float
    is_global: bool

    @property
    def table(self) -> np.ndarray:
        return np.vstack([self.colours, np.zeros((1, 3), np.uint8)])

    @property
    def transparent(self) -> int:
        return len(self.colours)


@dataclass(frozen=True)
class _Mapped:
    """Pixels mapped onto a palette: their indices, the colours (keys) those show and the squared error."""

    indices: np.ndarray
    colours: np.ndarray
    error: np.ndarray

    def subset(self, at: np.ndarray) -> _Mapped:
        """The pixels at the positions ``at`` (an index array) of this set."""
        return _Mapped(self.indices.take(at), self.colours.take(at), self.error.take(at))

    def head(self, count: int) -> _Mapped:
        """The first ``count`` pixels of this set."""
        return _Mapped(self.indices[:count], self.colours[:count], self.error[:count])


@dataclass(frozen=True)
class _FrameTable:
    """The colour table a frame is written with, and how palette indices are renumbered into it."""

    colours: np.ndarray  # (n + 1, 3) uint8, the transparent entry last
    local: bool
    renumber: np.ndarray | None  # palette index -> table index, when the table keeps only the entries used

    @property
    def transparent(self) -> int:
        return len(self.colours) - 1

    def indices(self, palette_indices: np.ndarray) -> np.ndarray:
        return palette_indices if self.renumber is None else self.renumber.take(palette_indices)


def _median_of_counts(counts: np.ndarray) -> float:
    """The median (as numpy's median has it) of small non-negative integers given by their counts: no sort."""
    cumulative = np.cumsum(counts)
    size = int(cumulative[-1])
    lower = int(np.searchsorted(cumulative, (size - 1) // 2, side="right"))
    upper = int(np.searchsorted(cumulative, size // 2, side="right"))
    return (lower + upper) / 2


class FramePlanner:
    """Plans the frames of one GIF stream of ``width`` x ``height`` pixels."""

    def __init__(self, width: int, height: int, settings: PlannerSettings, with_alpha: bool = False) -> None:
        self.width, self.height = width, height
        self.settings = settings
        self._with_alpha = with_alpha
        self._canvas: np.ndarray | None = None  # colour keys of what a decoder shows now (opaque streams)
        self._previous: np.ndarray | None = None  # colour keys of the previous input frame
        self._was_still: np.ndarray | None = None  # pixels whose input did not change at the previous frame
        self._palette: _Palette | None = None
        self._global_table: np.ndarray | None = None
        count = width * height
        self._noise_probe = np.unique(np.linspace(0, count - 1, min(count, _NOISE_PROBES)).astype(np.int64))
        self._noise: float | None = None
        # What a new palette would have saved on few pixels written with this one, summed over frames,
        # and the error of those written since that was last judged (see _palette_fit).
        self._saving = 0.0
        self._unjudged_error = 0.0
        # Ordered dithering thresholds by screen position, so a pixel's threshold never depends on the crop.
        self._thresholds = self._screen_thresholds() if settings.dither == "ordered" else None

    @property
    def global_table(self) -> np.ndarray:
        """The first frame's colour table, written as the GIF's global colour table."""
        if self._global_table is None:
            raise RuntimeError("the global colour table is known once the first frame is planned")
        return self._global_table

    @property
    def with_alpha(self) -> bool:
        """Whether frames are written whole and cleared after showing (a stream with see-through pixels)."""
        return self._with_alpha

    @property
    def noise(self) -> float:
        """The frame-to-frame change of still pixels measured so far (levels, a running median; 0 before any)."""
        return self._noise or 0.0

    def tolerance(self) -> float:
        """The squared RGB distance by which a rewrite must improve a pixel, for the noise seen so far."""
        settings = self.settings
        per_channel = settings.tolerance + settings.noise_tolerance * self.noise
        return 3 * per_channel * per_channel

    def plan(self, rgb: np.ndarray, alpha: np.ndarray | None) -> PlannedFrame:
        """The frame to write for ``rgb`` (H, W, 3) uint8 and its optional alpha (H, W) uint8."""
        keys = image_keys(rgb)
        previous, self._previous = self._previous, keys
        if previous is not None:
            self._measure_noise(keys, previous)
        if alpha is not None and not self._with_alpha and bool((alpha < ALPHA_THRESHOLD).any()):
            # From the first see-through frame on, frames clear themselves (disposal 2).
            self._with_alpha = True
        if self._with_alpha:
            return self._plan_with_alpha(keys, alpha)
        if self._canvas is None or previous is None:
            return self._plan_first_opaque(keys)
        return self._plan_changes(keys, previous, self._canvas)

    def _measure_noise(self, keys: np.ndarray, previous: np.ndarray) -> None:
        """Track how much still pixels change from frame to frame, on a fixed sample of positions.

        Still pixels are those that moved by at most a few levels; the median
        change among them is the stream's noise. When too few are still (a
        cut, a pan) the frame says nothing about noise and is skipped. A
        running average smooths the estimate over frames.
        """
        counts, still_count = kernels.still_change_counts(keys, previous, self._noise_probe, _STILL_LEVELS)
        if still_count < _STILL_SHARE * len(self._noise_probe):
            return
        measured = _median_of_counts(counts)
        self._noise = measured if self._noise is None else self._noise + _NOISE_SMOOTHING * (measured - self._noise)

    # ------------------------------------------------------------------ opaque streams

    def _plan_first_opaque(self, keys: np.ndarray) -> PlannedFrame:
        self._start_palette(keys)
        mapped = self._diffuse_if_asked(keys, None, self._lookup(keys, None))
        self._canvas = mapped.colours
        table = self._table_for(mapped.indices)
        indices = table.indices(mapped.indices).reshape(self.height, self.width)
        # No transparent index on the first frame: decoders take it as "this GIF has see-through pixels".
        return self._planned(table, indices, 0, 0, False, 1, True)

    def _plan_changes(self, keys: np.ndarray, previous: np.ndarray, canvas: np.ndarray) -> PlannedFrame:
        tolerance = self.tolerance()
        if self._was_still is None:
            self._was_still = np.zeros(len(keys), bool)
        # Only pixels the canvas shows worse than the tolerance can gain enough from a rewrite,
        # or those shown within it whose input has just come to rest (see the module's docstring).
        positions, pixels, kept, count = kernels.changed_pixels(keys, previous, canvas, self._was_still, tolerance)
        if positions.size == 0:
            return self._nothing_changed(False)
        if count:
            # The worse a pixel is shown now, the more a new palette should care about it.
            weights = np.sqrt(kept[:count], dtype=np.float64)
            mapped, new_palette = self._map(pixels, positions, weights, (kept[:count], tolerance), judged=count)
        else:
            mapped, new_palette = self._lookup(pixels, positions), False
        better = kernels.improved(kept, mapped.error, count, tolerance, self.settings.settle_ratio)
        if better.size == 0:
            return self._nothing_changed(new_palette)
        written = positions.take(better)
        mapped = self._diffuse_if_asked(keys, written, mapped.subset(better))
        canvas[written] = mapped.colours
        return self._cropped(written, mapped.indices, new_palette)

    def _cropped(self, written: np.ndarray, indices: np.ndarray, new_palette: bool) -> PlannedFrame:
        """The written pixels in their bounding rectangle, every other pixel there transparent."""
        width = self.width
        top, bottom = int(written.min()) // width, int(written.max()) // width + 1
        columns = written % width
        left, right = int(columns.min()), int(columns.max()) + 1
        table = self._table_for(indices)
        screen = np.full(self.height * width, table.transparent, np.uint8)
        screen[written] = table.indices(indices)
        rectangle = screen.reshape(self.height, width)[top:bottom, left:right]
        return self._planned(table, rectangle, left, top, True, 1, new_palette)

    def _nothing_changed(self, new_palette: bool) -> PlannedFrame:
        """A 1x1 transparent frame on the global table: it only carries the delay."""
        table = self.global_table
        transparent = len(table) - 1
        indices = np.full((1, 1), transparent, np.uint8)
        return PlannedFrame(indices, 0, 0, table, False, transparent, 1, new_palette)

    # ------------------------------------------------------------------ streams with alpha

    def _plan_with_alpha(self, keys: np.ndarray, alpha: np.ndarray | None) -> PlannedFrame:
        """A whole frame: see-through pixels transparent, the rest mapped; cleared after it is shown."""
        self._canvas = None
        opaque = np.ones(len(keys), bool) if alpha is None else alpha.reshape(-1) >= ALPHA_THRESHOLD
        visible = np.flatnonzero(opaque)
        new_palette = False
        if visible.size:
            mapped, new_palette = self._map(keys.take(visible), visible, None)
            mapped = self._diffuse_if_asked(keys, visible, mapped)
        elif self._palette is None:
            self._start_palette(colour_keys(np.zeros((1, 3), np.uint8)))
            new_palette = True
        indices = np.full(len(keys), self._current().transparent, np.uint8)
        if visible.size:
            indices[visible] = mapped.indices
        table = self._table_for(indices)
        return self._planned(table, table.indices(indices).reshape(self.height, self.width), 0, 0, True, 2, new_palette)

    # ------------------------------------------------------------------ palettes

    def _current(self) -> _Palette:
        assert self._palette is not None, "no palette before the first frame"
        return self._palette

    def _map(
        self,
        keys: np.ndarray,
        positions: np.ndarray,
        weights: np.ndarray | None,
        shown: tuple[np.ndarray, float] | None = None,
        judged: int | None = None,
    ) -> tuple[_Mapped, bool]:
        """Pixels on the current palette, after building a new one if there is none or it no longer fits.

        Only the first ``judged`` pixels (all by default) are fitted; ``weights``
        and ``shown`` (their squared error as the canvas shows them, and the
        tolerance, when only pixels a rewrite would improve count) cover those.
        """
        if self._palette is None:
            self._start_palette(keys)
            return self._lookup(keys, positions), True
        if self.settings.palette == "global":
            return self._lookup(keys, positions), False
        judged = len(keys) if judged is None else judged
        # The need for a new palette is judged on a sample; when the sample is every pixel
        # and the palette is kept, its mapping is the answer.
        stride = max(1, judged // _DECISION_SAMPLE)
        mapped = None
        if stride == 1:
            mapped = self._lookup(keys, positions)
            sample_keys, sample = keys[:judged], mapped.head(judged)
        else:
            sample_keys = keys[:judged:stride]
            sample = self._lookup(sample_keys, positions[:judged:stride])
        fit = self._palette_fit(sample_keys, sample, judged, weights, shown)
        if fit is None:
            return (self._lookup(keys, positions) if mapped is None else mapped), False
        # Built from every candidate, not only the pixels that prompted it: pixels the canvas
        # shows badly then improve too (measured: 0.15 to 1.2 dB on the real clips).
        # A palette that still roughly fits is refined; one far off (a cut) is replaced.
        start = self._palette if fit < _REBUILD_ERROR else None
        self._palette = self._new_palette(keys[:judged], weights, start=start, recycle=self._palette)
        self._saving = self._unjudged_error = 0.0
        return self._lookup(keys, positions), True

    def _palette_fit(
        self,
        keys: np.ndarray,
        mapped: _Mapped,
        count: int,
        weights: np.ndarray | None,
        shown: tuple[np.ndarray, float] | None,
    ) -> float | None:
        """The pixels' weighted quantisation error if one k-means update would cut it by more than ``refit_gain``.

        None when the current palette should be kept. ``keys`` and ``mapped``
        (on the current palette) are an even sample of the ``count`` pixels to
        write; ``weights`` and ``shown`` cover all of them.

        The fit is judged on the pixels that will be written with the current
        palette, and those it shows badly: where the content did not change,
        the canvas shows what this palette would, and a palette kept on still
        content is the point. A new palette costs a colour table in every
        frame that uses it, so for a few pixels shown well enough it waits
        until what it would save, summed over frames, pays for the table.
        """
        if count < _MIN_REFIT_PIXELS:
            # Too few pixels to be worth a colour table, unless the palette cannot show one of them
            # within the tolerance (a small object in a new colour): kept, it would never be right.
            return float(mapped.error.mean()) if mapped.error.max() > self.tolerance() else None
        stride = max(1, count // _DECISION_SAMPLE)
        weights = np.ones(len(keys)) if weights is None else weights[::stride]
        if shown is not None:
            # Pixels the palette shows badly count even if a rewrite would not help: new colours.
            kept, tolerance = shown
            judged = np.flatnonzero((kept[::stride] > mapped.error + tolerance) | (mapped.error > _REFIT_BAD_ERROR))
            keys, weights, mapped = keys.take(judged), weights.take(judged), mapped.subset(judged)
            count = len(keys) * stride
            if count < _MIN_REFIT_PIXELS:
                return None
        error = float(np.dot(weights, mapped.error)) / max(float(weights.sum()), 1e-12)
        palette = self._current().colours
        if count < _REFIT_SHARE * self.width * self.height and error < _REFIT_BAD_ERROR:
            # A few pixels shown well enough: a colour table is not worth it for one frame, but what a
            # new palette would save adds up over the frames that keep this one. It is worth its table
            # once that sum exceeds what the table's bytes would buy as single-pixel rewrites at the
            # tolerance (one byte a rewrite). The error the pixels are written with bounds the saving
            # and costs nothing to sum; when the bound could pass the table's worth, this frame's
            # k-means gain tells what share of it a new palette would actually have saved.
            worth = 3 * len(palette) * self.tolerance()
            self._unjudged_error += error * count
            if self._saving + self._unjudged_error <= worth or error == 0:
                return None
            gain = lloyd_gain_of_keys(keys, mapped.colours, mapped.indices, len(palette), weights)
            self._saving += self._unjudged_error * gain / error
            self._unjudged_error = 0.0
            return error if self._saving > worth else None
        gain = lloyd_gain_of_keys(keys, mapped.colours, mapped.indices, len(palette), weights)
        return error if gain > self.settings.refit_gain * error + _REFIT_MARGIN else None

    def _start_palette(self, keys: np.ndarray) -> None:
        self._palette = self._new_palette(keys, None, start=None, recycle=None)
        self._global_table = self._palette.table

    def _new_palette(
        self, keys: np.ndarray, weights: np.ndarray | None, start: _Palette | None, recycle: _Palette | None
    ) -> _Palette:
        """A palette for the pixels of ``keys``: ``start`` refined by k-means when it is full, else one built afresh.

        ``recycle``: the palette being replaced, whose lookup tables are reused.
        """
        settings = self.settings
        size = settings.colors - 1
        refined = start is not None and len(start.colours) == size and exact_palette_of_keys(keys, size) is None
        if start is not None and refined:
            colours = refine_palette_of_keys(keys, start.lookup, weights, rounds=settings.refit_rounds)
        else:
            colours = palette_of_keys(keys, size, weights, rounds=_FRESH_ROUNDS)
        lookup = NearestColour(colours, recycle=None if recycle is None else recycle.lookup, refined=refined)
        amplitude = mean_spacing(colours) * _ORDERED_STRENGTH if settings.dither == "ordered" else 0.0
        return _Palette(colours, lookup, amplitude, is_global=recycle is None)

    def _lookup(self, keys: np.ndarray, positions: np.ndarray | None) -> _Mapped:
        """Pixels (at ``positions`` on the screen; None: all) on the current palette, ordered-dithered if asked."""
        palette = self._current()
        target = keys
        if self._thresholds is not None and palette.dither_amplitude > 0:
            thresholds = self._thresholds if positions is None else self._thresholds.take(positions)
            offsets = thresholds * palette.dither_amplitude
            target = colour_keys(np.clip(key_channels(keys)[:, :3] + offsets[:, None], 0, 255).astype(np.uint8))
        indices = palette.lookup.indices_of_keys(target)
        colours = palette.lookup.keys.take(indices)
        return _Mapped(indices, colours, key_error(keys, colours))

    def _diffuse_if_asked(self, keys: np.ndarray, positions: np.ndarray | None, mapped: _Mapped) -> _Mapped:
        """With Floyd-Steinberg, the pixels being written (None: all) re-chosen by error diffusion over their rectangle.

        Only the pixels being written are dithered: the rest keep what the
        canvas shows, so still areas do not crawl from frame to frame.
        """
        if self.settings.dither != "floyd-steinberg":
            return mapped
        palette = self._current()
        image = key_channels(keys).reshape(self.height, self.width, 4)[..., :3]
        if positions is None:
            rows, columns = np.divmod(np.arange(len(keys)), self.width)
        else:
            rows, columns = np.divmod(positions, self.width)
        top, left = int(rows.min()), int(columns.min())
        bottom, right = int(rows.max()) + 1, int(columns.max()) + 1
        table = Image.new("P", (1, 1))
        table.putpalette(palette.colours.tobytes())
        area = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]))
        dithered = area.quantize(palette=table, dither=Image.Dither.FLOYDSTEINBERG)
        indices = np.asarray(dithered)[rows - top, columns - left]
        colours = palette.lookup.keys.take(indices)
        written = keys if positions is None else keys.take(positions)
        return _Mapped(indices, colours, key_error(written, colours))

    def _table_for(self, indices: np.ndarray) -> _FrameTable:
        """The colour table for a frame that writes these palette indices (the transparent one may be among them)."""
        palette = self._current()
        if palette.is_global:
            return _FrameTable(palette.table, False, None)
        # A local table costs its size in every frame: keep only the entries this frame uses.
        used = np.zeros(palette.transparent + 1, bool)
        used[indices] = True
        entries = np.flatnonzero(used[: palette.transparent])
        renumber = np.full(palette.transparent + 1, entries.size, np.uint8)  # the transparent entry comes last
        renumber[entries] = np.arange(entries.size)
        return _FrameTable(np.vstack([palette.colours[entries], np.zeros((1, 3), np.uint8)]), True, renumber)

    def _planned(
        self,
        table: _FrameTable,
        indices: np.ndarray,
        left: int,
        top: int,
        see_through: bool,
        disposal: int,
        new_palette: bool,
    ) -> PlannedFrame:
        transparent = table.transparent if see_through else None
        return PlannedFrame(indices, left, top, table.colours, table.local, transparent, disposal, new_palette)

    def _screen_thresholds(self) -> np.ndarray:
        matrix = bayer_matrix()
        size = matrix.shape[0]
        rows = np.arange(self.height) % size
        columns = np.arange(self.width) % size
        return np.asarray(matrix[rows[:, None], columns[None, :]].reshape(-1), dtype=np.float32)


# Pixels sampled to measure noise, and the weight of each frame in its running average.
_NOISE_PROBES = 1024
_NOISE_SMOOTHING = 0.2
# A probe pixel that changed by at most this many levels a channel counts as still,
# and at least this share of the probes must be still for a frame to measure noise.
_STILL_LEVELS = 8
_STILL_SHARE = 0.25
# A new palette is considered for at least this many pixels to write; below
# this share of the frame, unless they are shown worse than _REFIT_BAD_ERROR
# (squared RGB distance, 16 levels RMS a channel), only once the error it
# would remove, summed over frames, pays for its colour table (up to 768 bytes).
_MIN_REFIT_PIXELS = 16
_REFIT_SHARE = 0.02
_REFIT_BAD_ERROR = 3 * 16**2
# Pixels to write shown worse than this (32 levels RMS a channel) by the current palette mean
# a cut: a palette is built afresh instead of refining the current one.
_REBUILD_ERROR = 3 * 32**2
# Squared-error slack so palettes that fit (almost) exactly are not rebuilt for rounding noise.
_REFIT_MARGIN = 2.0
# Pixels (about) on which the need for a new palette is judged.
_DECISION_SAMPLE = 4096
# k-means rounds for a palette built from scratch (a refined one gets ``refit_rounds``).
_FRESH_ROUNDS = 4
# Ordered dithering spreads a pixel over this fraction of the palette's typical colour spacing.
_ORDERED_STRENGTH = 1.0
