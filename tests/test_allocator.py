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


def probe(env_value: str | None) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != SYSTEM_MALLOC_ENV}
    if env_value is not None:
        env[SYSTEM_MALLOC_ENV] = env_value
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
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
def test_the_opt_out_accepts_0_as_not_opting_out() -> None:
    assert probe("0")["applied"] is True


def test_the_gifstream_command_applies_it_before_any_work(monkeypatch, capsys) -> None:
    import gifstream.cli

    calls: list[str] = []
    monkeypatch.setattr(gifstream.cli, "tune_for_streaming", lambda: calls.append("tuned") or True)

    assert gifstream.cli.main(["models", "list"]) == 0
    assert calls == ["tuned"]
