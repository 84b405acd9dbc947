"""The restore stage: faces restored (GFPGAN, or the offline classic fallback) and frames upscaled.

The stage owns what the restorers do not: choosing one (``auto`` prefers
GFPGAN when its weights are cached), keeping each frame's input for the
metrics, carrying the alpha channel around the RGB-only restorer and
reusing the output of a frame that repeats the one before it.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import BlockingStage, ConfigError, Frame, RunContext
from ..options import RESTORERS
from ..restore.base import PastesLater, PendingPaste, Restored, Restorer, same_pixels
from ..restore.detect import Detector
from .basic import resize_lanczos
from .registry import register

log = logging.getLogger(__name__)

GFPGAN_MODELS = ("gfpgan_v1.3", "gfpgan_v1.4")
# Registry names of the other weights a GFPGAN run needs, by role.
GFPGAN_COMPANIONS = {"realesrgan": "realesrgan_x2plus", "detection": "retinaface_resnet50", "parsing": "parsenet"}


@dataclass(frozen=True, slots=True)
class RestoreConfig:
    restorer: str = "auto"  # auto, gfpgan, classic or none (Lanczos only)
    scale: float = 2
    weights_dir: str | None = None  # None: gifstream's weights cache
    max_batch: int = 1  # frames per call; on CPU 1 is usually fastest, on a GPU larger batches fill it
    max_faces_per_batch: int = 8  # GFPGAN crops per forward
    device: str | None = None  # None: the run's device
    fetch: bool = False  # download missing GFPGAN weights
    gfpgan_model: str = "gfpgan_v1.3"
    # Finds the faces instead of the restorer's own detector (RetinaFace for GFPGAN, the LBP cascade for
    # classic): a callable taking RGB frames and giving each one's FaceDetection list.
    detector: Detector | None = None
    detect_every: int = 1  # GFPGAN: run face detection on every k-th frame, carrying faces between
    smooth_landmarks: bool = False  # GFPGAN: One-Euro smoothing of the landmarks that drive alignment
    precision: str = "auto"  # GFPGAN on a CPU: auto (bf16 where the CPU has it natively, else fp32), fp32, bf16
    # Leave GFPGAN's paste-back to a PasteStage that must follow this stage, so that frame N is pasted while
    # frame N+1 is restored. Restorers without a separate paste-back finish their frames here regardless.
    defer_paste: bool = False

    def __post_init__(self) -> None:
        if self.restorer not in RESTORERS:
            raise ConfigError(f"--restorer must be one of {', '.join(RESTORERS)}; got {self.restorer!r}")
        if self.gfpgan_model not in GFPGAN_MODELS:
            raise ConfigError(f"GFPGAN model must be one of {', '.join(GFPGAN_MODELS)}; got {self.gfpgan_model!r}")
        if not 0 < self.scale <= 16:
            raise ConfigError(f"--scale must be in (0, 16], got {self.scale}")
        if self.max_batch < 1:
            raise ConfigError(f"--batch must be >= 1, got {self.max_batch}")
        if self.max_faces_per_batch < 1:
            raise ConfigError(f"max_faces_per_batch must be >= 1, got {self.max_faces_per_batch}")

    @property
    def gfpgan_weights(self) -> dict[str, str]:
        """Registry names of every weight file GFPGAN needs, by role."""
        return {"gfpgan": self.gfpgan_model, **GFPGAN_COMPANIONS}


def select_restorer(config: RestoreConfig) -> tuple[str, str]:
    """The restorer a run will use and why, in one line.

    ``auto`` takes GFPGAN when all its weights are cached (or fetched, with
    ``fetch``) and its libraries import, else the classic restorer. Asking
    for ``gfpgan`` without its weights raises the weights registry's
    WeightsMissingError, whose message says how to fetch them.
    """
    if config.restorer in {"classic", "none"}:
        return config.restorer, f"--restorer {config.restorer}"
    if config.restorer == "gfpgan":
        gfpgan_weight_paths(config)
        _require_model_libraries()
        return "gfpgan", "--restorer gfpgan"
    missing, unusable = unavailable_gfpgan_weights(config)
    if missing:
        from ..weights import get_entry

        files = ", ".join(get_entry(name).filename for name in missing)
        return "classic", (
            f"GFPGAN weights not cached ({files}); using the offline classic restorer — "
            f"run `{fetch_command(missing, config.weights_dir)}` (or pass --fetch-weights) for GFPGAN"
        )
    if unusable:
        return "classic", f"GFPGAN weights unusable ({unusable[0]}); using the offline classic restorer"
    from ..restore.compat import model_libraries_missing

    problem = model_libraries_missing()
    if problem:
        return "classic", f"GFPGAN unavailable: {problem}; using the offline classic restorer"
    return "gfpgan", "GFPGAN weights cached"


def gfpgan_weight_paths(config: RestoreConfig) -> dict[str, Path]:
    """Each GFPGAN weight file's path by role; WeightsMissingError (one line) for the first one missing."""
    from ..weights import path_for

    return {
        role: path_for(name, weights_dir=config.weights_dir, fetch=config.fetch)
        for role, name in config.gfpgan_weights.items()
    }


def unavailable_gfpgan_weights(config: RestoreConfig) -> tuple[list[str], list[str]]:
    """Registry names of the GFPGAN weights not cached (nor fetched), and problems with cached ones."""
    from ..weights import WeightsHashError, WeightsMissingError, path_for

    missing, unusable = [], []
    for name in config.gfpgan_weights.values():
        try:
            path_for(name, weights_dir=config.weights_dir, fetch=config.fetch)
        except WeightsMissingError:
            missing.append(name)
        except WeightsHashError as err:
            unusable.append(str(err))
    return missing, unusable


def fetch_command(names: list[str], weights_dir: str | None) -> str:
    command = "gifstream models fetch " + " ".join(shlex.quote(name) for name in names)
    return command if weights_dir is None else f"{command} --weights-dir {shlex.quote(weights_dir)}"


def _require_model_libraries() -> None:
    from ..restore.compat import import_model_libraries

    import_model_libraries()


def build_restorer(name: str, config: RestoreConfig, device: str) -> Restorer:
    """The restorer called ``name`` (as :func:`select_restorer` chose it), ready to run."""
    if name == "gfpgan":
        from ..restore.gfpgan import GfpganRestorer

        paths = gfpgan_weight_paths(config)
        return GfpganRestorer(
            paths["gfpgan"],
            paths["realesrgan"],
            paths["detection"],
            paths["parsing"],
            upscale=config.scale,
            device=device,
            max_faces_per_batch=config.max_faces_per_batch,
            detector=config.detector,
            detect_every=config.detect_every,
            smooth_landmarks=config.smooth_landmarks,
            precision=config.precision,
        )
    from ..restore.classic import ClassicRestorer, LanczosRestorer

    if name == "classic":
        detector = config.detector
        if config.detect_every > 1:
            from ..restore.detect import CascadeFaceDetector
            from ..restore.tracking import EveryKDetector

            detector = EveryKDetector(detector or CascadeFaceDetector(), config.detect_every)
        return ClassicRestorer(scale=config.scale, detector=detector)
    if name == "none":
        return LanczosRestorer(scale=config.scale)
    raise ConfigError(f"unknown restorer {name!r}; known: {', '.join(RESTORERS)}")


@register("restore")
class RestoreStage(BlockingStage):
    """Restores faces and upscales every frame by ``config.scale``.

    Adds ``meta["restore"]``: the restorer's name, the faces it treated, and
    whether the frame repeated the previous one (its output is then reused).
    Keeps the input pixels in ``frame.source`` when no earlier stage did.
    """

    name = "restore"
    needs_previous = True  # to reuse the previous output when a frame repeats it across batches

    def __init__(self, config: RestoreConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = config or RestoreConfig(**options)
        self.max_batch = self.config.max_batch
        self.restorer: Restorer | None = None
        self.reason = ""
        self.frames = 0
        self.faces = 0
        self.reused = 0
        self.restorer_details: dict[str, Any] = {}

    def setup_sync(self, ctx: RunContext) -> None:
        name, self.reason = select_restorer(self.config)
        if self.config.restorer == "auto" and name != "gfpgan" and not ctx.options.get("quiet"):
            log.warning(self.reason)
        self.restorer = build_restorer(name, self.config, self.config.device or ctx.device)

    def process_sync(self, batch: list[Frame], previous: Frame | None) -> list[Frame]:
        if self.restorer is None:
            raise RuntimeError("restore stage used before setup")
        inputs = [frame.as_array() for frame in batch]
        earlier = [_stage_input(previous), *inputs[:-1]]
        repeats = [same_pixels(before, now) for before, now in zip(earlier, inputs, strict=True)]
        fresh_inputs = [pixels for pixels, repeated in zip(inputs, repeats, strict=True) if not repeated]
        if self.config.defer_paste and isinstance(self.restorer, PastesLater):
            self._leave_paste_for_later(batch, inputs, repeats, self.restorer.restore_faces(fresh_inputs), previous)
            return batch
        fresh = iter(self.restorer.restore(fresh_inputs))
        last = _restored_of(previous)
        for frame, pixels, repeated in zip(batch, inputs, repeats, strict=True):
            result = (
                Restored(last.pixels.copy(), last.faces, reused=True) if repeated and last is not None else next(fresh)
            )
            self._record(frame, pixels, result.faces, result.reused)
            set_output(frame, result.pixels)
            last = result
        return batch

    def _leave_paste_for_later(
        self,
        batch: list[Frame],
        inputs: list[np.ndarray],
        repeats: list[bool],
        pending: list[PendingPaste],
        previous: Frame | None,
    ) -> None:
        """Record each frame as restored, leaving its paste-back (or its repeat of the one before) in meta["paste"]."""
        fresh = iter(pending)
        faces = _faces_of(previous)
        for frame, pixels, repeated in zip(batch, inputs, repeats, strict=True):
            if repeated and faces is not None:
                frame.meta["paste"] = REPEAT_PREVIOUS
            else:
                item = next(fresh)
                frame.meta["paste"] = item
                faces = item.faces
            self._record(frame, pixels, faces, repeated)

    def _record(self, frame: Frame, pixels: np.ndarray, faces: int, reused: bool) -> None:
        input_kept = frame.source is None
        if input_kept:
            frame.source = pixels
        frame.meta["restore"] = {
            "restorer": self.restorer.name if self.restorer else None,
            "faces": faces,
            "reused": reused,
            "input_kept": input_kept,
        }
        self.frames += 1
        self.faces += faces
        self.reused += int(reused)

    def close_sync(self) -> None:
        if self.restorer is not None:
            # Kept for the run report, which is written after the stages close.
            self.restorer_details = self.restorer.describe()
        self.restorer = None  # frees the networks (and their device memory) with the stage

    def describe(self) -> dict[str, Any]:
        """Restorer name, why it was chosen, its weight files with their SHA-256, and frame/face counts."""
        details: dict[str, Any] = {"requested": self.config.restorer, "reason": self.reason}
        details.update(self.restorer.describe() if self.restorer is not None else self.restorer_details)
        details.update({"frames": self.frames, "faces": self.faces, "reused_frames": self.reused})
        return details


def _stage_input(previous: Frame | None) -> np.ndarray | None:
    """What the restore stage received for ``previous``, when the stage kept it in ``source``."""
    if previous is None or not previous.meta.get("restore", {}).get("input_kept"):
        return None
    return previous.source


def _restored_of(previous: Frame | None) -> Restored | None:
    faces = _faces_of(previous)
    return None if previous is None or faces is None else Restored(previous.as_array(), faces)


def _faces_of(previous: Frame | None) -> int | None:
    if previous is None or "restore" not in previous.meta:
        return None
    faces: int = previous.meta["restore"]["faces"]
    return faces


def set_output(frame: Frame, pixels: np.ndarray) -> None:
    """A frame's restored pixels, with its alpha mask (if any) scaled to their size."""
    frame.pixels = pixels
    if frame.alpha is not None:
        frame.alpha = scale_alpha(frame.alpha, (pixels.shape[1], pixels.shape[0]))


class _RepeatPrevious:
    def __repr__(self) -> str:
        return "REPEAT_PREVIOUS"


# meta["paste"] of a frame that repeats the one before it: the paste stage copies that frame's output.
REPEAT_PREVIOUS = _RepeatPrevious()


@register("paste")
class PasteStage(BlockingStage):
    """Pastes restored faces back (see ``RestoreConfig.defer_paste``) beside the restore stage's next frames.

    GFPGAN's paste-back masks every face with ParseNet, about half of a
    frame's work on a CPU; as a stage of its own it runs on its own thread
    (and torch threads), so frame N is pasted while frame N+1 is restored.
    Frames with nothing pending (another restorer, or no deferral) pass
    through untouched.
    """

    name = "paste"
    needs_previous = True  # a repeated frame copies the previous frame's finished output

    def __init__(self, max_batch: int = 1) -> None:
        super().__init__()
        self.max_batch = max_batch
        self.pasted = 0

    def process_sync(self, batch: list[Frame], previous: Frame | None) -> list[Frame]:
        for frame in batch:
            pending = frame.meta.pop("paste", None)
            if pending is REPEAT_PREVIOUS:
                if previous is None:
                    raise RuntimeError(f"frame {frame.index} repeats a frame the paste stage never saw")
                set_output(frame, previous.as_array().copy())
            elif isinstance(pending, PendingPaste):
                set_output(frame, pending.finish().pixels)
                self.pasted += 1
            previous = frame
        return batch

    def describe(self) -> dict[str, Any]:
        return {"pasted": self.pasted}


def scale_alpha(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An alpha mask resized to ``size`` (width, height) with Lanczos.

    A binary mask (GIF transparency) is thresholded back to 0/255 so edges
    stay crisp and no half-transparent fringe appears; a soft mask keeps its
    gradations.
    """
    if (alpha.shape[1], alpha.shape[0]) == size:
        return alpha
    resized = resize_lanczos(np.ascontiguousarray(alpha), size)
    if np.isin(alpha, (0, 255)).all():
        return np.where(resized >= 128, 255, 0).astype(np.uint8)
    return resized
