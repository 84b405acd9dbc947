"""RAFT through torchvision with random weights saved as a checkpoint: geometry, batching, padding, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import texture
from torchvision.models.optical_flow import raft_small

from gifstream.engine.errors import ConfigError
from gifstream.motion import RaftFlow, estimate_flow

HEIGHT, WIDTH = 217, 333  # odd on purpose: neither a multiple of 8 nor square
UPDATES = 2  # refinement steps; few keep the tests fast, the geometry is the same


@pytest.fixture(scope="module")
def raft_small_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random raft_small state dict in torchvision's release format (a plain state_dict)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("raft") / "raft_small_random.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def raft(raft_small_weights: Path) -> RaftFlow:
    return RaftFlow("small", raft_small_weights, num_flow_updates=UPDATES)


def model_input_shapes(estimator: RaftFlow) -> tuple[list[tuple[int, ...]], torch.utils.hooks.RemovableHandle]:
    shapes: list[tuple[int, ...]] = []

    def record(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        shapes.append(tuple(args[0].shape))

    return shapes, estimator.model.register_forward_pre_hook(record)


def test_odd_size_gives_flow_at_input_geometry_via_padding(raft: RaftFlow) -> None:
    frame_a, frame_b = texture(HEIGHT, WIDTH, 1), texture(HEIGHT, WIDTH, 2)
    shapes, hook = model_input_shapes(raft)
    try:
        flow = raft(frame_a, frame_b)
    finally:
        hook.remove()

    assert flow.shape == (HEIGHT, WIDTH, 2)
    assert flow.dtype == np.float32
    assert np.isfinite(flow).all()
    # Padded to the next multiples of 8, never resized to a square.
    assert shapes == [(1, 3, 224, 336)]


def test_batched_pairs_equal_single_calls(raft: RaftFlow) -> None:
    frames = [texture(HEIGHT, WIDTH, seed) for seed in range(3)]
    shapes, hook = model_input_shapes(raft)
    try:
        batched = raft.pairs(frames[:2], frames[1:])
    finally:
        hook.remove()
    singles = [raft(frames[0], frames[1]), raft(frames[1], frames[2])]

    assert shapes == [(2, 3, 224, 336)]  # one forward for both pairs
    assert len(batched) == 2
    for got, expected in zip(batched, singles, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(batched[0], batched[1])  # different pairs, different flows


def test_max_side_runs_smaller_and_returns_input_geometry(raft_small_weights: Path) -> None:
    estimator = RaftFlow("small", raft_small_weights, max_side=200, num_flow_updates=UPDATES)
    shapes, hook = model_input_shapes(estimator)
    try:
        flow = estimator(texture(HEIGHT, WIDTH, 1), texture(HEIGHT, WIDTH, 2))
    finally:
        hook.remove()

    assert flow.shape == (HEIGHT, WIDTH, 2)
    assert flow.dtype == np.float32
    # 333x217 shrunk to 200x130 (aspect kept), then padded to 200x136.
    assert shapes == [(1, 3, 136, 200)]


def test_estimate_flow_raft_backend_matches_the_class(raft: RaftFlow, raft_small_weights: Path) -> None:
    frame_a, frame_b = texture(HEIGHT, WIDTH, 4), texture(HEIGHT, WIDTH, 5)
    flow = estimate_flow(frame_a, frame_b, "raft_small", weights=raft_small_weights, num_flow_updates=UPDATES)
    np.testing.assert_allclose(flow, raft(frame_a, frame_b), rtol=1e-5, atol=1e-5)


def test_weights_are_required() -> None:
    with pytest.raises(ConfigError, match="RAFT small needs a weights file"):
        RaftFlow("small", None)


def test_missing_or_wrong_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="weights file not found"):
        RaftFlow("small", tmp_path / "absent.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"not_raft.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ConfigError, match="is not a raft_small state dict"):
        RaftFlow("small", wrong)


def test_bad_options(raft_small_weights: Path) -> None:
    with pytest.raises(ConfigError, match="unknown RAFT variant 'medium'"):
        RaftFlow("medium", raft_small_weights)
    with pytest.raises(ConfigError, match="max_side must be at least 128"):
        RaftFlow("small", raft_small_weights, max_side=64)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_config_error(raft_small_weights: Path) -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        RaftFlow("small", raft_small_weights, device="cuda")
