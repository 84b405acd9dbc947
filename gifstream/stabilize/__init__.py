"""Temporal stabilisation: flow-guided blending of restored frames, and One-Euro landmark smoothing."""

from .blend import (
    StabilizeConfig,
    Stabilized,
    blend_weights,
    cut_score,
    input_warp_error,
    predict_from_previous,
    stabilize_frame,
    temporal_blend,
)
from .landmarks import LandmarkSmoother, OneEuroFilter, OneEuroParams, OneEuroState, one_euro_step

__all__ = [
    "LandmarkSmoother",
    "OneEuroFilter",
    "OneEuroParams",
    "OneEuroState",
    "StabilizeConfig",
    "Stabilized",
    "blend_weights",
    "cut_score",
    "input_warp_error",
    "one_euro_step",
    "predict_from_previous",
    "stabilize_frame",
    "temporal_blend",
]
