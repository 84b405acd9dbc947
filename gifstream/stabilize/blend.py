"""Flow-guided temporal blending of restored frames with the previous stabilised output.

Per-frame restoration flickers: detail, colour and alignment jump between
frames even where the input did not change. The previous *output*, carried
along the input's motion, is a prediction of the current output; blending
towards it where the input shows the prediction is trustworthy removes the
flicker and keeps genuine change::

    out_t = (1 − w) · restored_t + w · warp(out_{t−1})
    w     = strength · valid · exp(−err / sigma)

``warp`` backward-warps with the backward flow B(t→t−1) of the *input*
(``out_{t−1}(x + B(x))``), resized to the output's geometry. ``valid`` drops
pixels that were occluded in frame t−1 or whose flow leaves the frame, and
``err`` is how badly the same warp predicts the current *input* from the
previous one, so new content, real changes and failed flow (fast pans) come
through unblended. A scene cut — the warped previous input no longer
predicts the current one on average — switches blending off for the frame.

The recursion needs only the previous output, so memory and latency are
those of a single frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..engine.errors import ConfigError, InputError
from ..jit import CompiledLoops
from ..motion import warp as _warp
from ..motion.flow import check_flow, check_pair, check_rgb, resize_flow
from ..motion.warp import backward_warp, inside_frame, occlusion_mask

# Defaults chosen with bench/flicker.py (10 real clips with restoration-like
# flicker, DIS flow, a strength x sigma sweep). Strength 0.6 and sigma 8 cut
# E_warp by 57-85 % (mean 72 %) and raise PSNR against the clean frames by
# 1.0-3.1 dB. Sigma 16 or 32 reduce E_warp further (mean 78 %, 82 %) but blend
# more across real change: run on the same clips *without* flicker they lower
# the worst frame to 39.6 dB and 37.0 dB (43.8 dB at sigma 8), and on a 9 px
# per frame pan whose flow missed the motion (cut detection off) sigma 16
# loses up to 1.5 dB where sigma 8 loses at most 0.06 dB. Where the input
# changed by ``err`` grey levels, the blend moves a pixel by roughly
# strength * err * exp(-err / sigma), at most strength * sigma / e: 1.8 levels
# at these defaults.
DEFAULT_STRENGTH = 0.6
DEFAULT_SIGMA = 8.0
# Mean input warp error, grey levels: consecutive frames of the 10 clips score
# at most 6.9 (median 0.07-3.8), while cuts between different clips score
# 23.6 and more (13 between the pristine and the heavily compressed copy of the
# same clip, which is worth a reset too).
DEFAULT_CUT_THRESHOLD = 12.0
# The per-pixel input error is averaged over a small neighbourhood first: a
# single noisy or dithered pixel should not decide whether its region is stable.
ERROR_BLUR_SIGMA = 1.0


@dataclass(frozen=True, slots=True)
class StabilizeConfig:
    """Settings of the temporal blend.

    ``strength`` (0..1) is the largest share the previous output may take
    in a pixel; 0 turns stabilisation off. ``sigma`` (grey levels, 0..255)
    is how fast confidence falls with the input's warp error: at an error of
    ``sigma`` the blend weight is ``strength / e``. ``cut_threshold`` (grey
    levels) is the mean input warp error above which a frame is treated as a
    scene cut and passed through unblended.
    """

    strength: float = DEFAULT_STRENGTH
    sigma: float = DEFAULT_SIGMA
    cut_threshold: float = DEFAULT_CUT_THRESHOLD

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ConfigError(f"stabilize strength must be in [0, 1], got {self.strength}")
        if not self.sigma > 0:
            raise ConfigError(f"stabilize sigma must be > 0 grey levels, got {self.sigma}")
        if not self.cut_threshold > 0:
            raise ConfigError(f"stabilize cut_threshold must be > 0 grey levels, got {self.cut_threshold}")


@dataclass(frozen=True, slots=True)
class Stabilized:
    """One stabilised frame and how it was made.

    ``blend`` is the mean blend weight over the output's pixels (0 = the
    restored frame unchanged); ``cut`` whether the frame was taken for a
    scene cut; ``cut_score`` the mean input warp error that decided it.
    """

    pixels: np.ndarray
    blend: float
    cut: bool
    cut_score: float


def input_warp_error(input_prev: np.ndarray, input_cur: np.ndarray, flow_back: np.ndarray) -> np.ndarray:
    """(H, W) float32: |input_cur − input_prev warped to t| in grey levels, averaged over channels.

    ``flow_back`` is B(t→t−1) at the inputs' geometry, so that the warped
    previous input reads ``input_prev(x + B(x))``. The map is lightly blurred
    (Gaussian, sigma 1 px) so isolated noisy pixels do not count as change.
    """
    input_prev, input_cur = check_pair(input_prev, input_cur, ("input_prev", "input_cur"))
    check_flow("backward flow", flow_back, *input_cur.shape[:2])
    predicted = backward_warp(input_prev, flow_back)
    error = np.abs(input_cur.astype(np.float32) - predicted).mean(axis=2)
    return cv2.GaussianBlur(error, (0, 0), ERROR_BLUR_SIGMA)


def cut_score(error: np.ndarray, flow_back: np.ndarray) -> float:
    """Mean input warp error over the pixels whose backward flow stays inside the frame."""
    inside = inside_frame(flow_back)
    if not inside.any():
        return float(error.mean())
    return float(error[inside].mean())


def blend_weights(flow_fw: np.ndarray, flow_bw: np.ndarray, error: np.ndarray, config: StabilizeConfig) -> np.ndarray:
    """(H, W) float32 blend weight at the inputs' geometry: strength · valid · exp(−error / sigma).

    ``flow_fw`` is F(t−1→t) and ``flow_bw`` B(t→t−1). A pixel of frame t is
    valid when B keeps it inside frame t−1 and it passes the forward–backward
    and motion-boundary checks (:func:`~gifstream.motion.warp.occlusion_mask`
    with B as the forward flow, since the mask is wanted in frame t).
    """
    valid = inside_frame(flow_bw) & ~occlusion_mask(flow_bw, flow_fw)
    confidence = np.exp(-error / np.float32(config.sigma))
    return (np.float32(config.strength) * confidence * valid).astype(np.float32)


def predict_from_previous(previous_output: np.ndarray, flow_bw: np.ndarray) -> np.ndarray:
    """The previous output carried to frame t: float32 ``previous(x + B(x))`` at the output's geometry.

    ``flow_bw`` is B(t→t−1) at the inputs' geometry; it is resized (vectors
    scaled) to the output's size first, since restoration may upscale.
    """
    height, width = previous_output.shape[:2]
    return backward_warp(previous_output, resize_flow(flow_bw, width, height))


def weights_at(weights: np.ndarray, width: int, height: int) -> np.ndarray:
    """The blend weight map resampled to the output's size (bilinear), still in [0, 1]."""
    if weights.shape == (height, width):
        return weights
    return np.clip(cv2.resize(weights, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def temporal_blend(restored: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """uint8 ``(1 − w) · restored + w · predicted``, rounded; where w is 0 the restored pixel is returned as is."""
    w = weights[..., None]
    mixed = (1.0 - w) * restored.astype(np.float32) + w * predicted
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def check_output_pair(restored: np.ndarray, previous_output: np.ndarray, input_cur: np.ndarray) -> None:
    """Both outputs share one size, with the input's aspect ratio (flows are rescaled, never squashed)."""
    check_pair(previous_output, restored, ("previous output", "restored frame"))
    out_h, out_w = restored.shape[:2]
    in_h, in_w = input_cur.shape[:2]
    if abs(out_h * in_w / out_w - in_h) > 1 or abs(out_w * in_h / out_h - in_w) > 1:
        raise InputError(
            f"cannot stabilise a {out_w}x{out_h} output with the flow of a {in_w}x{in_h} input: "
            "their aspect ratios differ"
        )


def stabilize_frame(
    restored: np.ndarray,
    previous_output: np.ndarray | None,
    input_prev: np.ndarray | None,
    input_cur: np.ndarray,
    flows: tuple[np.ndarray, np.ndarray] | None,
    config: StabilizeConfig,
) -> Stabilized:
    """Blend ``restored`` (frame t) with the previous stabilised output carried along the input's motion.

    ``flows`` is (F(t−1→t), B(t→t−1)) measured on the inputs, as the flow
    stage attaches them. Without a previous frame, or with strength 0, the
    restored frame is returned unchanged. A frame whose mean input warp
    error exceeds ``config.cut_threshold`` is a scene cut: no blending, so
    nothing of the previous scene ghosts into the new one.
    """
    restored = check_rgb("restored frame", restored)
    input_cur = check_rgb("input frame", input_cur)
    if previous_output is None or input_prev is None or flows is None or config.strength == 0:
        return Stabilized(restored, blend=0.0, cut=False, cut_score=0.0)
    check_output_pair(restored, previous_output, input_cur)
    flow_fw, flow_bw = flows
    height, width = input_cur.shape[:2]
    check_flow("forward flow", flow_fw, height, width)
    check_flow("backward flow", flow_bw, height, width)
    error = input_warp_error(input_prev, input_cur, flow_bw)
    score = cut_score(error, flow_bw)
    if score > config.cut_threshold:
        return Stabilized(restored, blend=0.0, cut=True, cut_score=score)
    weights = weights_at(blend_weights(flow_fw, flow_bw, error, config), restored.shape[1], restored.shape[0])
    pixels = carried_blend(restored, previous_output, flow_bw, weights)
    return Stabilized(pixels, blend=float(weights.mean()), cut=False, cut_score=score)


def carried_blend(
    restored: np.ndarray, previous_output: np.ndarray, flow_bw: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """``temporal_blend(restored, predict_from_previous(previous_output, flow_bw), weights)`` in one pass.

    The same float32 arithmetic, pixel by pixel, without the float copy of
    the whole carried frame in between; a pixel whose flow is not a number
    keeps its restored value (there is nothing to carry).
    """
    height, width = restored.shape[:2]
    flow = np.ascontiguousarray(resize_flow(flow_bw, width, height), np.float32)
    out = np.empty_like(restored)
    _carried_blend_into(
        np.ascontiguousarray(restored),
        np.ascontiguousarray(previous_output),
        flow,
        np.ascontiguousarray(weights, np.float32),
        out,
    )
    return out


_loop = CompiledLoops(globals(), uses=(_warp._loop,))


@_loop
def _carried_blend_into(
    restored: np.ndarray, previous: np.ndarray, flow: np.ndarray, weights: np.ndarray, out: np.ndarray
) -> None:
    height, width, channels = restored.shape
    for row in range(height):
        for col in range(width):
            weight = weights[row, col]
            x = np.float32(col) + flow[row, col, 0]
            y = np.float32(row) + flow[row, col, 1]
            if weight == 0 or math.isnan(x) or math.isnan(y):
                for channel in range(channels):
                    out[row, col, channel] = restored[row, col, channel]
                continue
            corners = _warp.bilinear_corners(x, y, width, height)
            keep = np.float32(1.0) - weight
            for channel in range(channels):
                carried = _warp.bilinear_read(previous, channel, *corners)
                mixed = keep * np.float32(restored[row, col, channel]) + weight * carried
                out[row, col, channel] = np.uint8(min(max(np.rint(mixed), np.float32(0.0)), np.float32(255.0)))


def prepare() -> None:
    """Have the blend loop ready (numba compiles it on first use, then loads it from its cache)."""
    frame = np.zeros((2, 2, 3), np.uint8)
    carried_blend(frame, frame, np.zeros((2, 2, 2), np.float32), np.ones((2, 2), np.float32))
