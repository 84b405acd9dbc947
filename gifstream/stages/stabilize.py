"""The stabilise stage: restored frames blended with the previous stabilised output along the input's motion.

It runs after the restore and flow stages and reads ``meta["flow"]`` (the
input's forward and backward flow) from each frame. Because the stage asks
for ``needs_previous``, the runner hands it the previous frame as this stage
returned it, so the recursion ``out_t = f(restored_t, out_{t−1})`` needs no
state of its own and memory stays at one frame.
"""

from __future__ import annotations

from typing import Any

from ..engine import BlockingStage, ConfigError, Frame, RunContext
from ..metrics import output_warp_errors
from ..stabilize.blend import StabilizeConfig, stabilize_frame
from .analysis import RunningSummary, input_pixels
from .registry import register

__all__ = ["StabilizeConfig", "StabilizeStage"]


@register("stabilize")
class StabilizeStage(BlockingStage):
    """Reduces the flicker of per-frame restoration (see :mod:`gifstream.stabilize.blend`).

    Adds ``meta["stabilize"] = {"blend": mean blend weight, "cut": scene cut
    detected, "cut_score": mean input warp error}`` to every frame. Needs the
    flow stage before it; a frame after the first without ``meta["flow"]``
    raises ConfigError.
    """

    name = "stabilize"
    needs_previous = True

    def __init__(self, config: StabilizeConfig | None = None, **options: float) -> None:
        super().__init__()
        self.config = config or StabilizeConfig(**options)
        self.cuts = 0
        # E_warp of the restored frames and of the stabilised ones, with the input's flow:
        # what the stage bought. Needs the previous restored frame, one array.
        self.e_warp_before = RunningSummary()
        self.e_warp_after = RunningSummary()
        self._last_restored: Any = None

    def setup_sync(self, ctx: RunContext) -> None:
        from ..metrics import warp_kernel
        from ..motion import warp
        from ..stabilize import blend

        # The compiled loops (the warps, the blend, E_warp), made ready now rather than on the second frame.
        warp.prepare()
        blend.prepare()
        warp_kernel.prepare()

    def process_sync(self, batch: list[Frame], previous: Frame | None) -> list[Frame]:
        for frame in batch:
            self._stabilize(frame, previous)
            previous = frame
        return batch

    def _stabilize(self, frame: Frame, previous: Frame | None) -> None:
        restored = frame.as_array()
        if frame.source is None:
            # Keep the input: the next frame's prediction is checked against it.
            frame.source = restored
        flows = frame.meta.get("flow")
        if previous is not None and flows is None:
            raise ConfigError(
                f"the stabilize stage needs optical flow, and frame {frame.index} has none: "
                "enable it with --flow (dis or raft_*) before --stabilize"
            )
        result = stabilize_frame(
            restored,
            previous.as_array() if previous is not None else None,
            input_pixels(previous) if previous is not None else None,
            input_pixels(frame),
            flows if previous is not None else None,
            self.config,
        )
        if previous is not None and self._last_restored is not None and flows is not None:
            # The outputs' E_warp before and after, on the input's flow and mask, in one pass.
            before, after = output_warp_errors(
                input_pixels(previous), [self._last_restored, previous.as_array()], [restored, result.pixels], *flows
            )
            self.e_warp_before.add(before)
            self.e_warp_after.add(after)
        self._last_restored = restored
        frame.pixels = result.pixels
        frame.meta["stabilize"] = {"blend": result.blend, "cut": result.cut, "cut_score": result.cut_score}
        self.cuts += int(result.cut)

    def describe(self) -> dict[str, Any]:
        return {
            "strength": self.config.strength,
            "sigma": self.config.sigma,
            "cut_threshold": self.config.cut_threshold,
            "cuts_detected": self.cuts,
            "e_warp_before": self.e_warp_before.as_dict(),
            "e_warp_after": self.e_warp_after.as_dict(),
        }
