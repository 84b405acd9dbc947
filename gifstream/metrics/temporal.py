"""Temporal-consistency metrics: warping error (Lai et al. 2018) and TecoGAN's tOF.

Measured on a restored output with the motion of its input, they tell
whether restoration added flicker that the input did not have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..engine.errors import InputError
from ..motion.flow import check_flow, check_pair, check_rgb, to_gray
from .quality import match_geometry
from .warp_kernel import masked_warp_sums

# TecoGAN's Farnebäck settings for tOF.
FARNEBACK_PARAMS = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}


def warp_errors(
    frames_t: list[np.ndarray], frames_t1: list[np.ndarray], flow_fw: np.ndarray, flow_bw: np.ndarray | None
) -> list[float]:
    """E_warp of each pair (``frames_t[i]``, ``frames_t1[i]``), all warped by one flow and measured on one mask.

    Checked uint8 RGB frames of the flow's size. NaN for each when no pixel is reliable.
    """
    sums, count = masked_warp_sums(np.stack(frames_t), np.stack(frames_t1), flow_fw, flow_bw)
    # The mean over reliable pixels and the three channels.
    return [float(total / (3 * count)) if count else math.nan for total in sums]


def check_frames_and_flows(
    frame_t: np.ndarray, frame_t1: np.ndarray, flow_fw: np.ndarray, flow_bw: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    frame_t, frame_t1 = check_pair(frame_t, frame_t1, ("frame_t", "frame_t1"))
    check_flows(frame_t, flow_fw, flow_bw)
    return frame_t, frame_t1


def check_flows(frame: np.ndarray, flow_fw: np.ndarray, flow_bw: np.ndarray | None) -> None:
    """Both flows (the backward one when given) are float (H, W, 2) arrays of ``frame``'s size."""
    height, width = frame.shape[:2]
    check_flow("flow_fw", flow_fw, height, width)
    if flow_bw is not None:
        check_flow("flow_bw", flow_bw, height, width)


def warp_error(
    frame_t: np.ndarray, frame_t1: np.ndarray, flow_fw: np.ndarray, flow_bw: np.ndarray | None = None
) -> float:
    """E_warp of Lai et al. 2018 for one pair of uint8 RGB frames.

    Frame t+1 is warped back to t with ``flow_fw`` = F(t→t+1)
    (:func:`~gifstream.motion.warp.backward_warp`) and compared with frame t;
    the result is the squared error, frames scaled to [0, 1], averaged over
    the colour channels and over the reliable pixels.

    Pixels whose flow points outside the frame are always left out (the
    warp could only repeat the border there). With ``flow_bw`` = B(t+1→t),
    occluded pixels are left out too
    (:func:`~gifstream.motion.warp.occlusion_mask`), as in the paper.
    Without it no occlusion mask is applied, so regions that get covered or
    uncovered count and the error reads higher. NaN when no pixel is left.
    """
    frame_t, frame_t1 = check_frames_and_flows(frame_t, frame_t1, flow_fw, flow_bw)
    [error] = warp_errors([frame_t], [frame_t1], flow_fw, flow_bw)
    return error


@dataclass(frozen=True, slots=True)
class WarpErrorPair:
    """E_warp of the input and of the output, measured with the same input flow and mask."""

    input: float
    output: float

    @property
    def ratio(self) -> float:
        """output / input: above 1 when restoration added temporal flicker."""
        if self.input == 0:
            return float("inf") if self.output > 0 else 1.0
        return self.output / self.input


def warp_error_pair(
    in_t: np.ndarray,
    in_t1: np.ndarray,
    out_t: np.ndarray,
    out_t1: np.ndarray,
    flow_fw: np.ndarray,
    flow_bw: np.ndarray | None = None,
) -> WarpErrorPair:
    """E_warp of the input pair and of the output pair, both with the flow measured on the input.

    Flow on the restored output would follow whatever flicker restoration
    added, so the input's flow (and occlusion mask) is the common yardstick.
    Outputs at another size are resized to the input's with OpenCV
    INTER_AREA first (a differing aspect ratio raises InputError).
    """
    in_t, in_t1 = check_frames_and_flows(in_t, in_t1, flow_fw, flow_bw)
    out_t, out_t1 = check_pair(out_t, out_t1, ("out_t", "out_t1"))
    out_t, out_t1 = match_geometry(in_t, out_t), match_geometry(in_t, out_t1)
    error_in, error_out = warp_errors([in_t, out_t], [in_t1, out_t1], flow_fw, flow_bw)
    return WarpErrorPair(input=error_in, output=error_out)


def output_warp_errors(
    in_t: np.ndarray,
    outputs_t: list[np.ndarray],
    outputs_t1: list[np.ndarray],
    flow_fw: np.ndarray,
    flow_bw: np.ndarray | None = None,
) -> list[float]:
    """E_warp of each output pair (``outputs_t[i]``, ``outputs_t1[i]``) with the input's flow and mask.

    The output side of :func:`warp_error_pair` for several outputs at once
    (say, before and after a filter), in one pass. ``in_t`` gives the
    geometry the flow belongs to; outputs at another size are resized to it
    with OpenCV INTER_AREA first (a differing aspect ratio raises InputError).
    """
    in_t = check_rgb("in_t", in_t)
    check_flows(in_t, flow_fw, flow_bw)
    if len(outputs_t) != len(outputs_t1):
        raise InputError(f"got {len(outputs_t)} outputs at t but {len(outputs_t1)} at t+1")
    pairs = [
        check_pair(a, b, (f"outputs_t[{i}]", f"outputs_t1[{i}]"))
        for i, (a, b) in enumerate(zip(outputs_t, outputs_t1, strict=True))
    ]
    at_input_t = [match_geometry(in_t, a) for a, _ in pairs]
    at_input_t1 = [match_geometry(in_t, b) for _, b in pairs]
    return warp_errors(at_input_t, at_input_t1, flow_fw, flow_bw)


def farneback_flow(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """OpenCV Farnebäck flow between two uint8 RGB frames, on grayscale, with TecoGAN's settings."""
    return cv2.calcOpticalFlowFarneback(to_gray(prev), to_gray(cur), None, **FARNEBACK_PARAMS)


def tof(in_prev: np.ndarray, in_cur: np.ndarray, out_prev: np.ndarray, out_cur: np.ndarray) -> float:
    """TecoGAN's tOF: mean over pixels of the length of (flow_in − flow_out).

    Flows are Farnebäck (pyr_scale 0.5, levels 3, winsize 15, iterations 3,
    poly_n 5, poly_sigma 1.2) on grayscale, from the previous to the current
    frame. Outputs at another size are resized to the input's geometry with
    OpenCV INTER_AREA first (a differing aspect ratio raises InputError).
    Unlike TecoGAN's script, no border is cropped. 0 means the output moves
    exactly as the input does.
    """
    in_prev, in_cur = check_pair(in_prev, in_cur, ("in_prev", "in_cur"))
    out_prev, out_cur = check_pair(out_prev, out_cur, ("out_prev", "out_cur"))
    out_prev = match_geometry(in_prev, out_prev)
    out_cur = match_geometry(in_prev, out_cur)
    difference = farneback_flow(in_prev, in_cur) - farneback_flow(out_prev, out_cur)
    return float(np.sqrt((difference**2).sum(axis=2)).mean())
