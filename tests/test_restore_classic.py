"""The offline classic restorer and the plain Lanczos restorer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from gifstream.engine import InputError
from gifstream.restore import CascadeFaceDetector, ClassicRestorer, FaceDetection, LanczosRestorer

# In skimage.data.astronaut() (512x512) Eileen Collins' eyes are at about y=100 and her mouth at
# y=140, between x=190 and x=255: this point between eyes and nose lies inside any box around her face.
ASTRONAUT_FACE_POINT = (222, 112)  # (x, y)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def detections(astronaut: np.ndarray) -> list[FaceDetection]:
    return CascadeFaceDetector()([astronaut])[0]


def lanczos(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def laplacian_variance(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_cascade_finds_the_astronauts_face_where_it_is(detections: list[FaceDetection]) -> None:
    x, y = ASTRONAUT_FACE_POINT
    around = [d for d in detections if d.box[0] < x < d.box[2] and d.box[1] < y < d.box[3]]
    assert len(around) == 1
    x0, y0, x1, y1 = around[0].box
    assert 50 < x1 - x0 < 200 and 50 < y1 - y0 < 200  # a face, not the whole picture
    assert around[0].landmarks is None


def test_output_is_exactly_scale_times_the_input() -> None:
    frame = np.full((60, 100, 3), 90, np.uint8)
    assert ClassicRestorer(scale=2).restore_batch([frame])[0].shape == (120, 200, 3)
    assert ClassicRestorer(scale=1.5).restore_batch([frame])[0].shape == (90, 150, 3)
    assert LanczosRestorer(scale=3).restore_batch([frame])[0].shape == (180, 300, 3)


def test_face_is_sharper_than_lanczos_and_the_rest_is_exactly_lanczos(
    astronaut: np.ndarray, detections: list[FaceDetection]
) -> None:
    restored = ClassicRestorer(scale=2, detector=lambda frames: [detections]).restore([astronaut])[0]
    plain = lanczos(astronaut, (1024, 1024))
    assert restored.faces == len(detections) >= 1
    assert restored.pixels.shape == plain.shape and restored.pixels.dtype == np.uint8

    touched = np.zeros(plain.shape[:2], bool)
    for face in detections:
        x0, y0, x1, y1 = (2 * v for v in face.box)
        inner = (slice(int(y0), int(y1)), slice(int(x0), int(x1)))
        assert laplacian_variance(restored.pixels[inner]) > 1.2 * laplacian_variance(plain[inner])
        # The treatment may reach a little beyond the box (feathered ellipse), never a box-width away.
        w, h = x1 - x0, y1 - y0
        touched[max(0, int(y0 - h)) : int(y1 + h), max(0, int(x0 - w)) : int(x1 + w)] = True
    assert np.array_equal(restored.pixels[~touched], plain[~touched])
    assert not np.array_equal(restored.pixels[touched], plain[touched])


def test_frame_without_faces_is_the_plain_lanczos_upscale() -> None:
    rng = np.random.default_rng(3)
    frame = cv2.resize(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8), (80, 64), interpolation=cv2.INTER_CUBIC)
    restored = ClassicRestorer(scale=2).restore([frame])[0]
    assert restored.faces == 0
    assert np.array_equal(restored.pixels, lanczos(frame, (160, 128)))


def test_repeated_frame_is_detected_once_and_reuses_the_output(astronaut: np.ndarray) -> None:
    small = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    other = small[::-1].copy()
    seen: list[int] = []

    def one_face(frames: list[np.ndarray]) -> list[list[FaceDetection]]:
        seen.append(len(frames))
        return [[FaceDetection((40.0, 16.0, 72.0, 48.0))] for _ in frames]

    results = ClassicRestorer(detector=one_face).restore([small, small.copy(), other])
    assert seen == [2]
    assert [r.reused for r in results] == [False, True, False]
    assert np.array_equal(results[0].pixels, results[1].pixels)
    assert results[1].faces == 1
    assert results[0].pixels is not results[1].pixels


def test_input_frame_is_not_modified(astronaut: np.ndarray, detections: list[FaceDetection]) -> None:
    frame = astronaut.copy()
    ClassicRestorer(scale=1, detector=lambda frames: [detections]).restore([frame])
    assert np.array_equal(frame, astronaut)


def test_non_rgb_input_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"restorer input 0: expected an \(H, W, 3\) uint8 RGB array"):
        ClassicRestorer().restore([np.zeros((8, 8), np.uint8)])


@pytest.mark.shared
def test_cascade_finds_each_face_of_a_real_gif_grid(shared_testdata) -> None:
    # The first frame of this GIF shows six portrait tiles, about 115 pixels each, in three columns
    # (x ~95-210, 250-365, 400-510) and two rows (y ~45-160, 185-300) on black.
    with Image.open(shared_testdata / "faces-animated" / "davs_demo_human.gif") as gif:
        frame = np.asarray(gif.convert("RGB"))
    tiles = [(x0, y0, x0 + 115, y0 + 115) for y0 in (45, 185) for x0 in (95, 250, 400)]

    faces = CascadeFaceDetector()([frame])[0]

    centres = [((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2) for f in faces]
    for x0, y0, x1, y1 in tiles:
        assert sum(x0 < cx < x1 and y0 < cy < y1 for cx, cy in centres) == 1
    assert len(faces) == 6
