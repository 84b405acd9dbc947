"""Device handling of the GFPGAN path: CPU runs never touch CUDA; the CUDA branch runs where a GPU exists."""

from __future__ import annotations

import contextlib

import pytest
import torch

from gifstream.restore.gfpgan import device_stream


def test_on_the_cpu_there_is_no_stream_and_cuda_is_never_called(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cuda(*args: object) -> None:
        raise AssertionError("CUDA touched on a CPU run")

    monkeypatch.setattr(torch.cuda, "stream", no_cuda)
    context = device_stream(None)
    assert isinstance(context, contextlib.nullcontext)
    with context:
        pass


@pytest.mark.cuda
def test_on_a_gpu_work_runs_on_the_restorers_own_stream() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    stream = torch.cuda.Stream()
    with device_stream(stream):
        assert torch.cuda.current_stream() == stream
        result = (torch.ones(4, device="cuda") * 2).sum()
    stream.synchronize()
    assert result.item() == 8
