"""GFPGAN's paste-back in torch (gifstream.restore.paste) against facexlib's own paste_faces_to_input_image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gifstream.restore.compat import install_torchvision_shim

install_torchvision_shim()
pytest.importorskip("facexlib")

from gifstream.restore.gfpgan import FFHQ_TEMPLATE_512, align_faces  # noqa: E402
from gifstream.restore.paste import (  # noqa: E402
    FACE_CLASSES,
    MASK_BORDER,
    PasteShapeError,
    mirrored_gaussian,
    paste_faces,
    soft_face_mask,
)

HAIR, NECKLACE, LEFT_EYE = 17, 14, 4


def class_map(size: int = 512) -> np.ndarray:
    """ParseNet-like classes: face skin in an ellipse, an eye, hair above, a neck-lace below, background around."""
    yy, xx = np.mgrid[:size, :size] * (512 / size)
    classes = np.zeros((size, size), np.int64)
    classes[((xx - 256) / 170) ** 2 + ((yy - 280) / 220) ** 2 < 1] = 1
    classes[(np.abs(yy - 240) < 20) & (np.abs(xx - 200) < 30)] = LEFT_EYE
    classes[(yy < 120) & (np.abs(xx - 256) < 200)] = HAIR
    classes[(yy > 430) & (np.abs(xx - 256) < 60)] = NECKLACE
    return classes


def logits_for(classes: np.ndarray) -> torch.Tensor:
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(classes), len(FACE_CLASSES)).permute(2, 0, 1).float()
    return one_hot[None].contiguous(memory_format=torch.channels_last)  # as ParseNet's output is here


def stand_in_parser(images: torch.Tensor) -> tuple[torch.Tensor, None]:
    """Called as facexlib calls ParseNet: (N, 3, 512, 512) in, (logits, image) out."""
    return logits_for(class_map()).repeat(images.shape[0], 1, 1, 1), None


def landmarks(scale: float, dx: float, dy: float, degrees: float = 0.0) -> np.ndarray:
    angle = np.deg2rad(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return ((FFHQ_TEMPLATE_512 - 256) @ rotation.T * scale + [dx, dy]).astype(np.float32)


def scene(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def facexlib_and_ours(
    image: np.ndarray, marks: list[np.ndarray], upscale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(facexlib's paste, ours, the background) for ``marks``' faces restored as the crops' negatives."""
    helper = align_faces(image, marks, upscale)
    helper.face_parse, helper.device = stand_in_parser, "cpu"
    for crop in helper.cropped_faces:
        helper.add_restored_face(255 - crop)
    helper.get_inverse_affine(None)
    affines = [matrix.copy() for matrix in helper.inverse_affine_matrices]  # facexlib shifts them in place
    height, width = image.shape[:2]
    size = (int(width * upscale), int(height * upscale))
    background = cv2.resize(image, size, interpolation=cv2.INTER_LANCZOS4)
    theirs = helper.paste_faces_to_input_image(upsample_img=background)
    masks = [soft_face_mask(stand_in_parser(torch.zeros(1, 3, 512, 512))[0]) for _ in helper.restored_faces]
    ours = paste_faces(background, helper.restored_faces, masks, affines, upscale)
    return theirs, ours, background


def test_one_matrix_blurs_as_opencv_does() -> None:
    image = np.random.default_rng(0).random((160, 160)) * 255
    blur = mirrored_gaussian(160)
    expected = cv2.GaussianBlur(image, (101, 101), 11)
    assert np.allclose(blur @ image @ blur.T, expected, atol=1e-9)
    assert np.allclose(blur.sum(axis=1), 1)  # folding the mirrored taps back keeps every row's weight


def test_soft_mask_keeps_face_parts_and_drops_the_rest() -> None:
    mask = soft_face_mask(logits_for(class_map())).numpy()
    assert mask.shape == (512, 512) and mask.dtype == np.float64
    assert mask.min() >= 0 and mask.max() <= 1 + 1e-6
    border = np.ones((512, 512), bool)
    border[MASK_BORDER:-MASK_BORDER, MASK_BORDER:-MASK_BORDER] = False
    assert np.all(mask[border] == 0)
    assert mask[300, 256] > 0.99  # deep in the skin
    assert mask[240, 200] > 0.9  # the eye counts as face
    assert mask[40, 256] < 0.01 and mask[500, 256] < 0.05  # hair and neck-lace do not


def test_soft_mask_is_float64_under_bf16_autocast() -> None:
    logits = logits_for(class_map())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_autocast = soft_face_mask(logits)
    assert in_autocast.dtype == torch.float64
    assert torch.allclose(in_autocast, soft_face_mask(logits), atol=1e-6)


@pytest.mark.parametrize(
    ("size", "faces", "upscale"),
    [
        ((96, 80), [(0.12, 48, 40, 0)], 2),
        ((96, 80), [(0.12, 40, 40, 10), (0.1, 58, 36, -15)], 2),  # overlapping: the second blends over the first
        ((96, 80), [(0.14, 12, 70, 5)], 2),  # half outside the frame
        ((64, 48), [(0.08, 30, 24, 0)], 1),
        ((64, 48), [(0.08, 30, 24, 20)], 3),
    ],
    ids=["one", "overlapping", "at-the-edge", "upscale-1", "upscale-3"],
)
def test_paste_matches_facexlib(size: tuple[int, int], faces: list[tuple[float, ...]], upscale: float) -> None:
    image = scene(*size)
    theirs, ours, background = facexlib_and_ours(image, [landmarks(*face) for face in faces], upscale)
    assert ours.shape == theirs.shape == background.shape and ours.dtype == np.uint8
    # The faces really were pasted (they are the crops' negatives) ...
    assert np.count_nonzero(np.any(theirs != background, axis=-1)) > 0.05 * background.shape[0] * background.shape[1]
    # ... and both agree but for facexlib's warp, which works in fixed point (to 1/32 pixel): a level here
    # and there (1-2 % of the values in these small frames, where 512x512 faces shrink to 50 pixels).
    difference = ours.astype(int) - theirs.astype(int)
    assert np.abs(difference).max() <= 2
    assert np.count_nonzero(difference) < 0.04 * difference.size
    assert abs(difference.mean()) < 0.03


def test_paste_leaves_its_inputs_alone_and_repeats_exactly() -> None:
    image = scene(96, 80)
    helper = align_faces(image, [landmarks(0.12, 48, 40)], 2)
    helper.add_restored_face(255 - helper.cropped_faces[0])
    helper.get_inverse_affine(None)
    background = cv2.resize(image, (192, 160), interpolation=cv2.INTER_LANCZOS4)
    kept_background, kept_affine = background.copy(), helper.inverse_affine_matrices[0].copy()
    mask = soft_face_mask(logits_for(class_map()))
    first = paste_faces(background, helper.restored_faces, [mask], helper.inverse_affine_matrices, 2)
    second = paste_faces(background, helper.restored_faces, [mask], helper.inverse_affine_matrices, 2)
    assert np.array_equal(first, second) and not np.array_equal(first, background)
    assert np.array_equal(background, kept_background)
    assert np.array_equal(helper.inverse_affine_matrices[0], kept_affine)


def test_a_face_outside_the_frame_changes_nothing() -> None:
    background = scene(96, 80)
    face = np.full((512, 512, 3), 255, np.uint8)
    far_away = np.array([[0.1, 0, 500], [0, 0.1, 500]])
    mask = torch.ones(512, 512)
    assert np.array_equal(paste_faces(background, [face], [mask], [far_away], 1), background)


def test_wrong_shapes_raise_typed_errors() -> None:
    background = scene(96, 80)
    face = np.zeros((512, 512, 3), np.uint8)
    affine = np.array([[0.1, 0, 10], [0, 0.1, 10]])
    with pytest.raises(PasteShapeError, match=r"\(1, 19, S, S\)"):
        soft_face_mask(torch.zeros(1, 3, 512, 512))
    with pytest.raises(ValueError, match="1 faces, 0 masks"):  # PasteShapeError is a ValueError too
        paste_faces(background, [face], [], [affine], 1)
    with pytest.raises(PasteShapeError, match="do not match"):
        paste_faces(background, [face], [torch.ones(256, 256)], [affine], 1)
    with pytest.raises(PasteShapeError, match="background"):
        paste_faces(background[..., 0], [face], [torch.ones(512, 512)], [affine], 1)
