"""Optical flow, backward warping and occlusion masks, at the frames' native geometry."""

from .flow import DisFlow, RaftFlow, estimate_flow, resize_flow
from .warp import (
    backward_warp,
    forward_backward_inconsistent,
    inside_frame,
    motion_boundaries,
    occlusion_mask,
)

__all__ = [
    "DisFlow",
    "RaftFlow",
    "backward_warp",
    "estimate_flow",
    "forward_backward_inconsistent",
    "inside_frame",
    "motion_boundaries",
    "occlusion_mask",
    "resize_flow",
]
