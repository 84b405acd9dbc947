"""GFPGAN v1.3 face restoration with a Real-ESRGAN x2 background, batched across frames.

For each frame the result is what GFPGAN's own ``GFPGANer.enhance`` gives
(``arch="clean"``, ``upscale=2``, Real-ESRGAN x2plus with ``tile=400``,
``tile_pad=10``, ``pre_pad=0`` as the background upsampler), but the work is
grouped: the aligned face crops of every frame in a batch go through GFPGAN
together (in chunks of ``max_faces_per_batch``), and equal-size frames go
through Real-ESRGAN together, tile by tile. facexlib's own alignment and
inverse-affine code is reused for each frame; the paste-back is facexlib's,
done in torch over each face's footprint (see :mod:`.paste`).

GFPGANer draws fresh noise for the StyleGAN2 decoder on every call
(``randomize_noise=True``); so does this restorer, to give the same images.

On the CPU the networks run under bfloat16 autocast where the CPU computes
bfloat16 natively and in float32 elsewhere (``precision="auto"``, the
default; see :mod:`.precision`); ``"fp32"`` and ``"bf16"`` choose one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from ..engine import ConfigError, InputError
from .base import PendingPaste, Restored, check_rgb, expand_repeats, repeats_previous
from .compat import import_model_libraries
from .detect import Detector, FaceDetection, RetinaFaceDetector
from .paste import paste_faces, soft_face_mask
from .precision import DEFAULT_PRECISION, bf16_networks, cpu_autocast, resolve_precision
from .threads import CORE_SHARE, cap_intra_op_threads, default_intra_op_threads, start_beside
from .tracking import tracked_detector

T = TypeVar("T")

# GFPGANer's network and helper settings for the v1.3/v1.4 "clean" checkpoints.
GFPGAN_CLEAN_ARCH: dict[str, Any] = {
    "out_size": 512,
    "num_style_feat": 512,
    "channel_multiplier": 2,
    "decoder_load_path": None,
    "fix_decoder": False,
    "num_mlp": 8,
    "input_is_latent": True,
    "different_w": True,
    "narrow": 1,
    "sft_half": True,
}
REALESRGAN_X2PLUS_ARCH: dict[str, Any] = {
    "num_in_ch": 3,
    "num_out_ch": 3,
    "num_feat": 64,
    "num_block": 23,
    "num_grow_ch": 32,
    "scale": 2,
}
FACE_SIZE = 512
# facexlib's five-point FFHQ template for 512x512 crops (FaceRestoreHelper, crop_ratio (1, 1)).
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ]
)
DETECTION_THRESHOLD = 0.97  # GFPGANer's RetinaFace confidence cut-off
EYE_DISTANCE_THRESHOLD = 5.0  # GFPGANer skips faces whose eyes are closer than this (pixels)
GFPGAN_WEIGHT = 0.5  # what GFPGANer passes as ``weight`` (the clean architecture ignores it)


@dataclass(frozen=True, slots=True)
class GfpganNetworks:
    """The loaded networks: GFPGAN, the face parser, and optionally RetinaFace and Real-ESRGAN."""

    face: Any
    parser: Any
    retinaface: Any | None = None
    background: Any | None = None  # None: the background is upscaled with Lanczos, as GFPGANer does without one


class GfpganRestorer:
    """GFPGAN v1.3 faces on a Real-ESRGAN x2 background, for batches of RGB frames.

    The weight files are given as paths (see :mod:`gifstream.weights` for
    where they come from). ``detector`` replaces RetinaFace (then
    ``detection_path`` may be None); ``realesrgan_path=None`` upscales the
    background with Lanczos instead. Only the networks are kept between
    calls; everything about a frame lives inside :meth:`restore`.

    ``precision`` is "fp32", "bf16" or "auto" (see :func:`.precision.resolve_precision`);
    :attr:`precision` holds what it resolved to, and :attr:`bf16_networks`
    the roles ("background", "parser", "face") run under bfloat16 autocast.

    ``winograd`` sends the networks' 3x3 convolutions through NNPACK's
    Winograd kernels on the CPU (see :mod:`.winograd`): None where that is
    faster (each network's steady share of the cores is one thread), True
    wherever NNPACK is there, False never. :attr:`winograd` holds whether it does.
    """

    name = "gfpgan"

    def __init__(
        self,
        gfpgan_path: str | Path,
        realesrgan_path: str | Path | None,
        detection_path: str | Path | None,
        parsing_path: str | Path,
        *,
        upscale: float = 2,
        device: str = "cpu",
        max_faces_per_batch: int = 8,
        bg_tile: int = 400,
        bg_tile_pad: int = 10,
        detector: Detector | None = None,
        detection_threshold: float = DETECTION_THRESHOLD,
        eye_distance_threshold: float = EYE_DISTANCE_THRESHOLD,
        detect_every: int = 1,
        smooth_landmarks: bool = False,
        frame_seconds: float = 0.1,
        intra_op_threads: int | None = None,
        precision: str = DEFAULT_PRECISION,
        winograd: bool | None = None,
    ) -> None:
        import torch

        if max_faces_per_batch < 1:
            raise ConfigError(f"max_faces_per_batch must be >= 1, got {max_faces_per_batch}")
        if detector is None and detection_path is None:
            raise ConfigError("GfpganRestorer needs detection_path (RetinaFace weights) when no detector is given")
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device.type)
        self.bf16_networks = bf16_networks(self.precision)
        import_model_libraries()
        # On a GPU the restorer's work goes on a stream of its own, so copies and kernels of other
        # stages' streams can overlap with it; on the CPU there is no stream at all.
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        # On the CPU the background and the faces are worked on side by side, each on this many threads ...
        self.intra_op_threads = (intra_op_threads or default_intra_op_threads()) if self.device.type == "cpu" else None
        # ... or, unless a count was given, on their share of the cores at each layer (all of them when alone).
        self.core_share = CORE_SHARE if self.device.type == "cpu" and intra_op_threads is None else None
        self.upscale = upscale
        self.max_faces_per_batch = max_faces_per_batch
        self.bg_tile = bg_tile
        self.bg_tile_pad = bg_tile_pad
        self.eye_distance_threshold = eye_distance_threshold
        face_weights, parser_weights = Path(gfpgan_path), Path(parsing_path)
        background_weights = None if realesrgan_path is None else Path(realesrgan_path)
        detector_weights = None if detector is not None or detection_path is None else Path(detection_path)
        self.paths: dict[str, Path | None] = {
            "gfpgan": face_weights,
            "realesrgan": background_weights,
            "detection": detector_weights,
            "parsing": parser_weights,
        }
        self.networks = load_networks(face_weights, background_weights, detector_weights, parser_weights, self.device)
        self.winograd = self._route_convolutions(winograd)
        if self.core_share is not None:
            for net in (self.networks.face, self.networks.background, self.networks.parser):
                if net is not None:
                    self.core_share.attach(getattr(net, "net", net))  # through ChannelsLast to the module
        self.detector: Detector = tracked_detector(
            detector or RetinaFaceDetector(self.networks.retinaface, detection_threshold),
            detect_every,
            smooth_landmarks,
            frame_seconds,
        )

    def _route_convolutions(self, wanted: bool | None) -> bool:
        """Route the float32 networks' eligible convolutions through NNPACK when ``wanted`` (None: where it pays).

        NNPACK's kernels are float32 only: networks under bfloat16 autocast stay with oneDNN.
        """
        from . import winograd

        roles = {"face": self.networks.face, "parser": self.networks.parser, "background": self.networks.background}
        float32_nets = [net for role, net in roles.items() if net is not None and role not in self.bf16_networks]
        if self.device.type != "cpu" or wanted is False or not float32_nets:
            return False
        if wanted is None and not winograd.pays_on(self.intra_op_threads or default_intra_op_threads()):
            return False
        if wanted and not winograd.nnpack_ready():
            raise ConfigError("winograd=True needs NNPACK, which this torch build or CPU does not have")
        for net in float32_nets:
            winograd.route_convolutions(getattr(net, "net", net))  # through ChannelsLast to the module
        return True

    def restore(self, frames: Sequence[np.ndarray]) -> list[Restored]:
        import torch

        frames = [check_rgb(frame, i) for i, frame in enumerate(frames)]
        repeats = repeats_previous(frames)
        fresh = [frame for frame, repeated in zip(frames, repeats, strict=True) if not repeated]
        if not fresh:
            return []
        helpers, backgrounds = self._faces_and_backgrounds(fresh)
        with torch.inference_mode(), device_stream(self.stream):
            unique = self._paste_all(helpers, backgrounds)
        return expand_repeats(unique, repeats)

    def restore_faces(self, frames: Sequence[np.ndarray]) -> list[PendingPaste]:
        """Every step of :meth:`restore` but the paste-back, which each frame's PendingPaste does later.

        The paste-back (ParseNet's mask for every face) is about half of a
        frame's work on a CPU; a pipeline pastes frame N on another thread
        while this restores frame N+1. Frames are not checked for repeats here.
        """
        frames = [check_rgb(frame, i) for i, frame in enumerate(frames)]
        if not frames:
            return []
        helpers, backgrounds = self._faces_and_backgrounds(frames)
        return [
            PendingPaste(functools.partial(self._paste_later, helper, background), len(helper.cropped_faces))
            for helper, background in zip(helpers, backgrounds, strict=True)
        ]

    def _faces_and_backgrounds(self, frames: list[np.ndarray]) -> tuple[list[Any], list[np.ndarray | None]]:
        """Each frame's facexlib helper (faces aligned, restored, inverse affines ready) and its background."""
        import torch

        landmarks = [self._alignable(faces) for faces in self.detector(frames)]
        if self.intra_op_threads is not None:
            # The background does not depend on the faces: Real-ESRGAN runs on a thread of its own meanwhile.
            backgrounds_done = start_beside(lambda: self._on_cores(self._upsample_backgrounds, frames), None)
        with torch.inference_mode(), device_stream(self.stream):
            helpers = [
                align_faces(bgr(frame), marks, self.upscale) for frame, marks in zip(frames, landmarks, strict=True)
            ]
            crops = [crop for helper in helpers for crop in helper.cropped_faces]
            restored = iter(self._on_cores(self._restore_faces, crops))
            backgrounds = (
                backgrounds_done() if self.intra_op_threads is not None else self._upsample_backgrounds(frames)
            )
            for helper in helpers:
                for _ in helper.cropped_faces:
                    helper.add_restored_face(next(restored))
                helper.get_inverse_affine(None)
        return helpers, backgrounds

    def _paste_later(self, helper: Any, background: np.ndarray | None) -> Restored:
        """One frame's paste-back, on whichever thread calls it (sharing the cores like the restorer's own work)."""
        import torch

        with torch.inference_mode(), device_stream(self.stream):
            return self._on_cores(self._pasted_frames, [(helper, background)])[0]

    def _on_cores(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)``, model work on the calling thread: on the CPU it takes its share of the cores."""
        if self.core_share is not None:
            with self.core_share.working():
                return work(*args)
        if self.intra_op_threads is not None:
            cap_intra_op_threads(self.intra_op_threads)
        return work(*args)

    def _paste_all(self, helpers: list[Any], backgrounds: list[np.ndarray | None]) -> list[Restored]:
        """Each frame's restored faces pasted onto its background (ParseNet masks them: the costly part).

        On the CPU, with several frames, every other frame is pasted on a
        second thread meanwhile, which is idle once the backgrounds are done.
        """
        pairs = list(zip(helpers, backgrounds, strict=True))
        if self.intra_op_threads is None or len(pairs) < 2:
            return self._on_cores(self._pasted_frames, pairs)
        odd_done = start_beside(lambda: self._on_cores(self._pasted_frames, pairs[1::2]), None)
        even = self._on_cores(self._pasted_frames, pairs[0::2])
        odd = odd_done()
        return [even[i // 2] if i % 2 == 0 else odd[i // 2] for i in range(len(pairs))]

    def _pasted_frames(self, pairs: list[tuple[Any, np.ndarray | None]]) -> list[Restored]:
        return [self._pasted_frame(helper, background) for helper, background in pairs]

    def _pasted_frame(self, helper: Any, background: np.ndarray | None) -> Restored:
        """A frame's restored faces, masked by ParseNet, blended into its background (as RGB)."""
        faces = helper.restored_faces
        # Autocast is per thread, so it is entered here, where ParseNet runs.
        with cpu_autocast("parser" in self.bf16_networks):
            masks = [soft_face_mask(self._parse(face)) for face in faces]
        background = background_for(helper.input_img, background, self.upscale)
        pasted = paste_faces(background, faces, masks, helper.inverse_affine_matrices, self.upscale)
        return Restored(cv2.cvtColor(pasted, cv2.COLOR_BGR2RGB), len(faces))

    def _parse(self, face_bgr: np.ndarray) -> Any:
        """ParseNet's logits for a restored 512x512 BGR face, its input made as facexlib makes it."""
        import torch
        from basicsr.utils import img2tensor
        from torchvision.transforms.functional import normalize

        face = img2tensor(face_bgr.astype(np.float32) / 255.0, bgr2rgb=True, float32=True)
        normalize(face, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), inplace=True)
        return self.networks.parser(torch.unsqueeze(face, 0).to(self.device))[0]

    def restore_batch(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [restored.pixels for restored in self.restore(frames)]

    def describe(self) -> dict[str, Any]:
        weights = {
            role: {"file": path.name, "sha256": file_sha256(path)}
            for role, path in self.paths.items()
            if path is not None
        }
        return {
            "restorer": self.name,
            "scale": self.upscale,
            "device": str(self.device),
            "precision": self.precision,
            "convolutions": "winograd (NNPACK) on one-thread shares" if self.winograd else "direct",
            "weights": weights,
        }

    def _alignable(self, faces: list[FaceDetection]) -> list[np.ndarray]:
        """Landmarks of the faces GFPGANer would restore (it skips faces with eyes too close together)."""
        return [
            np.asarray(face.landmarks, dtype=np.float32)
            for face in faces
            if face.landmarks is not None and (face.eye_distance or 0.0) >= self.eye_distance_threshold
        ]

    def _restore_faces(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Aligned 512x512 BGR crops → restored BGR faces, one GFPGAN forward per chunk of crops."""
        import torch
        from basicsr.utils import img2tensor, tensor2img
        from torchvision.transforms.functional import normalize

        restored: list[np.ndarray] = []
        for start in range(0, len(crops), self.max_faces_per_batch):
            chunk = crops[start : start + self.max_faces_per_batch]
            batch = torch.stack([img2tensor(crop / 255.0, bgr2rgb=True, float32=True) for crop in chunk])
            normalize(batch, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), inplace=True)
            # On a GPU GFPGAN stays in float32: its StyleGAN2 decoder degrades in half precision. bfloat16 keeps
            # float32's range, and its drift is small (see .precision).
            with cpu_autocast("face" in self.bf16_networks):
                output = self.networks.face(self._upload(batch), return_rgb=False, weight=GFPGAN_WEIGHT)[0]
            restored.extend(tensor2img(face, rgb2bgr=True, min_max=(-1, 1)).astype(np.uint8) for face in output)
        return restored

    def _upsample_backgrounds(self, frames: list[np.ndarray]) -> list[np.ndarray | None]:
        """Each frame's background (BGR, at the output size), equal-size frames sharing each forward."""
        net = self.networks.background
        if net is None:
            return [None] * len(frames)
        import torch

        backgrounds: list[np.ndarray | None] = [None] * len(frames)
        for indices in group_by_shape(frames).values():
            batch = torch.from_numpy(np.stack([frames[i] for i in indices]).astype(np.float32) / 255).permute(
                0, 3, 1, 2
            )
            batch = self._upload(batch)
            if self.device.type == "cuda":
                batch = batch.half()
            # Channels-last suits tensor cores and oneDNN's CPU convolutions alike (about 15 % faster on a CPU).
            batch = batch.contiguous(memory_format=torch.channels_last)
            with cpu_autocast("background" in self.bf16_networks):
                output = upsample_tiled(net, batch, REALESRGAN_X2PLUS_ARCH["scale"], self.bg_tile, self.bg_tile_pad)
            images = output.float().clamp_(0, 1).cpu().numpy().transpose(0, 2, 3, 1)
            for i, image in zip(indices, images, strict=True):
                backgrounds[i] = background_at_scale(image, frames[i].shape, self.upscale)
        return backgrounds

    def _upload(self, batch: Any) -> Any:
        if self.device.type == "cuda":
            # Pinned host memory lets the copy run asynchronously with the work already queued.
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch


def background_for(image_bgr: np.ndarray, background: np.ndarray | None, upscale: float) -> np.ndarray:
    """The background faces are pasted on: ``background`` at the output size, else the input upscaled by Lanczos."""
    height, width = image_bgr.shape[:2]
    size = (int(width * upscale), int(height * upscale))
    source = image_bgr if background is None else background
    if source.shape[1::-1] == size:
        return source
    return np.asarray(cv2.resize(source, size, interpolation=cv2.INTER_LANCZOS4))


def device_stream(stream: Any) -> Any:
    """``torch.cuda.stream(stream)`` on a GPU; nothing on the CPU."""
    if stream is None:
        return contextlib.nullcontext()
    import torch

    return torch.cuda.stream(stream)


@functools.cache
def face_helper_class() -> type:
    """facexlib's FaceRestoreHelper without its model loading, for one frame's faces.

    FaceRestoreHelper.__init__ loads (and may download) a detector and a
    parser for every instance; here detection comes from the restorer's
    detector and the paste-back is :mod:`.paste`'s, while alignment and
    inverse affine are facexlib's own methods. (Built on first use: facexlib
    is imported lazily.)
    """
    from facexlib.utils.face_restoration_helper import FaceRestoreHelper

    class FrameFaces(FaceRestoreHelper):  # type: ignore[misc]
        def __init__(self, upscale: float) -> None:
            # The state FaceRestoreHelper.__init__ sets for face_size=512, crop_ratio=(1, 1), use_parse=True.
            self.template_3points = False
            self.pad_blur = False
            self.upscale_factor = upscale
            self.crop_ratio = (1, 1)
            self.face_size = (FACE_SIZE, FACE_SIZE)
            self.face_template = FFHQ_TEMPLATE_512.copy()
            self.save_ext = "png"
            self.use_parse = True
            self.clean_all()

    return FrameFaces


def align_faces(image_bgr: np.ndarray, landmarks: list[np.ndarray], upscale: float) -> Any:
    """A facexlib helper holding ``image_bgr`` and its faces aligned to 512x512 crops."""
    helper = face_helper_class()(upscale)
    helper.read_image(image_bgr)
    for marks in landmarks:
        helper.all_landmarks_5.append(marks)
    helper.align_warp_face()
    return helper


def bgr(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)


def group_by_shape(frames: Sequence[np.ndarray]) -> dict[tuple[int, ...], list[int]]:
    """Indices of ``frames`` grouped by shape, in order of first appearance."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, frame in enumerate(frames):
        groups[frame.shape].append(i)
    return groups


def upsample_tiled(net: Any, images: Any, scale: int, tile: int, tile_pad: int) -> Any:
    """Real-ESRGAN inference on a batch of equal-size images, tile by tile, as RealESRGANer does it.

    Same steps as RealESRGANer's pre_process (with pre_pad=0), tile_process
    and post_process: reflect-pad to a multiple of the model's modulus, run
    ``tile``-pixel tiles with ``tile_pad`` pixels of context (0 = whole
    image), keep each tile's centre, crop the padding off. Every tile takes
    the whole batch in one forward.
    """
    import torch.nn.functional as F

    modulus = {2: 2, 1: 4}.get(scale, 1)
    _, _, height, width = images.shape
    pad_h, pad_w = (-height) % modulus, (-width) % modulus
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h), "reflect")
    output = net(images) if tile <= 0 else _tiled_forward(net, images, scale, tile, tile_pad)
    return output[:, :, : height * scale, : width * scale]


def _tiled_forward(net: Any, images: Any, scale: int, tile: int, tile_pad: int) -> Any:
    batch, channels, height, width = images.shape
    output = images.new_zeros((batch, channels, height * scale, width * scale))
    for y0 in range(0, math.ceil(height / tile) * tile, tile):
        for x0 in range(0, math.ceil(width / tile) * tile, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            py0, px0 = max(y0 - tile_pad, 0), max(x0 - tile_pad, 0)
            py1, px1 = min(y1 + tile_pad, height), min(x1 + tile_pad, width)
            out_tile = net(images[:, :, py0:py1, px0:px1])
            ty, tx = (y0 - py0) * scale, (x0 - px0) * scale
            output[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = out_tile[
                :, :, ty : ty + (y1 - y0) * scale, tx : tx + (x1 - x0) * scale
            ]
    return output


def background_at_scale(image_rgb: np.ndarray, input_shape: tuple[int, ...], upscale: float) -> np.ndarray:
    """A [0, 1] RGB float background → BGR uint8 at ``upscale`` times the input, as RealESRGANer.enhance ends."""
    image = (image_rgb[..., ::-1] * 255.0).round().astype(np.uint8)
    if upscale == float(REALESRGAN_X2PLUS_ARCH["scale"]):
        return np.ascontiguousarray(image)
    height, width = input_shape[:2]
    size = (int(width * upscale), int(height * upscale))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_LANCZOS4))


def load_networks(
    gfpgan_path: Path,
    realesrgan_path: Path | None,
    detection_path: Path | None,
    parsing_path: Path,
    device: Any,
) -> GfpganNetworks:
    """Build each network and load its weights (checked strictly against the architecture)."""
    import torch
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.parsenet import ParseNet
    from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean

    face = _loaded(lambda: GFPGANv1Clean(**GFPGAN_CLEAN_ARCH), gfpgan_path, "GFPGAN v1.3/v1.4 (clean)", device)
    parser = folded_norms(
        _loaded(lambda: ParseNet(in_size=512, out_size=512, parsing_ch=19), parsing_path, "ParseNet", device)
    )
    retinaface = None
    if detection_path is not None:
        retinaface = _loaded(
            lambda: RetinaFace(network_name="resnet50", half=False, device=device),
            detection_path,
            "RetinaFace ResNet-50",
            device,
            on_meta=False,  # its constructor moves it to ``device``, which a network without data cannot do
        )
    background = None
    if realesrgan_path is not None:
        background = _loaded(lambda: RRDBNet(**REALESRGAN_X2PLUS_ARCH), realesrgan_path, "Real-ESRGAN x2plus", device)
        if torch.device(device).type == "cuda":
            # Plain convolutions: half precision suits tensor cores. (On a CPU, bfloat16 is a choice of its own:
            # see .precision.)
            background = background.half()
        background = background.to(memory_format=torch.channels_last)
    # ParseNet is plain convolutions too.
    parser = ChannelsLast(parser.to(memory_format=torch.channels_last))
    if torch.device(device).type == "cpu":
        # Measured on a CPU only (4-8 % a face); GPU float32 convolutions are not always faster channels-last.
        face = ChannelsLast(channels_last_convolutions(face))
    return GfpganNetworks(face=face, parser=parser, retinaface=retinaface, background=background)


def folded_norms(parser: Any) -> Any:
    """facexlib's ParseNet, in place, with each batch norm folded into its convolution and each no-op step an identity.

    In eval mode a batch norm after a convolution is an affine map per
    channel, so it folds into the convolution's weights and bias (torch's
    ``fuse_conv_bn_eval``): one pass over the activations fewer per layer.
    facexlib's "none" norm and activation layers compute ``x * 1.0``, a copy
    of the activations each; an identity gives the same values without it.
    Results move by float rounding only (tests/test_restore_gfpgan.py).
    """
    import torch
    from facexlib.parsing.parsenet import ConvLayer
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for layer in parser.modules():
        if not isinstance(layer, ConvLayer):
            continue
        if isinstance(layer.norm.norm, torch.nn.BatchNorm2d):
            layer.conv2d = fuse_conv_bn_eval(layer.conv2d, layer.norm.norm)
            layer.norm.norm = torch.nn.Identity()
        elif layer.norm.norm_type == "none":
            layer.norm.norm = torch.nn.Identity()
        if not isinstance(layer.relu.func, torch.nn.Module):  # only "none" is a plain function (x * 1.0)
            layer.relu.func = torch.nn.Identity()
    return parser


def channels_last_convolutions(gfpgan: Any) -> Any:
    """GFPGAN with its convolution weights channels-last, in place, and its one layout-bound step kept working.

    The StyleGAN2 decoder's modulated weights are made per call (5-D, so
    the module as a whole cannot be converted), but its convolutions follow
    their input's layout. The one step that needs the contiguous layout is
    ``final_linear``'s flattening of ``final_conv``'s output with ``view``.
    """
    import torch

    for module in gfpgan.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.to(memory_format=torch.channels_last)
    gfpgan.final_conv.register_forward_hook(lambda _module, _inputs, output: output.contiguous())
    return gfpgan


class ChannelsLast:
    """A convolutional network fed channels-last input, called like the network itself (as facexlib calls it).

    oneDNN's CPU convolutions are about 15 % faster on channels-last
    tensors; the results differ from the contiguous layout's in the last
    float bits only (below 1e-5).
    """

    def __init__(self, net: Any) -> None:
        self.net = net

    def __call__(self, images: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        return self.net(images.contiguous(memory_format=torch.channels_last), *args, **kwargs)


def _loaded(build: Callable[[], Any], path: Path, what: str, device: Any, *, on_meta: bool = True) -> Any:
    """``build()``'s network holding the weights in ``path``, checked strictly against its architecture.

    ``on_meta``: the network is built without data (no memory, and none of
    the random initialisation that the weights replace: a second for GFPGAN)
    and takes the checkpoint's tensors themselves, mapped from the file, so
    start-up reads the file only as the network uses it.
    """
    import torch

    params = checkpoint_params(path, what)
    with torch.device("meta") if on_meta else contextlib.nullcontext():
        net = build()
    try:
        net.load_state_dict(params, strict=True, assign=on_meta)
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0]
        raise InputError(f"weights file {path} does not fit the {what} network: {first_line}") from None
    without_data = [
        name for name, tensor in itertools.chain(net.named_parameters(), net.named_buffers()) if tensor.is_meta
    ]
    if without_data:  # a tensor the checkpoint does not hold (a non-persistent buffer): build it the plain way
        return _loaded(build, path, what, device, on_meta=False)
    # float(): assigned tensors keep the file's dtype, where copying into the network's would have cast them.
    return net.float().eval().to(device)


def checkpoint_params(path: Path, what: str) -> dict[str, Any]:
    """The state dict in a checkpoint file: its ``params_ema`` (else ``params``), minus DataParallel prefixes."""
    try:
        state = _mapped_or_read(path)
    except FileNotFoundError:
        raise InputError(f"weights file {path} for {what} does not exist") from None
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise InputError(f"weights file {path} for {what} cannot be read: {type(err).__name__}: {err}") from None
    if not isinstance(state, dict):
        raise InputError(f"weights file {path} for {what} holds a {type(state).__name__}, not a state dict")
    for key in ("params_ema", "params"):
        if key in state and isinstance(state[key], dict):
            state = state[key]
            break
    return {name.removeprefix("module."): value for name, value in state.items()}


def _mapped_or_read(path: Path) -> Any:
    """``torch.load`` of ``path``, its tensors mapped from the file where its format allows (not the legacy one)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap can only be used" not in str(err):
            raise
    return torch.load(path, map_location="cpu", weights_only=True)


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
