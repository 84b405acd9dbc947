"""Micro-benchmarks of the per-frame hot paths, at the offline preset's size (480x270 in, 960x540 out).

    .venv/bin/python -m pytest bench/test_micro.py --benchmark-only
    .venv/bin/python -m pytest bench/test_micro.py --benchmark-only --benchmark-save=before   # then, after a change:
    .venv/bin/python -m pytest bench/test_micro.py --benchmark-only --benchmark-compare

Each benchmark also checks its result (shape, or agreement with the
reference implementation it replaces), so a fast wrong answer fails.
Where a path replaced a reference implementation (torch's grid_sample,
scikit-image's PSNR), both are measured side by side.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from gifstream.benchmark import synthetic_frames, write_gif
from gifstream.engine import Frame, StreamInfo

SIZE = (480, 270)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [frame.pixels for frame in synthetic_frames(4, SIZE)]


@pytest.fixture(scope="module")
def outputs(frames: list[np.ndarray]) -> list[np.ndarray]:
    from gifstream.restore import ClassicRestorer

    return [restored.pixels for restored in ClassicRestorer(2).restore(frames)]


@pytest.fixture(scope="module")
def flows(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from gifstream.motion import DisFlow

    forward, backward = DisFlow().both_ways([frames[1]], [frames[2]])
    return forward[0], backward[0]


@pytest.fixture(scope="module")
def gif_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("micro") / "input.gif"
    write_gif(path, synthetic_frames(10, SIZE), 10)
    return path


# --------------------------------------------------------------------------- decode and encode


def test_decode_gif_10_frames(benchmark, gif_file: Path) -> None:
    from gifstream.io import open_source

    def decode() -> int:
        source = open_source(gif_file)
        source.open()
        count = sum(1 for _ in source.frames())
        source.close()
        return count

    assert benchmark(decode) == 10


def test_encode_gif_960x540_frame(benchmark, outputs: list[np.ndarray]) -> None:
    from gifstream.io.gif import GifOptions, GifSink

    buffer = io.BytesIO()
    sink = GifSink(buffer, GifOptions())
    height, width = outputs[0].shape[:2]
    sink.open(StreamInfo(width=width, height=height, format="gif", loop=0))
    index = iter(range(10**9))

    def write() -> None:
        i = next(index)
        sink.write(Frame(i, outputs[i % len(outputs)], duration_ms=80.0))

    benchmark(write)
    sink.finish()
    assert buffer.getvalue()[:6] == b"GIF89a"


# --------------------------------------------------------------------------- warp


def test_warp_8_planes_sampler(benchmark, frames, outputs, flows) -> None:
    """Both frames t+1 and the backward flow read at x + F(x), as the E_warp metric does each frame."""
    from gifstream.metrics import match_geometry
    from gifstream.motion.warp import FlowSampler

    forward, backward = flows
    stacked = np.concatenate([frames[2], match_geometry(frames[2], outputs[2])], axis=2)

    def warp() -> tuple[np.ndarray, np.ndarray]:
        sampler = FlowSampler(forward)
        return sampler.warp_planes(stacked), sampler.warp_planes(backward)

    planes, backward_at_t = benchmark(warp)
    assert planes.shape == (6, SIZE[1], SIZE[0]) and backward_at_t.shape == (2, SIZE[1], SIZE[0])


def test_warp_8_planes_torch_grid_sample_reference(benchmark, frames, outputs, flows) -> None:
    """The same reads through torch's grid_sample (one thread), which gifstream's sampler agrees with."""
    torch = pytest.importorskip("torch")
    from gifstream.metrics import match_geometry
    from gifstream.motion.warp import FlowSampler, warp_tensor

    torch.set_num_threads(1)
    forward, backward = flows
    stacked = np.concatenate([frames[2], match_geometry(frames[2], outputs[2]), backward], axis=2).astype(np.float32)
    image = torch.from_numpy(np.ascontiguousarray(stacked.transpose(2, 0, 1)))[None]
    flow = torch.from_numpy(np.ascontiguousarray(forward.transpose(2, 0, 1)))[None]

    def warp() -> torch.Tensor:
        with torch.inference_mode():
            return warp_tensor(image, flow)

    reference = benchmark(warp)[0].numpy()
    mine = FlowSampler(forward).warp_planes(stacked)
    np.testing.assert_allclose(mine, reference, atol=2e-3)  # uint8-scale values: agreement to 1/500 of a level


def test_stabilize_frame_960x540(benchmark, frames, outputs, flows) -> None:
    """One frame of --stabilize: the input's warp error, the blend weights, the previous output carried along
    the motion (960x540) and the blend."""
    from gifstream.stabilize.blend import StabilizeConfig, stabilize_frame

    inputs, settings = (frames[1], frames[2], flows), StabilizeConfig()
    result = benchmark(stabilize_frame, outputs[2], outputs[1], *inputs, settings)
    assert result.pixels.shape == outputs[2].shape and not result.cut and result.blend > 0


# --------------------------------------------------------------------------- metrics


def test_psnr(benchmark, frames, outputs) -> None:
    from skimage.metrics import peak_signal_noise_ratio

    from gifstream.metrics import match_geometry, psnr

    reference, test = frames[1], match_geometry(frames[1], outputs[1])
    assert benchmark(psnr, reference, test) == peak_signal_noise_ratio(reference, test, data_range=255)


def test_psnr_scikit_image_reference(benchmark, frames, outputs) -> None:
    from skimage.metrics import peak_signal_noise_ratio

    from gifstream.metrics import match_geometry

    reference, test = frames[1], match_geometry(frames[1], outputs[1])
    assert benchmark(peak_signal_noise_ratio, reference, test, data_range=255) > 20


def test_ssim(benchmark, frames, outputs) -> None:
    from gifstream.metrics import match_geometry, ssim

    value = benchmark(ssim, frames[1], match_geometry(frames[1], outputs[1]))
    assert 0.5 < value < 1


def test_ssim_scikit_image_float64_reference(benchmark, frames, outputs) -> None:
    """scikit-image on the uint8 frames as they are (it computes in float64); gifstream's ssim passes float32."""
    from skimage.metrics import structural_similarity

    from gifstream.metrics import match_geometry, ssim

    reference, test = frames[1], match_geometry(frames[1], outputs[1])
    value = benchmark(structural_similarity, reference, test, data_range=255, channel_axis=2)
    assert abs(value - ssim(reference, test)) < 1e-6


def test_warp_error_pair(benchmark, frames, outputs, flows) -> None:
    from gifstream.metrics import warp_error_pair

    pair = benchmark(warp_error_pair, frames[1], frames[2], outputs[1], outputs[2], *flows)
    assert 0 < pair.input < 0.05 and 0 < pair.output < 0.05


def test_metrics_stage_frame(benchmark, frames, outputs, flows) -> None:
    """One frame through the metrics stage of the offline preset (PSNR, SSIM, E_warp), thread hop excluded."""
    from gifstream.engine import RunContext
    from gifstream.stages.analysis import MetricsConfig, MetricsStage

    stage = MetricsStage(MetricsConfig(metrics=("psnr", "ssim", "e_warp")))
    stage.setup_sync(RunContext())
    previous = Frame(1, outputs[1], source=frames[1])
    previous.meta["metrics"] = {}

    def measure() -> dict[str, float]:
        frame = Frame(2, outputs[2], source=frames[2])
        frame.meta["flow"] = flows
        return stage.process_sync([frame], previous)[0].meta["metrics"]

    values = benchmark(measure)
    stage.close_sync()
    assert set(values) == {"psnr", "ssim", "e_warp", "e_warp_input", "e_warp_ratio"}


# --------------------------------------------------------------------------- flow and restore


def test_dis_flow_both_ways(benchmark, frames) -> None:
    from gifstream.motion import DisFlow

    dis = DisFlow()
    forward, backward = benchmark(dis.both_ways, [frames[1]], [frames[2]])
    assert forward[0].shape == backward[0].shape == (SIZE[1], SIZE[0], 2)


def test_cascade_detection(benchmark, frames) -> None:
    from gifstream.restore import CascadeFaceDetector

    detector = CascadeFaceDetector()
    assert len(benchmark(detector, [frames[1]])[0]) >= 1  # the astronaut's face


def test_classic_restore_frame(benchmark, frames) -> None:
    from gifstream.restore import ClassicRestorer

    restorer = ClassicRestorer(2)
    [restored] = benchmark(restorer.restore, [frames[1]])
    assert restored.pixels.shape == (2 * SIZE[1], 2 * SIZE[0], 3) and restored.faces >= 1


@pytest.mark.parametrize("way", ["facexlib_reference", "torch"])
def test_gfpgan_paste_back_960x540(benchmark, frames, way: str) -> None:
    """One restored face's paste-back onto a 960x540 background, ParseNet's forward excluded (a stand-in).

    ``facexlib_reference``: FaceRestoreHelper.paste_faces_to_input_image,
    as GFPGANer does it; ``torch``: gifstream.restore.paste, as the GFPGAN
    restorer does it. Both from the parser's logits to the pasted frame.
    """
    torch = pytest.importorskip("torch")
    from gifstream.restore.compat import model_libraries_missing

    if model_libraries_missing():
        pytest.skip("the GFPGAN libraries are not installed")
    import cv2

    from gifstream.benchmark import TemplateLandmarks
    from gifstream.restore.gfpgan import align_faces, bgr
    from gifstream.restore.paste import paste_faces, soft_face_mask

    # Skin in an ellipse, background around: a face-like mask, as ParseNet's channels-last output.
    yy, xx = np.mgrid[:512, :512]
    classes = torch.from_numpy((((xx - 256) / 170) ** 2 + ((yy - 280) / 220) ** 2 < 1).astype(np.int64))
    logits = torch.nn.functional.one_hot(classes, 19).permute(2, 0, 1)[None].float()
    logits = logits.contiguous(memory_format=torch.channels_last)

    [faces] = TemplateLandmarks()([frames[1]])
    background = cv2.resize(bgr(frames[1]), (2 * SIZE[0], 2 * SIZE[1]), interpolation=cv2.INTER_LANCZOS4)
    helper = align_faces(bgr(frames[1]), [face.landmarks for face in faces], 2)
    helper.face_parse, helper.device = lambda images: (logits, None), "cpu"
    for crop in helper.cropped_faces:
        helper.add_restored_face(255 - crop)
    helper.get_inverse_affine(None)
    affines = [matrix.copy() for matrix in helper.inverse_affine_matrices]

    def facexlib_paste() -> np.ndarray:
        helper.inverse_affine_matrices = [matrix.copy() for matrix in affines]  # it shifts them in place
        return helper.paste_faces_to_input_image(upsample_img=background)

    def torch_paste() -> np.ndarray:
        masks = [soft_face_mask(logits) for _ in helper.restored_faces]
        return paste_faces(background, helper.restored_faces, masks, affines, 2)

    with torch.inference_mode():
        pasted = benchmark(facexlib_paste if way == "facexlib_reference" else torch_paste)
        other = (torch_paste if way == "facexlib_reference" else facexlib_paste)()
    assert pasted.shape == background.shape and not np.array_equal(pasted, background)
    assert np.abs(pasted.astype(int) - other).max() <= 2


@pytest.mark.parametrize("copy", ["decoder_rgb_canvas", "decoder_rgba_canvas", "restorer_output"])
def test_frame_copies(benchmark, frames, outputs, copy: str) -> None:
    """The frame-sized copies on the offline path (the lever "avoiding copies"): what taking them out would save."""
    from gifstream.io.gif import split_canvas

    if copy == "restorer_output":  # the classic restorer's upscaled frame, made writable before faces are blended in
        source = outputs[0]
        result = benchmark(np.array, source)
    else:  # a decoded GIF canvas made into a writable frame (with transparency: colour and alpha split apart)
        has_alpha = copy == "decoder_rgba_canvas"
        source = np.dstack([frames[0], np.full(SIZE[::-1], 200, np.uint8)]) if has_alpha else frames[0]
        source.flags.writeable = False  # as Pillow's buffer is
        result, alpha = benchmark(split_canvas, source, has_alpha)
        assert alpha is None if not has_alpha else (alpha.flags.writeable and np.all(alpha == 200))
    assert np.array_equal(result, source[..., :3]) and result.flags.writeable and result.flags.c_contiguous
