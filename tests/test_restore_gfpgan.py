"""The batched GFPGAN restorer: batching, Real-ESRGAN tiling, and equivalence with GFPGAN's own GFPGANer."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from gifstream.restore.compat import install_torchvision_shim

install_torchvision_shim()
pytest.importorskip("gfpgan")
pytest.importorskip("realesrgan")

from basicsr.archs.rrdbnet_arch import RRDBNet  # noqa: E402
from realesrgan import RealESRGANer  # noqa: E402

from gifstream.engine import Frame, InputError, RunContext  # noqa: E402
from gifstream.restore import FaceDetection, GfpganNetworks, GfpganRestorer, RetinaFaceDetector  # noqa: E402
from gifstream.restore import gfpgan as gfpgan_module  # noqa: E402
from gifstream.restore.gfpgan import (  # noqa: E402
    GFPGAN_CLEAN_ARCH,
    REALESRGAN_X2PLUS_ARCH,
    background_at_scale,
    checkpoint_params,
    folded_norms,
    upsample_tiled,
)
from gifstream.stages.restore import RestoreConfig, RestoreStage  # noqa: E402
from gifstream.weights import get_entry, override_registry  # noqa: E402

pytestmark = pytest.mark.models


def face_at(cx: float, cy: float, eye_gap: float = 12.0) -> FaceDetection:
    """A frontal face centred at (cx, cy): five landmarks in the FFHQ template's proportions, and a box."""
    s = eye_gap / 126.0  # the 512-pixel template's eyes are 126 pixels apart
    template = np.array([[193.0, 240.0], [319.0, 240.0], [256.6, 314.0], [201.3, 371.4], [313.1, 371.2]])
    marks = (template - [256.0, 300.0]) * s + [cx, cy]
    box = (cx - 2.2 * eye_gap / 2, cy - 1.6 * eye_gap, cx + 2.2 * eye_gap / 2, cy + 1.6 * eye_gap)
    return FaceDetection(box, marks.astype(np.float32), 0.99)


# --- Stand-ins: the batching tests are about how work is grouped, so cheap networks replace the real ones. ---


class InvertingFaceNet(nn.Module):
    """Stand-in for GFPGANv1Clean: returns the negated input (an inverted face) and no side outputs."""

    def forward(self, x: torch.Tensor, return_rgb: bool = False, weight: float = 0.5) -> tuple[torch.Tensor, list]:
        return -x, []


class SkinEverywhereParser(nn.Module):
    """Stand-in for ParseNet: labels every pixel as skin (class 1), so the whole crop is pasted."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits = torch.zeros(x.shape[0], 19, x.shape[2], x.shape[3])
        logits[:, 1] = 1
        return logits, None


def forward_sizes(module: nn.Module) -> list[int]:
    """Batch sizes of every forward call ``module`` receives from now on."""
    sizes: list[int] = []
    module.register_forward_hook(lambda _module, args, _output: sizes.append(args[0].shape[0]))
    return sizes


@pytest.fixture
def standin_restorer(monkeypatch: pytest.MonkeyPatch):
    def build(max_faces_per_batch: int, faces_by_level: dict[int, list[FaceDetection]]) -> GfpganRestorer:
        networks = GfpganNetworks(
            face=InvertingFaceNet(), parser=SkinEverywhereParser(), background=nn.Upsample(scale_factor=2)
        )
        monkeypatch.setattr(gfpgan_module, "load_networks", lambda *args: networks)

        def detector(frames: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
            # Each test frame is one flat grey level; the level says which faces it holds.
            return [faces_by_level[int(frame[0, 0, 0])] for frame in frames]

        return GfpganRestorer(
            "unused-gfpgan.pth",
            "unused-realesrgan.pth",
            None,
            "unused-parsenet.pth",
            max_faces_per_batch=max_faces_per_batch,
            detector=detector,
        )

    return build


FACES_BY_LEVEL = {
    40: [face_at(18, 20), face_at(46, 42)],
    120: [],
    200: [face_at(16, 18), face_at(46, 20), face_at(32, 46)],
    90: [face_at(32, 24)],
}


def flat_frames() -> list[np.ndarray]:
    """Three 64x64 frames and one 48x64 frame, each a flat grey: six faces in all."""
    sizes_and_levels = [((64, 64), 40), ((64, 64), 120), ((64, 64), 200), ((48, 64), 90)]
    return [np.full((*size, 3), level, np.uint8) for size, level in sizes_and_levels]


@pytest.mark.parametrize(("max_faces", "expected_face_batches"), [(8, [6]), (4, [4, 2])])
def test_faces_of_all_frames_share_gfpgan_forwards(standin_restorer, max_faces: int, expected_face_batches) -> None:
    restorer = standin_restorer(max_faces, FACES_BY_LEVEL)
    face_batches = forward_sizes(restorer.networks.face)
    background_batches = forward_sizes(restorer.networks.background)

    results = restorer.restore(flat_frames())

    assert face_batches == expected_face_batches
    assert len(face_batches) == math.ceil(6 / max_faces)
    assert background_batches == [3, 1]  # the three 64x64 frames together, then the 48x64 one
    assert [r.faces for r in results] == [2, 0, 3, 1]
    assert [r.pixels.shape for r in results] == [(128, 128, 3)] * 3 + [(96, 128, 3)]


def test_each_restored_face_lands_in_its_own_frame(standin_restorer) -> None:
    results = standin_restorer(4, FACES_BY_LEVEL).restore(flat_frames())

    for frame, result in zip(flat_frames(), results, strict=True):
        level = int(frame[0, 0, 0])
        for face in FACES_BY_LEVEL[level]:
            nose_x, nose_y = face.landmarks[2]
            # The inverting stand-in turns grey g into 255 - g, the background (nearest 2x) keeps g.
            assert abs(int(result.pixels[round(2 * nose_y), round(2 * nose_x), 0]) - (255 - level)) <= 3
        if not FACES_BY_LEVEL[level]:
            assert np.all(result.pixels == level)


def test_repeated_frame_is_restored_once(standin_restorer) -> None:
    restorer = standin_restorer(8, FACES_BY_LEVEL)
    face_batches = forward_sizes(restorer.networks.face)
    a, b = np.full((64, 64, 3), 40, np.uint8), np.full((64, 64, 3), 90, np.uint8)

    results = restorer.restore([a, a.copy(), b])

    assert face_batches == [3]  # two faces of the first frame and one of the last, not five
    assert [r.reused for r in results] == [False, True, False]
    assert np.array_equal(results[0].pixels, results[1].pixels)


def test_paste_back_left_for_later_gives_what_restore_gives(standin_restorer) -> None:
    restorer = standin_restorer(4, FACES_BY_LEVEL)
    parser_threads: list[str] = []
    restorer.networks.parser.register_forward_hook(lambda *_: parser_threads.append(threading.current_thread().name))
    expected = restorer.restore(flat_frames())
    parser_threads.clear()

    pending = restorer.restore_faces(flat_frames())
    assert parser_threads == []  # nothing pasted yet
    finished: list = []
    paster = threading.Thread(target=lambda: finished.extend(item.finish() for item in pending), name="paster")
    paster.start()
    paster.join()

    assert [item.faces for item in pending] == [r.faces for r in expected] == [2, 0, 3, 1]
    for ours, theirs in zip(finished, expected, strict=True):
        assert np.array_equal(ours.pixels, theirs.pixels)
    assert set(parser_threads) == {"paster"}  # ParseNet ran where the paste-back was called, once per face
    assert len(parser_threads) == 6


def test_faces_gfpgan_would_skip_are_skipped(standin_restorer) -> None:
    tiny = face_at(32, 32, eye_gap=4)  # GFPGANer skips faces with eyes under 5 pixels apart
    no_landmarks = FaceDetection((10.0, 10.0, 30.0, 30.0))
    restorer = standin_restorer(8, {40: [tiny, no_landmarks, face_at(32, 30)]})
    face_batches = forward_sizes(restorer.networks.face)

    [result] = restorer.restore([np.full((64, 64, 3), 40, np.uint8)])

    assert face_batches == [1] and result.faces == 1


def test_background_tiles_match_realesrganer(tmp_path: Path) -> None:
    """Tiling of a batch (tile 16, pad 4, odd sizes) gives RealESRGANer's result for each frame, in fewer forwards."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    torch.save({"params_ema": net.state_dict()}, tmp_path / "tiny.pth")
    reference = RealESRGANer(
        scale=2, model_path=str(tmp_path / "tiny.pth"), model=net, tile=16, tile_pad=4, pre_pad=0, half=False
    )
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (37, 41, 3), dtype=np.uint8) for _ in range(2)]
    batch_sizes = forward_sizes(net)

    expected = [reference.enhance(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), outscale=2)[0] for f in frames]
    del batch_sizes[:]
    with torch.inference_mode():
        batch = torch.from_numpy(np.stack(frames).astype(np.float32) / 255).permute(0, 3, 1, 2)
        output = upsample_tiled(net, batch, 2, 16, 4).clamp_(0, 1).numpy().transpose(0, 2, 3, 1)
    got = [background_at_scale(image, frame.shape, 2) for image, frame in zip(output, frames, strict=True)]

    assert batch_sizes == [2] * 9  # 38x42 after padding to even: 3x3 tiles, each one forward for both frames
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.shape == theirs.shape == (74, 82, 3)
        # A batched convolution may round differently from a single one; one level is the most it could show.
        assert np.abs(mine.astype(int) - theirs.astype(int)).max() <= 1


# --- Equivalence with GFPGANer, with random-weight checkpoints in the release formats. ---


@pytest.fixture(scope="session")
def random_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Randomly initialised GFPGAN v1.3, Real-ESRGAN x2plus, RetinaFace and ParseNet files (about 600 MB)."""
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.parsenet import ParseNet
    from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean

    folder = tmp_path_factory.mktemp("random-weights")
    torch.manual_seed(0)
    files = {
        "gfpgan": ("GFPGANv1.3.pth", {"params_ema": GFPGANv1Clean(**GFPGAN_CLEAN_ARCH).state_dict()}),
        "realesrgan": ("RealESRGAN_x2plus.pth", {"params_ema": RRDBNet(**REALESRGAN_X2PLUS_ARCH).state_dict()}),
        "detection": ("detection_Resnet50_Final.pth", RetinaFace(network_name="resnet50", device="cpu").state_dict()),
        "parsing": ("parsing_parsenet.pth", ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict()),
    }
    paths = {}
    for role, (filename, state) in files.items():
        paths[role] = folder / filename
        torch.save(state, paths[role])
    return paths


@pytest.mark.slow
@pytest.mark.timeout(900)  # seconds of 512² convolutions; a loaded 2-core machine needs headroom
def test_batched_restorer_equals_gfpganer(random_checkpoints: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    from gfpgan import GFPGANer

    # GFPGANer looks for facexlib's files under ./gfpgan/weights by their release names.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gfpgan" / "weights").mkdir(parents=True)
    for role in ("detection", "parsing"):
        (tmp_path / "gfpgan" / "weights" / random_checkpoints[role].name).symlink_to(random_checkpoints[role])
    rng = np.random.default_rng(0)
    frame = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (64, 64), interpolation=cv2.INTER_CUBIC)
    face = face_at(32, 30, eye_gap=16)
    # RetinaFace with random weights reports junk; both sides get this one face instead.
    row = np.concatenate([face.box, [face.score], face.landmarks.ravel()]).astype(np.float32)[None]

    reference = GFPGANer(
        model_path=str(random_checkpoints["gfpgan"]),
        upscale=2,
        arch="clean",
        channel_multiplier=2,
        bg_upsampler=RealESRGANer(
            scale=2,
            model_path=str(random_checkpoints["realesrgan"]),
            model=RRDBNet(**REALESRGAN_X2PLUS_ARCH),
            tile=400,
            tile_pad=10,
            pre_pad=0,
            half=False,
        ),
    )
    monkeypatch.setattr(reference.face_helper.face_det, "detect_faces", lambda image, threshold: row)
    _, _, expected_bgr = reference.enhance(
        cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), has_aligned=False, only_center_face=False, paste_back=True
    )
    del reference

    restorer = GfpganRestorer(
        random_checkpoints["gfpgan"],
        random_checkpoints["realesrgan"],
        random_checkpoints["detection"],
        random_checkpoints["parsing"],
        precision="fp32",  # GFPGANer computes in float32; "auto" is bfloat16 on some CPUs
    )
    # The release-format RetinaFace file loaded and runs; its random-weight findings are junk, so swap it out.
    assert isinstance(restorer.detector, RetinaFaceDetector)
    assert all(isinstance(found, FaceDetection) for found in restorer.detector([frame])[0])
    restorer.detector = lambda frames: [[face] for _ in frames]
    [restored] = restorer.restore([frame])

    expected = cv2.cvtColor(expected_bgr, cv2.COLOR_BGR2RGB)
    assert restored.faces == 1
    assert restored.pixels.shape == expected.shape == (128, 128, 3)
    # The same networks on the same crops; the paste-back is gifstream's own (sampled in float64, where
    # warpAffine works in fixed point), so a value may differ by a level: 1 in 16,384 here.
    diff = restored.pixels.astype(int) - expected.astype(int)
    assert np.abs(diff).max() <= 2 and np.count_nonzero(diff) <= 0.002 * diff.size
    # The pasted face really changed the picture: it is not the background alone.
    assert not np.array_equal(restored.pixels, cv2.resize(frame, (128, 128), interpolation=cv2.INTER_LANCZOS4))
    weights = restorer.describe()["weights"]
    assert {role: w["file"] for role, w in weights.items()} == {role: p.name for role, p in random_checkpoints.items()}
    assert weights["gfpgan"]["sha256"] == hashlib.sha256(random_checkpoints["gfpgan"].read_bytes()).hexdigest()


def test_retinaface_rows_become_detections_from_bgr_input() -> None:
    seen: list[np.ndarray] = []

    class FakeRetinaFace:
        def detect_faces(self, image: np.ndarray, threshold: float) -> np.ndarray:
            seen.append(image)
            marks = [10, 20, 30, 20, 20, 30, 12, 40, 28, 40]
            return np.array([[5, 6, 35, 45, 0.99, *marks]], np.float32)

    frame = np.zeros((50, 40, 3), np.uint8)
    frame[..., 0] = 255  # pure red in RGB
    [[face]] = RetinaFaceDetector(FakeRetinaFace())([frame])

    assert seen[0][0, 0].tolist() == [0, 0, 255]  # RetinaFace gets BGR, as facexlib feeds it
    assert face.box == (5.0, 6.0, 35.0, 45.0) and face.score == pytest.approx(0.99)
    assert face.landmarks.tolist() == [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]]
    assert face.eye_distance == 20


def test_checkpoint_params_unwraps_release_formats(tmp_path: Path) -> None:
    weight = torch.ones(2)
    torch.save({"params_ema": {"a": weight}, "params": {"a": weight * 0}}, tmp_path / "ema.pth")
    torch.save({"module.a": weight}, tmp_path / "parallel.pth")
    assert torch.equal(checkpoint_params(tmp_path / "ema.pth", "test")["a"], weight)
    assert list(checkpoint_params(tmp_path / "parallel.pth", "test")) == ["a"]


def test_unreadable_or_foreign_weights_are_one_line_input_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"weights file .*broken\.pth for GFPGAN cannot be read"):
        checkpoint_params(tmp_path / "broken.pth", "GFPGAN")
    torch.save({"params_ema": {"weight": torch.zeros(1)}}, tmp_path / "foreign.pth")
    with pytest.raises(InputError, match=r"foreign\.pth does not fit the ParseNet network: Error") as err:
        gfpgan_module._loaded(lambda: nn.Linear(2, 2), tmp_path / "foreign.pth", "ParseNet", "cpu")
    assert "\n" not in str(err.value)


class WithScratchBuffer(nn.Module):
    """A network with a buffer its checkpoint does not hold (non-persistent), as some architectures have."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.register_buffer("offset", torch.full((1, 4, 1, 1), 0.5), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x)) + self.offset


@pytest.mark.parametrize("legacy_format", [False, True])
def test_networks_are_built_without_data_and_take_the_files_tensors(tmp_path: Path, legacy_format: bool) -> None:
    torch.manual_seed(0)
    original = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    original[1].running_mean.uniform_()
    path = tmp_path / "net.pth"
    # Stored in half precision: the loaded network is float32 all the same, as copying into it would make it.
    half = {name: value.half() if value.is_floating_point() else value for name, value in original.state_dict().items()}
    torch.save({"params_ema": half}, path, _use_new_zipfile_serialization=not legacy_format)

    loaded = gfpgan_module._loaded(lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), path, "test", "cpu")

    assert not loaded.training
    for name, value in loaded.state_dict().items():
        assert not value.is_meta and value.dtype == original.state_dict()[name].dtype
        assert torch.equal(value, original.state_dict()[name].half().to(value.dtype))


def test_parsenet_norms_fold_into_its_convolutions_and_its_output_stays() -> None:
    from facexlib.parsing.parsenet import ConvLayer, ParseNet

    torch.manual_seed(0)
    parser = ParseNet(in_size=64, out_size=64, parsing_ch=19)
    for norm in (module for module in parser.modules() if isinstance(module, nn.BatchNorm2d)):
        # Running statistics and affine terms far from the identity, as a trained network has them.
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.3, 3.0)
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-0.3, 0.3)
    parser.eval()
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        expected_mask, expected_image = parser(images)

    folded = folded_norms(copy.deepcopy(parser))
    with torch.inference_mode():
        mask, image = folded(images)

    assert not any(isinstance(module, nn.BatchNorm2d) for module in folded.modules())
    layers = [module for module in folded.modules() if isinstance(module, ConvLayer)]
    assert layers and all(isinstance(layer.norm.norm, nn.Module) for layer in layers)
    assert all(isinstance(layer.relu.func, nn.Module) for layer in layers)  # no x * 1.0 copies left
    for got, expected in ((mask, expected_mask), (image, expected_image)):
        span = float(expected.max() - expected.min())
        assert float((got - expected).abs().max()) <= 1e-5 * span


def test_a_buffer_the_file_lacks_makes_the_network_the_plain_way(tmp_path: Path) -> None:
    torch.manual_seed(0)
    original = WithScratchBuffer().eval()
    torch.save(original.state_dict(), tmp_path / "net.pth")
    loaded = gfpgan_module._loaded(WithScratchBuffer, tmp_path / "net.pth", "test", "cpu")
    assert not loaded.offset.is_meta
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(loaded(x), original(x))


@pytest.mark.slow
@pytest.mark.timeout(900)  # seconds of 512² convolutions; a loaded 2-core machine needs headroom
async def test_stage_builds_gfpgan_from_cached_weights(random_checkpoints: dict[str, Path], monkeypatch) -> None:
    """``auto`` with all four files in the weights folder runs GFPGAN, found through the weights registry."""
    roles = {
        "gfpgan_v1.3": "gfpgan",
        "realesrgan_x2plus": "realesrgan",
        "retinaface_resnet50": "detection",
        "parsenet": "parsing",
    }
    entries = {
        name: dataclasses.replace(get_entry(name), size=random_checkpoints[role].stat().st_size)
        for name, role in roles.items()
    }
    # Random RetinaFace weights find junk faces; this test is about the stage, so it finds none.
    monkeypatch.setattr(RetinaFaceDetector, "__call__", lambda self, frames: [[] for _ in frames])
    frame = np.full((16, 20, 3), 128, np.uint8)
    with override_registry(entries):
        stage = RestoreStage(RestoreConfig(restorer="auto", weights_dir=str(random_checkpoints["gfpgan"].parent)))
        await stage.setup(RunContext(device="cpu"))
        try:
            [out] = await stage.process([Frame(0, frame.copy(), alpha=np.full((16, 20), 255, np.uint8))], None)
        finally:
            await stage.close()

    assert out.pixels.shape == (32, 40, 3) and out.alpha.shape == (32, 40)
    assert out.meta["restore"]["restorer"] == "gfpgan" and out.meta["restore"]["faces"] == 0
    details = stage.describe()
    assert (details["restorer"], details["reason"]) == ("gfpgan", "GFPGAN weights cached")
    assert details["weights"]["parsing"]["file"] == "parsing_parsenet.pth"


@pytest.mark.slow
@pytest.mark.timeout(900)  # seconds of 512² convolutions; a loaded 2-core machine needs headroom
def test_a_gfpgan_run_pastes_faces_in_a_stage_of_its_own(random_checkpoints: dict[str, Path], tmp_path, monkeypatch):
    """``gifstream.process`` with GFPGAN: restore, then paste on its own stage; a held picture is pasted once."""
    from gifstream.api import process
    from gifstream.engine import StreamInfo
    from gifstream.io import open_sink
    from tests.helpers import read_gif, texture

    roles = {"gfpgan_v1.3": "gfpgan", "realesrgan_x2plus": "realesrgan", "retinaface_resnet50": "detection"}
    roles["parsenet"] = "parsing"
    entries = {
        name: dataclasses.replace(get_entry(name), size=random_checkpoints[role].stat().st_size)
        for name, role in roles.items()
    }
    bright = texture(64, 64, seed=3) // 2 + 100
    frames = [bright, bright.copy(), bright // 4]  # a face, the same picture held, then a darker one without
    face = face_at(32, 30, eye_gap=16)
    # RetinaFace with random weights finds junk: the bright pictures hold one face, the dark one none.
    monkeypatch.setattr(
        RetinaFaceDetector, "__call__", lambda self, batch: [[face] if f.mean() > 90 else [] for f in batch]
    )
    # Written by gifstream's own encoder: Pillow's would merge the held picture into one longer frame.
    sink = open_sink(tmp_path / "in.gif", format="gif")
    sink.open(StreamInfo(64, 64, "gif", loop=0))
    for index, (pixels, duration) in enumerate(zip(frames, [70, 80, 90], strict=True)):
        sink.write(Frame(index, pixels, duration_ms=duration))
    sink.finish()

    with override_registry(entries):
        report = process(
            tmp_path / "in.gif",
            tmp_path / "out.gif",
            restorer="gfpgan",
            weights_dir=str(random_checkpoints["gfpgan"].parent),
            flow="none",
            metrics=(),
            quiet=True,
        )

    out, durations, loop = read_gif(tmp_path / "out.gif")
    assert [s["name"] for s in report["stages"]] == ["restore", "paste"]
    assert report["stage_details"]["restore"]["faces"] == 2 and report["stage_details"]["restore"]["reused_frames"] == 1
    assert report["stage_details"]["paste"] == {"pasted": 2}  # the held picture copies the pasted one
    assert [f.shape for f in out] == [(128, 128, 3)] * 3 and durations == [70, 80, 90] and loop == 0
    assert np.array_equal(out[0], out[1])
    # The restored face (random weights: far from the input) was pasted onto the first picture's centre.
    centre = np.s_[48:80, 48:80]
    upscaled = cv2.resize(read_gif(tmp_path / "in.gif")[0][0], (128, 128), interpolation=cv2.INTER_LANCZOS4)
    assert np.abs(out[0][centre].astype(int) - upscaled[centre]).mean() > 10
