"""Flow-guided temporal blending: flicker falls, cuts reset, pans and occlusions come through unblended."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from gifstream.engine.errors import ConfigError, InputError
from gifstream.metrics import psnr, warp_error_pair
from gifstream.motion import DisFlow
from gifstream.stabilize import StabilizeConfig, blend_weights, input_warp_error, stabilize_frame

Flows = tuple[np.ndarray, np.ndarray]


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture: every patch distinct, so flow and warping are well defined."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 215 + 20
    return np.rint(smooth).astype(np.uint8)


def constant_flow(height: int, width: int, u: float, v: float) -> np.ndarray:
    flow = np.empty((height, width, 2), np.float32)
    flow[..., 0] = u
    flow[..., 1] = v
    return flow


def flicker(frames: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """Per-frame brightness/colour offsets and noise, zero-mean, as per-frame restoration adds them."""
    rng = np.random.default_rng(seed)
    out = []
    for frame in frames:
        shifted = frame.astype(np.float32) + rng.uniform(-8, 8) + rng.uniform(-4, 4, 3)
        shifted += rng.normal(0, 3, frame.shape)
        out.append(np.clip(np.rint(shifted), 0, 255).astype(np.uint8))
    return out


def run(
    inputs: list[np.ndarray], restored: list[np.ndarray], flows: list[Flows | None], config: StabilizeConfig
) -> list[np.ndarray]:
    outputs: list[np.ndarray] = []
    for i, (frame_in, frame_out, flow) in enumerate(zip(inputs, restored, flows, strict=True)):
        result = stabilize_frame(
            frame_out, outputs[-1] if outputs else None, inputs[i - 1] if i else None, frame_in, flow, config
        )
        outputs.append(result.pixels)
    return outputs


def dis_flows(frames: list[np.ndarray]) -> list[Flows | None]:
    """(F(t−1→t), B(t→t−1)) per frame, as the flow stage attaches them."""
    dis = DisFlow("medium")
    return [None, *((dis(a, b), dis(b, a)) for a, b in itertools.pairwise(frames))]


def mean_e_warp(clean: list[np.ndarray], frames: list[np.ndarray], flows: list[Flows | None]) -> float:
    return float(
        np.mean(
            [
                warp_error_pair(clean[i - 1], clean[i], frames[i - 1], frames[i], *flow).output
                for i, flow in enumerate(flows)
                if flow is not None
            ]
        )
    )


def mean_psnr(clean: list[np.ndarray], frames: list[np.ndarray]) -> float:
    return float(np.mean([psnr(c, f) for c, f in zip(clean, frames, strict=True)]))


# --- the blend itself --------------------------------------------------------------------------


def test_blend_is_the_weighted_mean_of_restored_and_the_previous_output_moved_along_the_input() -> None:
    height, width, shift = 32, 40, 3
    input_prev = texture(height, width, seed=1)
    input_cur = np.roll(input_prev, shift, axis=1)  # the scene moves right: cur(x) = prev(x − 3)
    flows = (constant_flow(height, width, shift, 0), constant_flow(height, width, -shift, 0))
    previous_output = texture(height, width, seed=2)
    restored = texture(height, width, seed=3)

    result = stabilize_frame(restored, previous_output, input_prev, input_cur, flows, StabilizeConfig(strength=0.5))

    # Away from the left columns (which B sends outside the frame), the input is predicted
    # exactly, so the weight is the full strength and the previous output moves with the scene.
    # (±1 grey level: halves round either way.)
    expected = 0.5 * restored + 0.5 * np.roll(previous_output, shift, axis=1)
    np.testing.assert_allclose(result.pixels[:, 8:], expected[:, 8:], atol=1)
    # Pixels whose backward flow leaves the frame have no previous pixel: restored as is.
    np.testing.assert_array_equal(result.pixels[:, :shift], restored[:, :shift])
    assert not result.cut


def test_upscaled_output_is_blended_with_the_flow_resized_and_its_vectors_scaled() -> None:
    height, width, shift = 24, 32, 2
    input_prev = texture(height, width, seed=4)
    input_cur = np.roll(input_prev, shift, axis=1)
    flows = (constant_flow(height, width, shift, 0), constant_flow(height, width, -shift, 0))
    previous_output = texture(2 * height, 2 * width, seed=5)  # restoration upscaled 2x
    restored = texture(2 * height, 2 * width, seed=6)

    result = stabilize_frame(restored, previous_output, input_prev, input_cur, flows, StabilizeConfig(strength=0.5))

    # At twice the size the motion is twice as long: 4 output pixels.
    expected = 0.5 * restored + 0.5 * np.roll(previous_output, 2 * shift, axis=1)
    np.testing.assert_allclose(result.pixels[:, 16:], expected[:, 16:], atol=1)


def test_first_frame_and_zero_strength_return_the_restored_frame_unchanged() -> None:
    frame = texture(16, 16, seed=7)
    other = texture(16, 16, seed=8)
    zero = constant_flow(16, 16, 0, 0)

    first = stabilize_frame(frame, None, None, frame, None, StabilizeConfig())
    off = stabilize_frame(frame, other, other, other, (zero, zero), StabilizeConfig(strength=0))

    assert first.pixels is frame and first.blend == 0 and not first.cut
    assert off.pixels is frame and off.blend == 0


# --- flicker -------------------------------------------------------------------------------------


def test_static_scene_flicker_is_reduced_and_fidelity_rises() -> None:
    clean = [texture(40, 48, seed=9)] * 12
    restored = flicker(clean, seed=10)
    zero = constant_flow(40, 48, 0, 0)
    flows: list[Flows | None] = [None] + [(zero, zero)] * 11

    stabilized = run(clean, restored, flows, StabilizeConfig())

    before, after = mean_e_warp(clean, restored, flows), mean_e_warp(clean, stabilized, flows)
    assert after <= 0.7 * before, (before, after)
    assert mean_psnr(clean, stabilized) > mean_psnr(clean, restored) + 1.0


def test_moving_scene_flicker_is_reduced_with_estimated_flow() -> None:
    scene = texture(48, 96, seed=11)
    clean = [np.ascontiguousarray(scene[:, i : i + 64]) for i in range(0, 20, 2)]  # slow pan, 2 px/frame
    restored = flicker(clean, seed=12)
    flows = dis_flows(clean)

    stabilized = run(clean, restored, flows, StabilizeConfig())

    assert mean_e_warp(clean, stabilized, flows) <= 0.7 * mean_e_warp(clean, restored, flows)
    assert mean_psnr(clean, stabilized) > mean_psnr(clean, restored)


# --- scene cuts ----------------------------------------------------------------------------------


def test_hard_cut_passes_the_restored_frame_through() -> None:
    before_cut = [texture(40, 48, seed=13)] * 4
    after_cut = [texture(40, 48, seed=14)] * 3
    clean = before_cut + after_cut
    restored = flicker(clean, seed=15)
    flows = dis_flows(clean)
    config = StabilizeConfig()

    results = []
    previous = None
    for i, (frame_in, frame_out, flow) in enumerate(zip(clean, restored, flows, strict=True)):
        result = stabilize_frame(frame_out, previous, clean[i - 1] if i else None, frame_in, flow, config)
        results.append(result)
        previous = result.pixels

    cut = results[4]
    assert cut.cut and cut.blend == 0
    assert cut.cut_score > config.cut_threshold
    np.testing.assert_array_equal(cut.pixels, restored[4])  # nothing of the previous scene
    assert abs(psnr(clean[4], cut.pixels) - psnr(clean[4], restored[4])) <= 0.5
    assert [r.cut for r in results] == [False, False, False, False, True, False, False]
    assert results[5].blend > 0.3  # blending resumes inside the new scene


# --- motion ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("flow_kind", ["estimated", "wrong"])
def test_fast_pan_is_not_smeared(flow_kind: str) -> None:
    scene = texture(48, 64 + 9 * 8, seed=16)
    clean = [np.ascontiguousarray(scene[:, 9 * (8 - i) : 9 * (8 - i) + 64]) for i in range(8)]  # 9 px/frame
    restored = flicker(clean, seed=17)
    if flow_kind == "estimated":
        flows = dis_flows(clean)
    else:
        # A flow that missed the motion: only the confidence term (cut detection off) can prevent smearing.
        zero = constant_flow(48, 64, 0, 0)
        flows = [None] + [(zero, zero)] * 7
    config = StabilizeConfig(cut_threshold=255)

    stabilized = run(clean, restored, flows, config)

    for c, r, s in zip(clean, restored, stabilized, strict=True):
        assert psnr(c, s) >= psnr(c, r) - 0.5


def test_occluded_pixels_are_not_blended() -> None:
    height, width, step = 40, 48, 6
    background = texture(height, width, seed=18)
    square = np.full((12, 12, 3), (240, 30, 30), np.uint8)
    input_prev, input_cur = background.copy(), background.copy()
    input_prev[14:26, 10:22] = square  # the square moves 6 px right
    input_cur[14:26, 16:28] = square
    forward = constant_flow(height, width, 0, 0)
    forward[14:26, 10:22, 0] = step  # F(t−1→t): the square's pixels move, the background stays
    backward = constant_flow(height, width, 0, 0)
    backward[14:26, 16:28, 0] = -step  # B(t→t−1)
    previous_output = np.full_like(background, 128)
    restored = np.full_like(background, 40)

    error = input_warp_error(input_prev, input_cur, backward)
    weights = blend_weights(forward, backward, error, StabilizeConfig())
    result = stabilize_frame(restored, previous_output, input_prev, input_cur, (forward, backward), StabilizeConfig())

    uncovered = (slice(14, 26), slice(10, 16))  # background the square has just left: not in frame t−1
    assert np.all(weights[uncovered] == 0)
    np.testing.assert_array_equal(result.pixels[uncovered], restored[uncovered])
    # The static background far from the square is blended, so the test can tell the two apart.
    assert np.all(result.pixels[:8, :8] > 90)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strength": 1.5}, "strength must be in [0, 1]"),
        ({"sigma": 0}, "sigma must be > 0"),
        ({"cut_threshold": -1}, "cut_threshold must be > 0"),
    ],
)
def test_invalid_settings_raise_config_error(options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        StabilizeConfig(**options)


def test_outputs_of_another_aspect_ratio_than_the_input_are_refused() -> None:
    frame_in = texture(20, 20, seed=19)
    zero = constant_flow(20, 20, 0, 0)
    wide = texture(20, 40, seed=20)

    with pytest.raises(InputError, match="aspect ratios differ"):
        stabilize_frame(wide, wide, frame_in, frame_in, (zero, zero), StabilizeConfig())


def test_flows_of_another_size_than_the_input_are_refused() -> None:
    frame = texture(20, 24, seed=21)
    small = constant_flow(10, 12, 0, 0)

    with pytest.raises(InputError, match="forward flow is 12x10 but the frames are 24x20"):
        stabilize_frame(frame, frame, frame, frame, (small, small), StabilizeConfig())


@pytest.mark.parametrize(("scale", "seed"), [(1, 0), (2, 1), (3, 2)])
def test_the_one_pass_blend_matches_carrying_then_blending(scale: int, seed: int) -> None:
    """stabilize_frame's compiled pass gives temporal_blend(restored, predict_from_previous(...), weights)
    to the bit, at the input's size and at upscaled output sizes."""
    from gifstream.stabilize import predict_from_previous, temporal_blend
    from gifstream.stabilize.blend import carried_blend

    rng = np.random.default_rng(seed)
    height, width = 23, 31
    restored, previous = (texture(height * scale, width * scale, seed + i) for i in range(2))
    flow_bw = rng.uniform(-4, 4, (height, width, 2)).astype(np.float32)
    flow_bw[::5, ::3] = rng.uniform(-40, 40, (5, 11, 2))  # reads clamped at the borders
    weights = rng.uniform(0, 1, (height * scale, width * scale)).astype(np.float32)
    weights[1::7, ::2] = 1  # pixels taken wholly from the carried frame
    weights[::4] = 0  # rows left as restored

    expected = temporal_blend(restored, predict_from_previous(previous, flow_bw), weights)
    blended = carried_blend(restored, previous, flow_bw, weights)

    np.testing.assert_array_equal(blended, expected)
    assert np.array_equal(blended[::4], restored[::4])
    assert not np.array_equal(blended, restored)


def test_the_one_pass_blend_keeps_the_restored_pixel_where_the_flow_is_not_a_number() -> None:
    from gifstream.stabilize.blend import carried_blend

    restored, previous = texture(12, 16, 3), texture(12, 16, 4)
    flow_bw = np.zeros((12, 16, 2), np.float32)
    flow_bw[5, 7] = (np.nan, 0.0)
    weights = np.full((12, 16), 0.5, np.float32)

    blended = carried_blend(restored, previous, flow_bw, weights)

    np.testing.assert_array_equal(blended[5, 7], restored[5, 7])
    expected = np.rint(0.5 * restored.astype(np.float32) + 0.5 * previous.astype(np.float32)).astype(np.uint8)
    np.testing.assert_array_equal(blended[0], expected[0])
