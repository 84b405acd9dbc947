"""``gifstream bench``: it runs on a tiny synthetic input and prints its tables; its arithmetic and inputs."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from gifstream.benchmark import (
    PartTimes,
    TimedSetup,
    add_bench_parser,
    arithmetic_text,
    cpu_description,
    encode_timed,
    pipeline_figures,
    plan_from_args,
    preset_options,
    restorer_arithmetic,
    retinaface_rows,
    synthetic_frames,
    with_landmarks,
)
from gifstream.engine import ConfigError, Frame
from gifstream.io.gif_sink import GifOptions, GifSink
from gifstream.restore.detect import FaceDetection, detection_from_row


def bench_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gifstream")
    add_bench_parser(parser.add_subparsers())
    return parser.parse_args(["bench", *argv])


def test_bench_runs_on_a_tiny_input_and_prints_the_tables(tmp_path: Path, capsys) -> None:
    args = bench_args(
        "--no-baseline",
        "--frames",
        "4",
        "--size",
        "64x48",
        "--isolated-frames",
        "3",
        "--json",
        str(tmp_path / "r.json"),
    )

    assert args.handler(args) == 0

    printed = capsys.readouterr().out
    assert "## gifstream bench: preset offline" in printed
    for part in ("decode", "restore", "flow", "metrics", "encode"):
        assert f"| {part} |" in printed
    assert "| efficiency: steady end-to-end / slowest part alone |" in printed
    assert "| offline >= 30.0 frames/s at 64x48 |" in printed
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["gifstream"]["frames"] == 4
    assert results["isolated"]["frames"] == 3
    assert [part["name"] for part in results["isolated"]["parts"]] == ["decode", "restore", "flow", "metrics", "encode"]
    assert set(results["gifstream"]["metrics"]) == {"psnr", "ssim", "e_warp", "e_warp_input", "e_warp_ratio"}
    assert results["gifstream"]["peak_rss_mb"] > 0


def test_the_machine_line_names_the_cpu_and_its_widest_vector_features() -> None:
    cpuinfo = (
        "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16\n"
    )

    assert cpu_description(cpuinfo) == "AMD EPYC (avx512_bf16, avx512f, avx2)"
    assert cpu_description("model name\t: Old CPU\nflags\t: fpu sse2 avx2\n") == "Old CPU (avx2)"
    assert cpu_description("model name\t: Tiny\nflags\t: fpu\n") == "Tiny"


def test_the_header_says_which_arithmetic_the_restorer_ran() -> None:
    class Reporting:
        def __init__(self, name: str, details: dict) -> None:
            self.name, self.details = name, details

        def describe(self) -> dict:
            return self.details

    gfpgan = {"restorer": "gfpgan", "precision": "bf16", "convolutions": "direct", "faces": 3}
    stages = [TimedSetup(Reporting("restore", gfpgan)), TimedSetup(Reporting("metrics", {"precision": "x"}))]
    arithmetic = restorer_arithmetic(stages)  # type: ignore[arg-type]

    assert arithmetic == {"precision": "bf16", "convolutions": "direct"}
    assert arithmetic_text({"arithmetic": arithmetic}) == "; restorer precision bf16; restorer convolutions direct"
    classic = [TimedSetup(Reporting("restore", {"restorer": "classic", "scale": 2}))]
    assert restorer_arithmetic(classic) == {}  # type: ignore[arg-type]
    assert arithmetic_text({}) == ""


def test_efficiency_and_latency_come_from_the_slowest_part_and_the_sum_of_parts() -> None:
    isolated = {
        "parts": [
            {"name": "decode", "mean_s": 0.005, "cpu_mean_s": 0.005, "frames_per_s": 200.0},
            {"name": "restore", "mean_s": 0.050, "cpu_mean_s": 0.050, "frames_per_s": 20.0},
            {"name": "encode", "mean_s": 0.025, "cpu_mean_s": 0.045, "frames_per_s": 40.0},
        ]
    }
    run = {"steady_frames_per_s": 18.0, "first_output_after_setup_s": 0.12}

    figures = pipeline_figures(isolated, run)

    assert figures["slowest"] == "restore"
    assert figures["efficiency"] == pytest.approx(18 / 20)
    assert figures["one_frame_s"] == pytest.approx(0.080)
    assert figures["latency_frames"] == pytest.approx(0.12 / 0.080)


def test_the_efficiency_ceiling_is_what_the_cores_allow_for_all_the_parts_cpu(monkeypatch) -> None:
    isolated = {
        "parts": [
            {"name": "restore", "mean_s": 0.050, "cpu_mean_s": 0.050, "frames_per_s": 20.0},
            {"name": "metrics", "mean_s": 0.040, "cpu_mean_s": 0.040, "frames_per_s": 25.0},
            {"name": "encode", "mean_s": 0.030, "cpu_mean_s": 0.060, "frames_per_s": 33.0},
        ]
    }
    monkeypatch.setattr("os.cpu_count", lambda: 2)

    figures = pipeline_figures(isolated, {"steady_frames_per_s": 12.0, "first_output_after_setup_s": 0.2})

    # 150 ms of CPU per frame on 2 cores: 13.3 frames/s at best, 0.667 of the slowest part's 20.
    assert figures["cpu_bound_fps"] == pytest.approx(2 / 0.150)
    assert figures["efficiency_ceiling"] == pytest.approx((2 / 0.150) / 20)
    assert figures["of_ceiling"] == pytest.approx((12 / 20) / ((2 / 0.150) / 20))
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert pipeline_figures(isolated, {"steady_frames_per_s": 19.0, "first_output_after_setup_s": 0.2})[
        "efficiency_ceiling"
    ] == pytest.approx(1.0)


def test_set_overrides_are_read_as_toml_values_and_checked() -> None:
    args = bench_args("--no-baseline", "--set", "flow=dis_fast", "--set", "detect-every=3", "--overlap-first-frame")
    plan = plan_from_args(args)

    assert plan.tuning.overrides == (("flow", "dis_fast"), ("detect_every", 3))
    assert plan.tuning.first_frame_alone is False
    assert preset_options({"preset": "offline", "tuning": dataclasses.asdict(plan.tuning)}).flow == "dis_fast"
    assert "flow" in plan.tuning.describe() and "first_frame_alone=False" in plan.tuning.describe()


def test_the_written_input_gif_decodes_held_pictures_to_identical_frames(tmp_path: Path) -> None:
    from gifstream.benchmark import write_gif
    from gifstream.io import open_source

    write_gif(tmp_path / "held.gif", synthetic_frames(8, (96, 54), hold=2), 8)
    source = open_source(tmp_path / "held.gif")
    source.open()
    decoded = [frame.pixels for frame in source.frames()]
    source.close()

    assert len(decoded) == 8
    assert [np.array_equal(a, b) for a, b in itertools.pairwise(decoded)] == [True, False] * 3 + [True]


def test_synthetic_input_holds_each_picture_for_hold_frames() -> None:
    frames = list(synthetic_frames(7, (40, 30), hold=3))

    assert [frame.index for frame in frames] == list(range(7))
    assert all(frame.pixels.shape == (30, 40, 3) and frame.pixels.dtype == np.uint8 for frame in frames)
    same = [np.array_equal(a.pixels, b.pixels) for a, b in itertools.pairwise(frames)]
    assert same == [True, True, False, True, True, False]


def test_template_landmarks_sit_inside_the_box_and_round_trip_as_retinaface_rows() -> None:
    face = with_landmarks(FaceDetection((100.0, 50.0, 200.0, 170.0), score=0.9))

    assert face.landmarks is not None
    assert np.all((face.landmarks[:, 0] > 100) & (face.landmarks[:, 0] < 200))
    assert np.all((face.landmarks[:, 1] > 50) & (face.landmarks[:, 1] < 170))
    assert face.eye_distance == pytest.approx(40.0)  # eyes at 30 % and 70 % of a 100-pixel-wide box
    rows = retinaface_rows([face, face])
    assert rows.shape == (2, 15)
    back = detection_from_row(rows[0])
    assert back.box == pytest.approx(face.box) and np.allclose(back.landmarks, face.landmarks)
    assert retinaface_rows([]).shape == (0, 15)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--frames", "1"), "--frames must be at least 2"),
        (("--isolated-frames", "1"), "--isolated-frames must be at least 2"),
        (("--lengths", "100", "1"), "--lengths must all be at least 2"),
        (("no-such-file.gif",), "is not a file"),
        (("--set", "no_such_option=1"), "unknown option"),
        (("--set", "flow"), "OPTION=VALUE"),
    ],
)
def test_bad_bench_arguments_are_config_errors(argv: tuple[str, ...], message: str) -> None:
    args = bench_args("--no-baseline", *argv)
    with pytest.raises(ConfigError, match=message):
        args.handler(args)


class _LoggedTimes(PartTimes):
    """Part times that also log where each measurement starts and ends."""

    def __init__(self, log: list[str]) -> None:
        super().__init__("encode")
        self.log = log

    @contextlib.contextmanager
    def frame(self):  # type: ignore[override]
        self.log.append("(")
        with super().frame():
            yield
        self.log.append(")")


class _HoldingSink:
    def __init__(self, held: int, log: list[str]) -> None:
        self.frames_held, self.log = held, log

    def write(self, frame: Frame) -> None:
        self.log.append(f"w{frame.index}")

    def finish(self) -> None:
        self.log.append("end")


@pytest.mark.parametrize(
    ("held", "expected"),
    [
        (1, "( w0 w1 ) ( w2 ) ( w3 ) ( end )"),  # frame i is encoded when i + 1 arrives, the last at finish
        (0, "( w0 ) ( w1 ) ( w2 ) ( w3 ) ( end )"),  # finish only writes the trailer: merged into the last frame
    ],
)
def test_each_encode_measurement_covers_one_frames_encoding(held: int, expected: str) -> None:
    log: list[str] = []
    times = _LoggedTimes(log)
    frames = [Frame(index, np.zeros((2, 2, 3), np.uint8)) for index in range(4)]
    encode_timed(_HoldingSink(held, log), frames, times)
    assert " ".join(log) == expected
    assert len(times.wall) == len(times.cpu) == len(times.page_faults) == 4


def test_the_gif_sink_says_whether_it_holds_a_frame_back() -> None:
    assert GifSink(io.BytesIO()).frames_held == 1
    assert GifSink(io.BytesIO(), GifOptions(despike=0)).frames_held == 0
    assert GifSink(io.BytesIO(), GifOptions(quality=100)).frames_held == 0


def write_flat_video(path: Path, colours: list[tuple[int, int, int]]) -> None:
    """An H.264 MP4 whose frames are each one flat colour (so a GIF can hold them exactly)."""
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p"
        stream.options = {"qp": "0"}
        for colour in colours:
            picture = np.empty((48, 64, 3), np.uint8)
            picture[:] = colour
            out.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        out.mux(stream.encode())


def decoded(path: Path) -> list[np.ndarray]:
    from gifstream.io import open_source

    source = open_source(path)
    source.open()
    try:
        return [frame.pixels for frame in source.frames()]
    finally:
        source.close()


@pytest.mark.parametrize("frames", [None, 5])
def test_a_video_input_is_measured_as_a_gif_of_its_frames(tmp_path: Path, frames: int | None) -> None:
    from gifstream.benchmark import prepare_input

    video = tmp_path / "clip.mp4"
    write_flat_video(video, [(200, 30, 30), (30, 200, 30), (30, 30, 200)])
    argv = ("--no-baseline", str(video)) + (() if frames is None else ("--frames", str(frames)))
    plan = plan_from_args(bench_args(*argv))

    prepared = prepare_input(plan, tmp_path, plan.frames)

    assert prepared.read_bytes()[:6] == b"GIF89a"  # what the notebook can read
    pictures = decoded(video)
    expected = pictures if frames is None else [pictures[i % 3] for i in range(frames)]
    got = decoded(prepared)
    assert len(got) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_a_gif_input_is_measured_as_it_is(tmp_path: Path) -> None:
    from gifstream.benchmark import prepare_input, write_gif

    gif = tmp_path / "in.gif"
    write_gif(gif, synthetic_frames(3, (40, 30)), 3)
    plan = plan_from_args(bench_args("--no-baseline", str(gif)))

    assert prepare_input(plan, tmp_path / "work", None) == gif


def test_a_video_without_frames_is_a_clear_error(tmp_path: Path) -> None:
    from gifstream.benchmark import prepare_input
    from gifstream.engine import InputError

    video = tmp_path / "empty.y4m"
    video.write_bytes(b"YUV4MPEG2 W64 H48 F10:1 Ip A1:1 C444\n")  # a header, no frame
    plan = plan_from_args(bench_args("--no-baseline", str(video), "--frames", "4"))

    with pytest.raises(InputError, match="no video frame"):
        prepare_input(plan, tmp_path, plan.frames)


class _EmptySource:
    def open(self) -> None: ...

    def frames(self):  # type: ignore[no-untyped-def]
        return iter(())

    def close(self) -> None: ...


def test_cycling_an_input_that_yields_no_frames_stops_with_an_error(tmp_path: Path, monkeypatch) -> None:
    import gifstream.io
    from gifstream.benchmark import cycled_frames

    monkeypatch.setattr(gifstream.io, "open_source", lambda path: _EmptySource())

    with pytest.raises(ConfigError, match="has no frames"):
        list(cycled_frames(tmp_path / "any.gif", 4))
