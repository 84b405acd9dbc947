"""The allocator setting the gifstream command applies: freed frame-sized blocks are reused, not faulted in again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from gifstream.allocator import SYSTEM_MALLOC_ENV

# Scores 480x270 frames with SSIM and E_warp (as the metrics stage does, on a thread of its own) and
# reports the page faults per frame after a warm-up frame.
PROBE = textwrap.dedent(
    """
    import json, resource, threading
    import numpy as np
    from gifstream.allocator import tune_for_streaming
    from gifstream.metrics import ssim, warp_error_pair

    applied = tune_for_streaming()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (270, 480, 3), dtype=np.uint8) for _ in range(2)]
    flow = np.full((270, 480, 2), 0.5, np.float32)
    result = {}
    def score():
        ssim(frames[0], frames[1]); warp_error_pair(*frames, *frames, flow, -flow)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            ssim(frames[0], frames[1]); warp_error_pair(*frames, *frames, flow, -flow)
        result["faults_per_frame"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
    worker = threading.Thread(target=score)
    worker.start(); worker.join()
    print(json.dumps({"applied": applied, **result}))
    """
)

# The frame-sized float32 temporaries of one frame's scoring come to thousands of pages.
PAGES_PER_FRAME = 270 * 480 * 3 * 4 / 4096 * 5

# Makes and drops a 96 MiB block (more than a thread arena's 64 MiB heap, as a 512x512 face's activations in
# GFPGAN are) on a thread of its own, and reports the page faults per block after a warm-up block.
LARGE_BLOCK_PROBE = textwrap.dedent(
    """
    import ctypes, json, resource, sys, threading
    from gifstream.allocator import keep_freed_memory, tune_for_streaming

    applied = keep_freed_memory(one_arena=False) if sys.argv[1] == "thread-arenas" else tune_for_streaming()
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    size = 96 * 2**20
    result = {}
    def block():
        # As torch allocates a tensor (numpy would ask for huge pages, which fault in 2 MiB at a time).
        address = libc.malloc(size)
        ctypes.memset(address, 1, size)
        libc.free(address)
    def work():
        block()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            block()
        result["faults_per_block"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
    worker = threading.Thread(target=work)
    worker.start(); worker.join()
    print(json.dumps({"applied": applied, **result}))
    """
)
LARGE_BLOCK_PAGES = 96 * 2**20 / 4096


def probe(env_value: str | None, script: str = PROBE, *args: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != SYSTEM_MALLOC_ENV}
    if env_value is not None:
        env[SYSTEM_MALLOC_ENV] = env_value
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is glibc's (Linux)")
def test_freed_frames_are_reused_instead_of_faulted_in_again() -> None:
    tuned = probe(None)
    system = probe("1")

    assert tuned["applied"] is True and system["applied"] is False
    # glibc's default hands the blocks back to the system and faults them in again on the next frame.
    assert system["faults_per_frame"] > 0.5 * PAGES_PER_FRAME
    assert tuned["faults_per_frame"] < system["faults_per_frame"] / 5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is glibc's (Linux)")
def test_blocks_larger_than_a_thread_arena_are_reused_too() -> None:
    tuned = probe(None, LARGE_BLOCK_PROBE, "default")
    thread_arenas = probe(None, LARGE_BLOCK_PROBE, "thread-arenas")
    system = probe("1", LARGE_BLOCK_PROBE, "default")

    assert tuned["applied"] is True and thread_arenas["applied"] is True and system["applied"] is False
    # A thread's own arena cannot hold the block whatever the thresholds: it is mapped and faulted in each time.
    assert thread_arenas["faults_per_block"] > 0.5 * LARGE_BLOCK_PAGES
    assert system["faults_per_block"] > 0.5 * LARGE_BLOCK_PAGES
    assert tuned["faults_per_block"] < 0.05 * LARGE_BLOCK_PAGES


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is glibc's (Linux)")
def test_the_opt_out_accepts_0_as_not_opting_out() -> None:
    assert probe("0")["applied"] is True


def test_the_gifstream_command_applies_it_before_any_work(monkeypatch, capsys) -> None:
    import gifstream.cli

    calls: list[str] = []
    monkeypatch.setattr(gifstream.cli, "tune_for_streaming", lambda: calls.append("tuned") or True)

    assert gifstream.cli.main(["models", "list"]) == 0
    assert calls == ["tuned"]
