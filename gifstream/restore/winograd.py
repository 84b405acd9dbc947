"""3x3 convolutions through NNPACK's Winograd kernels, for networks that run on one CPU core each.

A restored frame's CPU time is almost all float32 convolutions (GFPGAN,
ParseNet, Real-ESRGAN), and oneDNN's direct kernels already run them at
about 90 % of the core's FMA peak (67-77 of 78 GFLOP/s a core on the
benchmark machine). The Winograd transform F(6x6, 3x3) computes a 3x3
stride-1 convolution with about a fifth of the multiplications, and NNPACK,
which torch's CPU builds carry, implements it. On one thread a whole
forward takes 1.2-1.5x less time (GFPGAN and ParseNet on a 512x512 face,
Real-ESRGAN on a 256x144 frame), with outputs 120-125 dB PSNR from
oneDNN's (bench/network_threads.py). The price is memory: NNPACK's scratch
is per thread, about 240 MB for a 64-channel layer on a 512x512 map.

Only on one thread, because NNPACK has one thread pool per process, made
at its first call with the caller's thread count, and concurrent calls
into a pool of several threads queue behind one another. :func:`nnpack_ready`
makes that first call itself on a one-thread helper, so the pool is a
one-thread pool, and every call runs on its caller's thread: networks side
by side each convolve on their own core. The restorer routes its networks
here only where each network's steady share of the cores is one thread (a
machine with 2 or 3 cores, see :func:`pays_on`), and a convolution goes
through NNPACK only while its thread has one torch thread: a network alone
gets every core from the core share (:mod:`.threads`), and oneDNN's kernels
on two threads are as fast as NNPACK's on one. With more cores oneDNN's
multi-threaded kernels are faster, and on a GPU nothing changes.

``GIFSTREAM_WINOGRAD=0`` turns the routing off (oneDNN's direct
convolutions everywhere, as before it).
"""

from __future__ import annotations

import functools
import os
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from .threads import cap_intra_op_threads

WINOGRAD_ENV = "GIFSTREAM_WINOGRAD"


def enabled() -> bool:
    """Whether eligible convolutions can go through NNPACK here: torch carries it, it runs on this CPU, and
    ``$GIFSTREAM_WINOGRAD`` is not "0"."""
    return os.environ.get(WINOGRAD_ENV, "1").strip() != "0" and nnpack_ready()


def pays_on(threads_per_network: int) -> bool:
    """Whether a network that steadily gets ``threads_per_network`` torch threads is faster through NNPACK.

    NNPACK's one-thread pool gives 1.2-1.5x oneDNN's one-thread speed, and
    oneDNN on two threads 1.75-1.9x, so only one thread a network pays.
    """
    return threads_per_network == 1 and enabled()


@functools.cache
def nnpack_ready() -> bool:
    """NNPACK initialised and its process-wide pool made with one thread (by a first call on a one-thread helper)."""
    if not torch._nnpack_available():  # also initialises NNPACK, which its convolution does not do itself
        return False
    outcome: dict[str, BaseException] = {}

    def first_call() -> None:
        try:
            cap_intra_op_threads(1)
            torch._nnpack_spatial_convolution(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3), None, [1, 1], [1, 1])
        except BaseException as err:  # reported below as "not ready"
            outcome["error"] = err

    helper = threading.Thread(target=first_call, name="gifstream-nnpack-pool")
    helper.start()
    helper.join()
    return "error" not in outcome


def _pair(value: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value, value)
    values = tuple(int(v) for v in value)
    return values * 2 if len(values) == 1 else values


def winograd_eligible(
    input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1
) -> bool:
    """Whether ``torch.conv2d`` with these arguments can run as NNPACK's Winograd 3x3 convolution.

    That is: float32 dense CPU tensors outside CPU autocast, a 4-D input, a
    3x3 kernel, stride 1, no dilation, one group, numeric padding, and no
    gradient to keep (NNPACK's convolution has no backward).
    """
    tensors = [input, weight] + ([] if bias is None else [bias])
    if not all(isinstance(t, torch.Tensor) and t.layout == torch.strided for t in tensors):
        return False
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    if torch.is_autocast_enabled("cpu"):  # autocast casts below this level: leave its precision to it
        return False
    if isinstance(padding, str) or groups != 1:
        return False
    pad = _pair(padding)
    return (
        input.dim() == 4
        and weight.dim() == 4
        and tuple(weight.shape[2:]) == (3, 3)
        and _pair(stride) == (1, 1)
        and _pair(dilation) == (1, 1)
        and len(pad) == 2
        and min(pad) >= 0
    )


_CONV2D_PARAMETERS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


class WinogradConvolutions(TorchFunctionMode):
    """While active on a thread, its eligible ``torch.conv2d`` calls run through NNPACK while that thread has one
    torch thread; :attr:`routed` counts them.

    A torch function mode, so it also catches the convolutions a network
    calls functionally (StyleGAN2's modulated convolutions), not only
    ``nn.Conv2d`` layers. Modes are per thread: enter it where the network runs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.routed = 0

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        # What torch.nn.functional.conv2d and nn.Conv2d call; on a thread given more than one torch thread at the
        # moment (a network alone, under the core share), oneDNN's kernels on those threads are as fast or faster.
        if func is torch.conv2d and torch.get_num_threads() == 1:
            call = dict(zip(_CONV2D_PARAMETERS, args, strict=False)) | kwargs
            if winograd_eligible(**call):
                self.routed += 1
                padding = list(_pair(call.get("padding", 0)))
                return torch._nnpack_spatial_convolution(
                    call["input"], call["weight"], call.get("bias"), padding, [1, 1]
                )
        return func(*args, **kwargs)


def route_convolutions(net: Any) -> Any:
    """Run every forward of ``net`` (a torch module) with its eligible convolutions through NNPACK; returns ``net``.

    The caller decides whether it pays (:func:`pays_on`). Routing the same
    module twice adds nothing; a deep copy of a routed module is routed too.
    """
    if not is_routed(net):
        # A method bound to ``net``, not a closure over its forward: copy.deepcopy rebinds it to the copy.
        net.forward = types.MethodType(_forward_through_winograd, net)
    return net


def unrouted(net: Any) -> Any:
    """``net`` with its own forward back (oneDNN's convolutions); returns ``net``."""
    if is_routed(net):
        del net.forward
    return net


def is_routed(net: Any) -> bool:
    """Whether ``net``'s forward goes through :func:`route_convolutions`'s mode."""
    forward = vars(net).get("forward")
    return getattr(forward, "__func__", None) is _forward_through_winograd


def _forward_through_winograd(net: Any, *args: Any, **kwargs: Any) -> Any:
    with WinogradConvolutions():
        return type(net).forward(net, *args, **kwargs)
