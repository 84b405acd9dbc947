"""Temporal-consistency metrics: warping error (Lai et al. 2018) and TecoGAN's tOF.

Measured on a restored output with the motion of its input, they tell
whether restoration added flicker that the input did not have.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..motion.flow import check_flow, check_pair, to_gray
from ..motion.warp import FlowSampler, inconsistent_with, inside_frame, motion_boundaries, occlusion_mask
from .quality import match_geometry

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


def reliable_pixels(flow_fw: np.ndarray, flow_bw: np.ndarray | None) -> np.ndarray:
    """(H, W) bool: pixels whose forward flow lands inside frame t+1 and, given ``flow_bw``, are not occluded."""
    valid = inside_frame(flow_fw)
    if flow_bw is not None:
        valid &= ~occlusion_mask(flow_fw, flow_bw)
    return valid


def to_unit(frame: np.ndarray) -> np.ndarray:
    """uint8 RGB as float32 in [0, 1]."""
    return frame.astype(np.float32) / 255.0


def masked_warp_error(frame_t: np.ndarray, frame_t1: np.ndarray, flow_fw: np.ndarray, valid: np.ndarray) -> float:
    """Mean squared error (over ``valid`` pixels and channels) between frame t and frame t+1 warped back to t."""
    if not valid.any():
        return float("nan")
    return masked_error(frame_t, FlowSampler(flow_fw).warp_planes(frame_t1) / 255, valid)


def masked_error(frame_t: np.ndarray, predicted_t: np.ndarray, valid: np.ndarray) -> float:
    """Mean over ``valid`` pixels of the channel-mean squared error between uint8 ``frame_t`` and a
    channel-first [0, 1] float32 prediction of it (NaN when no pixel is valid)."""
    if not valid.any():
        return float("nan")
    difference = np.moveaxis(frame_t, 2, 0).astype(np.float32, order="C") / 255
    difference -= predicted_t
    difference *= difference
    per_pixel = difference.sum(axis=0)
    # A masked sum, not per_pixel[valid]: that copy has a different size every frame, and thousands
    # of those fragment the C heap over a long run. float64 keeps the sum as exact as mean()'s.
    total = np.sum(per_pixel, where=valid, dtype=np.float64)
    return float(total / (len(difference) * np.count_nonzero(valid)))


def warped_frames_and_mask(
    flow_fw: np.ndarray, flow_bw: np.ndarray | None, frames_t1: list[np.ndarray]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each uint8 frame t+1 warped back to t (channel-first float32 in [0, 1]) and the reliable pixels of t.

    The frames are gathered together (the four neighbours and weights of
    every sample depend on the forward flow only, so they are worked out
    once), and the backward flow that the occlusion check reads at x + F(x)
    uses the same samples.
    """
    sampler = FlowSampler(flow_fw)
    warped = sampler.warp_planes(np.concatenate(frames_t1, axis=2))
    warped /= 255
    valid = inside_frame(flow_fw)
    if flow_bw is not None:
        backward_at_t = np.moveaxis(sampler.warp_planes(flow_bw), 0, 2)
        forward = flow_fw.astype(np.float32, copy=False)
        valid &= ~(inconsistent_with(forward, backward_at_t) | motion_boundaries(forward))
    return [warped[3 * i : 3 * i + 3] for i in range(len(frames_t1))], valid


def check_frames_and_flows(
    frame_t: np.ndarray, frame_t1: np.ndarray, flow_fw: np.ndarray, flow_bw: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    frame_t, frame_t1 = check_pair(frame_t, frame_t1, ("frame_t", "frame_t1"))
    height, width = frame_t.shape[:2]
    check_flow("flow_fw", flow_fw, height, width)
    if flow_bw is not None:
        check_flow("flow_bw", flow_bw, height, width)
    return frame_t, frame_t1


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
    [predicted], valid = warped_frames_and_mask(flow_fw, flow_bw, [frame_t1])
    return masked_error(frame_t, predicted, valid)


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
    out_t = match_geometry(in_t, out_t)
    out_t1 = match_geometry(in_t, out_t1)
    (predicted_in, predicted_out), valid = warped_frames_and_mask(flow_fw, flow_bw, [in_t1, out_t1])
    return WarpErrorPair(
        input=masked_error(in_t, predicted_in, valid), output=masked_error(out_t, predicted_out, valid)
    )


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
