"""Deciding, frame by frame, what a streaming GIF writes.

The planner keeps what a decoder shows after the frames written so far (the
canvas), the palette in use and a few numbers, so memory is flat however long
the stream. For each new frame it

- keeps every pixel the canvas already shows well enough: such pixels are
  written as the transparent index over the previous frame (disposal 1), so
  a static background is neither re-sent nor re-dithered, and the frame is
  cropped to the rectangle that holds the rest. A pixel is rewritten only
  when that brings it closer to the input by more than a tolerance, judged
  against the canvas (the pixels actually encoded), so error cannot build up
  from frame to frame. The tolerance grows with the noise measured in the
  stream: re-sending sensor noise costs bytes and shows as flicker;
- maps the pixels it writes onto the current palette while that palette
  still fits them, and builds a new one when one k-means update alone would
  cut their quantisation error by more than a set fraction: the content has
  moved away from the palette. The new palette is the current one refined
  by k-means (or, after a cut, one built afresh), fitted to every pixel the
  canvas shows worse than the tolerance, so those the old palette served
  badly improve as well. On still content nothing is rewritten and the
  palette is kept.

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

from .palette import (
    NearestColour,
    bayer_matrix,
    build_palette,
    exact_palette,
    lloyd_gain,
    mean_spacing,
    refine_palette,
    squared_error,
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
    pixels measured in the stream (levels). With ``palette="adaptive"`` a new
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
    """Pixels mapped onto a palette: their indices, the colours those show and the squared error."""

    indices: np.ndarray
    colours: np.ndarray
    error: np.ndarray

    def subset(self, keep: np.ndarray) -> _Mapped:
        return _Mapped(self.indices[keep], self.colours[keep], self.error[keep])


class FramePlanner:
    """Plans the frames of one GIF stream of ``width`` x ``height`` pixels."""

    def __init__(self, width: int, height: int, settings: PlannerSettings, with_alpha: bool = False) -> None:
        self.width, self.height = width, height
        self.settings = settings
        self._with_alpha = with_alpha
        self._canvas: np.ndarray | None = None  # (N, 3): what a decoder shows now (opaque streams)
        self._palette: _Palette | None = None
        self._global_table: np.ndarray | None = None
        count = width * height
        self._noise_probe = np.unique(np.linspace(0, count - 1, min(count, _NOISE_PROBES)).astype(np.int64))
        self._probed: np.ndarray | None = None  # the probe pixels of the previous frame
        self._noise: float | None = None
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
        pixels = rgb.reshape(-1, 3)
        self._measure_noise(pixels)
        if alpha is not None and not self._with_alpha and bool((alpha < ALPHA_THRESHOLD).any()):
            # From the first see-through frame on, frames clear themselves (disposal 2).
            self._with_alpha = True
        if self._with_alpha:
            return self._plan_with_alpha(pixels, alpha)
        if self._canvas is None:
            return self._plan_first_opaque(pixels)
        return self._plan_changes(pixels, self._canvas)

    def _measure_noise(self, pixels: np.ndarray) -> None:
        """Track how much still pixels change from frame to frame, on a fixed sample of positions.

        Still pixels are those that moved by at most a few levels; the median
        change among them is the stream's noise. When too few are still (a
        cut, a pan) the frame says nothing about noise and is skipped. A
        running average smooths the estimate over frames.
        """
        probed = pixels[self._noise_probe]
        previous, self._probed = self._probed, probed
        if previous is None:
            return
        change = np.abs(probed.astype(np.int16) - previous)
        still = change.max(axis=1) <= _STILL_LEVELS
        if still.sum() < _STILL_SHARE * len(still):
            return
        measured = float(np.median(change[still]))
        self._noise = measured if self._noise is None else self._noise + _NOISE_SMOOTHING * (measured - self._noise)

    # ------------------------------------------------------------------ opaque streams

    def _plan_first_opaque(self, pixels: np.ndarray) -> PlannedFrame:
        everything = np.arange(len(pixels))
        mapped, new_palette = self._map(pixels, everything, None)
        mapped = self._diffuse_if_asked(pixels, everything, mapped)
        self._canvas = mapped.colours.copy()
        # No transparent index on the first frame: decoders take it as "this GIF has see-through pixels".
        return self._planned(mapped.indices.reshape(self.height, self.width), 0, 0, None, 1, new_palette)

    def _plan_changes(self, pixels: np.ndarray, canvas: np.ndarray) -> PlannedFrame:
        tolerance = self.tolerance()
        kept_error = squared_error(pixels, canvas)
        # Only pixels the canvas shows worse than the tolerance can gain enough from a rewrite.
        candidates = np.flatnonzero(kept_error > tolerance)
        if candidates.size == 0:
            return self._nothing_changed(False)
        # The worse a pixel is shown now, the more a new palette should care about it.
        weights = np.sqrt(kept_error[candidates].astype(np.float64))
        kept = kept_error[candidates]
        mapped, new_palette = self._map(pixels[candidates], candidates, weights, (kept, tolerance))
        better = kept > mapped.error + tolerance
        written = candidates[better]
        if written.size == 0:
            return self._nothing_changed(new_palette)
        mapped = self._diffuse_if_asked(pixels, written, mapped.subset(better))
        canvas[written] = mapped.colours
        return self._cropped(written, mapped.indices, new_palette)

    def _cropped(self, written: np.ndarray, indices: np.ndarray, new_palette: bool) -> PlannedFrame:
        """The written pixels in their bounding rectangle, every other pixel there transparent."""
        rows, columns = np.divmod(written, self.width)
        top, left = int(rows.min()), int(columns.min())
        height, width = int(rows.max()) + 1 - top, int(columns.max()) + 1 - left
        transparent = self._current().transparent
        rectangle = np.full((height, width), transparent, np.uint8)
        rectangle[rows - top, columns - left] = indices
        return self._planned(rectangle, left, top, transparent, 1, new_palette)

    def _nothing_changed(self, new_palette: bool) -> PlannedFrame:
        """A 1x1 transparent frame on the global table: it only carries the delay."""
        table = self.global_table
        transparent = len(table) - 1
        indices = np.full((1, 1), transparent, np.uint8)
        return PlannedFrame(indices, 0, 0, table, False, transparent, 1, new_palette)

    # ------------------------------------------------------------------ streams with alpha

    def _plan_with_alpha(self, pixels: np.ndarray, alpha: np.ndarray | None) -> PlannedFrame:
        """A whole frame: see-through pixels transparent, the rest mapped; cleared after it is shown."""
        self._canvas = None
        opaque = np.ones(len(pixels), bool) if alpha is None else alpha.reshape(-1) >= ALPHA_THRESHOLD
        visible = np.flatnonzero(opaque)
        new_palette = False
        if visible.size:
            mapped, new_palette = self._map(pixels[visible], visible, None)
            mapped = self._diffuse_if_asked(pixels, visible, mapped)
        elif self._palette is None:
            self._start_palette(np.zeros((1, 3), np.uint8))
            new_palette = True
        transparent = self._current().transparent
        indices = np.full(len(pixels), transparent, np.uint8)
        if visible.size:
            indices[visible] = mapped.indices
        return self._planned(indices.reshape(self.height, self.width), 0, 0, transparent, 2, new_palette)

    # ------------------------------------------------------------------ palettes

    def _current(self) -> _Palette:
        assert self._palette is not None, "no palette before the first frame"
        return self._palette

    def _map(
        self,
        pixels: np.ndarray,
        positions: np.ndarray,
        weights: np.ndarray | None,
        shown: tuple[np.ndarray, float] | None = None,
    ) -> tuple[_Mapped, bool]:
        """Pixels on the current palette, after building a new one if there is none or it no longer fits.

        ``shown``: the pixels' squared error as the canvas shows them and the
        tolerance, when only pixels a rewrite would improve count for the fit.
        """
        if self._palette is None:
            self._start_palette(pixels)
            return self._lookup(pixels, positions), True
        fit = self._palette_fit(pixels, positions, weights, shown)
        if fit is not None:
            # Built from every candidate, not only the pixels that prompted it: pixels the canvas
            # shows badly then improve too (measured: 0.15 to 1.2 dB on the real clips).
            # A palette that still roughly fits is refined; one far off (a cut) is replaced.
            start = self._palette if fit < _REBUILD_ERROR else None
            self._palette = self._new_palette(pixels, weights, start=start, recycle=self._palette)
            return self._lookup(pixels, positions), True
        return self._lookup(pixels, positions), False

    def _palette_fit(
        self,
        pixels: np.ndarray,
        positions: np.ndarray,
        weights: np.ndarray | None,
        shown: tuple[np.ndarray, float] | None,
    ) -> float | None:
        """The pixels' weighted quantisation error if one k-means update would cut it by more than ``refit_gain``.

        None when the current palette should be kept.

        The fit is judged on the pixels that will be written with the current
        palette, and those it shows badly: where the content did not change,
        the canvas shows what this palette would, and a palette kept on still
        content is the point. A new
        palette costs a colour table in every frame that uses it, so it is
        considered only when the pixels to write are a real share of the
        frame, or are shown badly. Judged on a sample of the pixels, so a
        frame that keeps its palette is mapped once, not twice.
        """
        count = len(pixels)
        if self.settings.palette == "global":
            return None
        if count < _MIN_REFIT_PIXELS:
            # Too few pixels to be worth a colour table, unless the palette cannot show one of them
            # within the tolerance (a small object in a new colour): kept, it would never be right.
            error = self._lookup(pixels, positions).error
            return float(error.mean()) if error.max() > self.tolerance() else None
        stride = max(1, count // _DECISION_SAMPLE)
        sample = slice(None, None, stride)
        pixels, weights = pixels[sample], np.ones(count)[sample] if weights is None else weights[sample]
        mapped = self._lookup(pixels, positions[sample])
        if shown is not None:
            # Pixels the palette shows badly count even if a rewrite would not help: new colours.
            kept, tolerance = shown
            judged = (kept[sample] > mapped.error + tolerance) | (mapped.error > _REFIT_BAD_ERROR)
            pixels, weights, mapped = pixels[judged], weights[judged], mapped.subset(judged)
            count = len(pixels) * stride
            if count < _MIN_REFIT_PIXELS:
                return None
        error = float(np.dot(weights, mapped.error)) / max(float(weights.sum()), 1e-12)
        if count < _REFIT_SHARE * self.width * self.height and error < _REFIT_BAD_ERROR:
            return None
        gain = lloyd_gain(pixels, mapped.indices, self._current().colours, weights)
        return error if gain > self.settings.refit_gain * error + _REFIT_MARGIN else None

    def _start_palette(self, pixels: np.ndarray) -> None:
        self._palette = self._new_palette(pixels, None, start=None, recycle=None)
        self._global_table = self._palette.table

    def _new_palette(
        self, pixels: np.ndarray, weights: np.ndarray | None, start: _Palette | None, recycle: _Palette | None
    ) -> _Palette:
        """A palette for ``pixels``: ``start`` refined by k-means when it is full, else one built afresh.

        ``recycle``: the palette being replaced, whose lookup tables are reused.
        """
        settings = self.settings
        size = settings.colors - 1
        refined = start is not None and len(start.colours) == size and exact_palette(pixels, size) is None
        if start is not None and refined:
            colours = refine_palette(pixels, start.lookup, weights, rounds=settings.refit_rounds)
        else:
            colours = build_palette(pixels, size, weights, rounds=_FRESH_ROUNDS)
        lookup = NearestColour(colours, recycle=None if recycle is None else recycle.lookup, refined=refined)
        amplitude = mean_spacing(colours) * _ORDERED_STRENGTH if settings.dither == "ordered" else 0.0
        return _Palette(colours, lookup, amplitude, is_global=recycle is None)

    def _lookup(self, pixels: np.ndarray, positions: np.ndarray) -> _Mapped:
        """Pixels (at ``positions`` on the screen) on the current palette, ordered-dithered if asked."""
        palette = self._current()
        target = pixels
        if self._thresholds is not None and palette.dither_amplitude > 0:
            offsets = self._thresholds[positions] * palette.dither_amplitude
            target = np.clip(pixels + offsets[:, None], 0, 255).astype(np.uint8)
        indices = palette.lookup.indices(target)
        colours = palette.colours[indices]
        return _Mapped(indices, colours, squared_error(pixels, colours))

    def _diffuse_if_asked(self, pixels: np.ndarray, positions: np.ndarray, mapped: _Mapped) -> _Mapped:
        """With Floyd-Steinberg, the pixels being written re-chosen by error diffusion over their rectangle.

        Only the pixels being written are dithered: the rest keep what the
        canvas shows, so still areas do not crawl from frame to frame.
        """
        if self.settings.dither != "floyd-steinberg":
            return mapped
        palette = self._current()
        rows, columns = np.divmod(positions, self.width)
        top, left = int(rows.min()), int(columns.min())
        bottom, right = int(rows.max()) + 1, int(columns.max()) + 1
        area = pixels.reshape(self.height, self.width, 3)[top:bottom, left:right]
        table = Image.new("P", (1, 1))
        table.putpalette(palette.colours.tobytes())
        image = Image.fromarray(np.ascontiguousarray(area))
        dithered = image.quantize(palette=table, dither=Image.Dither.FLOYDSTEINBERG)
        indices = np.asarray(dithered)[rows - top, columns - left]
        colours = palette.colours[indices]
        return _Mapped(indices, colours, squared_error(pixels[positions], colours))

    def _planned(
        self, indices: np.ndarray, left: int, top: int, transparent: int | None, disposal: int, new_palette: bool
    ) -> PlannedFrame:
        palette = self._current()
        if palette.is_global:
            return PlannedFrame(indices, left, top, palette.table, False, transparent, disposal, new_palette)
        # A local table costs its size in every frame: keep only the entries this frame uses.
        counts = np.bincount(indices.reshape(-1), minlength=palette.transparent + 1)
        used = np.flatnonzero(counts[: palette.transparent])
        renumber = np.zeros(palette.transparent + 1, np.uint8)
        renumber[used] = np.arange(used.size)
        renumber[palette.transparent] = used.size
        table = np.vstack([palette.colours[used], np.zeros((1, 3), np.uint8)])
        compact_transparent = None if transparent is None else used.size
        return PlannedFrame(renumber[indices], left, top, table, True, compact_transparent, disposal, new_palette)

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
# A new palette is considered for at least this many pixels to write, and
# only for this share of the frame unless they are shown worse than
# _REFIT_BAD_ERROR (squared RGB distance, 16 levels RMS a channel): a colour
# table of up to 768 bytes is not worth it for a few pixels shown well enough.
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
