"""3x3 convolutions through NNPACK's Winograd kernels: which calls go there, their results, the restorer's wiring."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gifstream.restore import winograd
from gifstream.restore.threads import cap_intra_op_threads
from gifstream.restore.winograd import (
    WinogradConvolutions,
    is_routed,
    nnpack_ready,
    route_convolutions,
    unrouted,
    winograd_eligible,
)

pytestmark = pytest.mark.skipif(not nnpack_ready(), reason="this torch build or CPU has no NNPACK")


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The test's thread on one torch thread, as a network's is beside another (NNPACK is used only then)."""
    before = torch.get_num_threads()
    cap_intra_op_threads(1)
    yield
    cap_intra_op_threads(before)


def conv_case(batch: int, c_in: int, c_out: int, height: int, width: int, *, bias: bool = True, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c_in, height, width, generator=generator)
    w = torch.randn(c_out, c_in, 3, 3, generator=generator) / (3 * c_in**0.5)
    b = torch.randn(c_out, generator=generator) if bias else None
    return x, w, b


def routed_conv(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, int]:
    with torch.inference_mode(), WinogradConvolutions() as mode:
        out = F.conv2d(*args, **kwargs)
    return out, mode.routed


@pytest.mark.parametrize(
    ("shape", "padding", "bias", "channels_last"),
    [
        ((1, 3, 8, 17, 23), 1, True, False),  # odd sizes: partial Winograd tiles at both edges
        ((3, 5, 4, 9, 9), 0, False, False),  # a batch, no padding, no bias
        ((1, 16, 16, 40, 33), (1, 0), True, True),  # uneven padding, channels-last input and weight
        ((2, 32, 24, 64, 48), (2, 2), True, False),  # padding wider than the kernel needs
    ],
)
def test_eligible_convolutions_go_through_nnpack_and_agree_with_the_direct_ones(
    shape, padding, bias: bool, channels_last: bool
) -> None:
    x, w, b = conv_case(*shape, bias=bias)
    if channels_last:
        x, w = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)
    expected = F.conv2d(x.double(), w.double(), None if b is None else b.double(), padding=padding)

    got, routed = routed_conv(x, w, b, padding=padding)

    assert routed == 1
    assert got.dtype == torch.float32 and got.shape == expected.shape
    # Winograd's transforms round more than a direct sum does, but stay within 1e-5 of the values' range here.
    assert (got.double() - expected).abs().max() <= 1e-5 * expected.abs().max()


@pytest.mark.parametrize(
    ("change", "arguments"),
    [
        ("stride 2", {"stride": 2, "padding": 1}),
        ("dilation 2", {"dilation": 2, "padding": 2}),
        ("two groups", {"groups": 2, "padding": 1}),
        ("padding 'same'", {"padding": "same"}),
    ],
)
def test_other_convolutions_are_left_to_torch(change: str, arguments: dict[str, Any]) -> None:
    x, w, b = conv_case(1, 4, 6, 12, 12)
    if arguments.get("groups") == 2:
        w = w[:, :2].contiguous()

    got, routed = routed_conv(x, w, b, **arguments)

    assert routed == 0, change
    assert torch.equal(got, F.conv2d(x, w, b, **arguments))


def test_a_thread_with_more_torch_threads_keeps_onednn() -> None:
    # A network alone gets every core from the core share; oneDNN on two threads is as fast as NNPACK on one.
    x, w, b = conv_case(1, 4, 6, 12, 12)
    cap_intra_op_threads(2)

    got, routed = routed_conv(x, w, b, padding=1)

    assert routed == 0
    assert torch.equal(got, F.conv2d(x, w, b, padding=1))


def test_other_kernels_types_and_gradients_are_left_to_torch() -> None:
    x, w, b = conv_case(1, 4, 6, 12, 12)
    one_by_one = w[:, :, 1:2, 1:2].contiguous()
    assert not winograd_eligible(x, one_by_one, b)
    assert not winograd_eligible(x.double(), w.double(), b.double(), padding=1)
    assert not winograd_eligible(x.to(torch.bfloat16), w.to(torch.bfloat16), None, padding=1)
    assert not winograd_eligible(x[0], w, b, padding=1)  # 3-D input
    with torch.enable_grad():
        assert not winograd_eligible(x, w.requires_grad_(), b, padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not winograd_eligible(x, w.detach(), b, padding=1)
    assert winograd_eligible(x, w.detach(), b, padding=1)


def test_autocast_keeps_its_bfloat16_inside_the_mode() -> None:
    x, w, b = conv_case(1, 4, 6, 12, 12)
    with torch.inference_mode(), WinogradConvolutions() as mode, torch.autocast("cpu", dtype=torch.bfloat16):
        out = F.conv2d(x, w, b, padding=1)
    assert mode.routed == 0 and out.dtype == torch.bfloat16


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(8, 3, 1)).eval()


def count_nnpack_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads that call NNPACK's convolution from now on, one entry per call."""
    callers: list[str] = []
    nnpack = torch._nnpack_spatial_convolution

    def counted(*args: Any) -> torch.Tensor:
        callers.append(threading.current_thread().name)
        return nnpack(*args)

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", counted)
    return callers


def test_a_routed_network_computes_what_it_did(monkeypatch: pytest.MonkeyPatch) -> None:
    net, x = small_net(), torch.rand(2, 3, 21, 30)
    with torch.inference_mode():
        expected = net(x)
    callers = count_nnpack_calls(monkeypatch)

    assert route_convolutions(route_convolutions(net)) is net  # routing twice wraps once
    with torch.inference_mode():
        got = net(x)

    assert callers == [threading.current_thread().name]  # the 3x3 layer; the 1x1 layer stays oneDNN's
    assert torch.allclose(got, expected, atol=1e-5)


def test_a_copy_of_a_routed_network_is_routed_and_computes_with_its_own_weights(monkeypatch) -> None:
    net = route_convolutions(small_net())
    twin = copy.deepcopy(net)
    with torch.no_grad():
        twin[0].weight.mul_(-1)
    x = torch.rand(1, 3, 16, 16)
    callers = count_nnpack_calls(monkeypatch)

    with torch.inference_mode():
        original, copied = net(x), twin(x)
        direct = unrouted(copy.deepcopy(twin))(x)

    assert len(callers) == 2  # one 3x3 layer each; none for the unrouted copy
    assert is_routed(twin) and not is_routed(unrouted(twin))
    assert not torch.allclose(copied, original)
    assert torch.allclose(copied, direct, atol=1e-5)


def test_an_error_in_a_routed_forward_leaves_no_mode_behind() -> None:
    net = route_convolutions(small_net())
    with pytest.raises(RuntimeError), torch.inference_mode():
        net(torch.rand(1, 5, 8, 8))  # 5 channels into a 3-channel layer
    assert torch._C._len_torch_function_stack() == 0
    x, w, b = conv_case(1, 4, 6, 12, 12)
    assert torch.equal(F.conv2d(x, w, b, padding=1), F.conv2d(x, w, b, padding=1))


def test_networks_side_by_side_on_threads_each_get_their_own_results() -> None:
    # NNPACK's scratch memory is per thread in torch; two routed networks at once must not mix results.
    nets = [route_convolutions(small_net()) for _ in range(2)]
    inputs = [torch.rand(1, 3, 96, 80, generator=torch.Generator().manual_seed(seed)) for seed in range(2)]
    with torch.inference_mode():
        expected = [net(x) for net, x in zip(nets, inputs, strict=True)]
    results: dict[int, list[torch.Tensor]] = {0: [], 1: []}

    def work(index: int) -> None:
        cap_intra_op_threads(1)
        with torch.inference_mode():
            for _ in range(20):
                results[index].append(nets[index](inputs[index]))

    threads = [threading.Thread(target=work, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for index in range(2):
        assert len(results[index]) == 20
        assert all(torch.equal(result, expected[index]) for result in results[index])


def test_it_pays_on_one_thread_a_network_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert winograd.pays_on(1) and winograd.enabled()
    assert not winograd.pays_on(2)
    monkeypatch.setenv(winograd.WINOGRAD_ENV, "0")
    assert not winograd.enabled() and not winograd.pays_on(1)


# --- The restorer's wiring, on stand-in networks ---


@pytest.fixture
def build_restorer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Any]:
    from gifstream.restore.compat import install_torchvision_shim

    install_torchvision_shim()
    pytest.importorskip("gfpgan")
    from standins import tiny_networks

    from gifstream.benchmark import with_landmarks
    from gifstream.restore import FaceDetection, GfpganRestorer
    from gifstream.restore import gfpgan as gfpgan_module

    files = [tmp_path / name for name in ("gfpgan.pth", "realesrgan.pth", "parsenet.pth")]
    for file in files:
        file.touch()
    face = with_landmarks(FaceDetection((12.0, 8.0, 52.0, 56.0), None, 0.99))

    def build(**options: Any) -> GfpganRestorer:
        networks = tiny_networks()
        monkeypatch.setattr(gfpgan_module, "load_networks", lambda *args: networks)
        detector = lambda frames: [[face] for _ in frames]  # noqa: E731
        options.setdefault("precision", "fp32")  # "auto" is bfloat16 on some CPUs, which NNPACK does not compute
        return GfpganRestorer(files[0], files[1], None, files[2], detector=detector, **options)

    return build


def restored_frame(restorer: Any) -> np.ndarray:
    from helpers import texture

    torch.manual_seed(0)
    [result] = restorer.restore([texture(64, 64, seed=3)])
    assert result.faces == 1
    return np.asarray(result.pixels)


def test_the_restorer_routes_its_networks_where_one_thread_each_is_their_share(
    build_restorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct = build_restorer(intra_op_threads=1, winograd=False)
    expected = restored_frame(direct)
    callers = count_nnpack_calls(monkeypatch)
    routed = build_restorer(intra_op_threads=1)

    got = restored_frame(routed)

    assert (direct.winograd, routed.winograd) == (False, True)
    assert (direct.describe()["convolutions"], routed.describe()["convolutions"]) == (
        "direct",
        "winograd (NNPACK) on one-thread shares",
    )
    # Every 3x3 layer (two in the face, one each in the parser and the background), the background's on a thread
    # of its own, the face's and the parser's on the caller's.
    assert len(callers) == 4 and len(set(callers)) == 2
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_the_restorer_keeps_onednn_where_networks_get_more_threads_or_when_told(
    build_restorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    callers = count_nnpack_calls(monkeypatch)
    for restorer in (build_restorer(intra_op_threads=2), build_restorer(intra_op_threads=1, winograd=False)):
        restored_frame(restorer)
        assert restorer.winograd is False
    monkeypatch.setenv(winograd.WINOGRAD_ENV, "0")
    turned_off = build_restorer(intra_op_threads=1)
    restored_frame(turned_off)
    assert turned_off.winograd is False and callers == []
    assert build_restorer(intra_op_threads=2, winograd=True).winograd is True  # asked for outright


def test_networks_under_bfloat16_autocast_are_left_to_onednn(build_restorer, monkeypatch: pytest.MonkeyPatch) -> None:
    callers = count_nnpack_calls(monkeypatch)
    bf16 = build_restorer(intra_op_threads=1, precision="bf16")

    restored_frame(bf16)

    assert bf16.winograd is False and bf16.describe()["convolutions"] == "direct"
    assert callers == []
    nets = (bf16.networks.face, bf16.networks.parser, bf16.networks.background)
    assert not any(is_routed(getattr(net, "net", net)) for net in nets)
