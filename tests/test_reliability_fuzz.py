"""The GIF reader against a few hundred seeded mutations of real GIFs (bench/fuzz_gif.py); the fuzzer's own checks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers import REPO, textured_frames, write_reference_gif

from gifstream.engine import InputError, LimitExceededError


def load_fuzzer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_gif", REPO / "bench" / "fuzz_gif.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_gif"] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


fuzz_gif = load_fuzzer()


@pytest.fixture(scope="module")
def seeds_dir(shared_testdata: Path) -> Path:
    return shared_testdata / "gif-conformance"


@pytest.mark.shared
@pytest.mark.timeout(120)
def test_300_mutated_gifs_decode_or_fail_cleanly(seeds_dir: Path) -> None:
    summary = fuzz_gif.fuzz(300, seed=20240611, workers=2, timeout=5.0, seeds_dir=seeds_dir)
    assert summary.cases == 300
    assert summary.failures == [], fuzz_gif.format_summary(summary, "tests/test_reliability_fuzz.py")
    assert summary.counts["crash"] == summary.counts["hang"] == summary.counts["wrong"] == 0
    # The mutations reach both sides: inputs that still decode, and inputs refused for a reason.
    assert summary.counts["ok"] > 30 and summary.counts["clean"] > 30 and summary.counts["limit"] > 0
    assert summary.peak_rss_kb < 512 * 1024


@pytest.mark.shared
def test_cases_are_reproducible_from_their_seed_and_number(seeds_dir: Path) -> None:
    seeds = fuzz_gif.load_seeds(seeds_dir)
    first = [fuzz_gif.make_case(seeds, 5, index) for index in range(20)]
    again = [fuzz_gif.make_case(seeds, 5, index) for index in range(20)]
    other_run = [fuzz_gif.make_case(seeds, 6, index) for index in range(20)]
    assert first == again
    assert len({case.data for case in first}) > 15
    assert [c.data for c in first] != [c.data for c in other_run]
    originals = {seed.data for seed in seeds}
    assert sum(case.data not in originals for case in first) >= 18  # nearly every case is a new input


@pytest.mark.shared
def test_a_case_over_its_time_limit_is_counted_as_a_hang_and_its_worker_replaced(seeds_dir: Path) -> None:
    # Each case stalls 30 s before it starts: the watchdog must not wait for it.
    summary = fuzz_gif.fuzz(2, seed=1, workers=1, timeout=0.5, seeds_dir=seeds_dir, worker_delay_s=30)
    assert summary.cases == 2 and summary.counts["hang"] == 2
    assert [(index, outcome) for index, outcome, _ in summary.failures] == [(0, "hang"), (1, "hang")]


class _Raising:
    """A stand-in GifSource whose open() raises what it is given."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __call__(self, *args: object, **kwargs: object) -> _Raising:
        return self

    def open(self) -> None:
        raise self.error

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (InputError("input stream: frame 0 is truncated or corrupt"), "clean"),
        (LimitExceededError("input stream: frame 0: frame size 9x9 exceeds --max-frame-pixels 8"), "limit"),
        (LimitExceededError("input stream: Image size (9 pixels) exceeds limit of 8 pixels"), "wrong"),
        (InputError("two\nlines"), "crash"),
        (TypeError("'NoneType' object is not subscriptable"), "crash"),
        (MemoryError(), "crash"),
    ],
)
def test_outcomes_are_classified(monkeypatch: pytest.MonkeyPatch, error: BaseException, outcome: str) -> None:
    monkeypatch.setattr(fuzz_gif, "GifSource", _Raising(error))
    assert fuzz_gif.run_case(b"GIF89a").outcome == outcome


def test_a_well_formed_gif_is_ok_and_matches_pillow(tmp_path: Path) -> None:
    gif = tmp_path / "in.gif"
    write_reference_gif(gif, textured_frames(3, 16, 8), [50, 60, 70], loop=0)
    result = fuzz_gif.run_case(gif.read_bytes())
    assert (result.outcome, result.frames, result.detail) == ("ok", 3, "")
