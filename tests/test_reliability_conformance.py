"""Every GIF of other projects' decoder test suites through `gifstream process`: a correct GIF, or one clean error.

Each file of ../shared/testdata/gif-conformance is its own test. Most run the
command line in this process (``gifstream.cli.main``, as the executable does);
a few run the real executable to prove its exit codes and its stderr.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import gifstream_command
from PIL import Image

from gifstream.cli import main

pytestmark = pytest.mark.shared

PASSTHROUGH = ["--restorer", "none", "--flow", "none", "--metrics", "none", "--quiet"]

CONFORMANCE_FILES = [
    "giflib/pic/fire.gif",
    "giflib/pic/gifgrid.gif",
    "giflib/pic/porsche.gif",
    "giflib/pic/solid2.gif",
    "giflib/pic/treescap-interlaced.gif",
    "giflib/pic/treescap.gif",
    "giflib/pic/wedge.gif",
    "giflib/pic/welcome2.gif",
    "giflib/pic/x-trans.gif",
    "image-gif/crashtest/issue-117-out-of-range.gif",
    "image-gif/crashtest/issue-96-small-codesize-2.gif",
    "image-gif/crashtest/issue-96-small-codesize.gif",
    "image-gif/regression/issue-208-block-type-beta.gif",
    "image-gif/regression/issue-208-block-type.gif",
    "image-gif/regression/issue-209-extension-block-type.gif",
    "image-gif/samples/2x2.gif",
    "image-gif/samples/alpha_gif_a.gif",
    "image-gif/samples/anim-gr.gif",
    "image-gif/samples/beacon.gif",
    "image-gif/samples/beacon_icc.gif",
    "image-gif/samples/beacon_xmp.gif",
    "image-gif/samples/gifplayer-muybridge.gif",
    "image-gif/samples/interlaced.gif",
    "image-gif/samples/moon_impact.gif",
    "image-gif/samples/sample_1.gif",
    "image-gif/samples/sample_big.gif",
    "image-gif/samples/set_hsts.gif",
    "image-gif/stall/issue-101-infinite-empty-loop.gif",
    "imageio/imageio_issue245.gif",
    "imageio/newtonscradle.gif",
    "libnsgif/afl/afl-000001.gif",
    "libnsgif/afl/afl-000011.gif",
    "libnsgif/afl/afl-000023.gif",
    "libnsgif/afl/afl-000049.gif",
    "libnsgif/afl/afl-000140.gif",
    "libnsgif/afl/afl-000293.gif",
    "libnsgif/afl/afl-000489.gif",
    "libnsgif/afl/afl-000658.gif",
    "libnsgif/lzwof.gif",
    "libnsgif/lzwoob.gif",
    "libnsgif/waves.gif",
    "pillow/avif_star.gif",
    "pillow/background_outside_palette.gif",
    "pillow/chi.gif",
    "pillow/comment_after_last_frame.gif",
    "pillow/comment_after_only_frame.gif",
    "pillow/decompression_bomb.gif",
    "pillow/decompression_bomb_extents.gif",
    "pillow/different_transparency.gif",
    "pillow/dispose_bgnd.gif",
    "pillow/dispose_bgnd_rgba.gif",
    "pillow/dispose_bgnd_transparency.gif",
    "pillow/dispose_none.gif",
    "pillow/dispose_none_load_end.gif",
    "pillow/dispose_prev.gif",
    "pillow/dispose_prev_first_frame.gif",
    "pillow/duplicate_frame.gif",
    "pillow/duplicate_number_of_loops.gif",
    "pillow/first_frame_transparency.gif",
    "pillow/hopper.gif",
    "pillow/hopper_resized.gif",
    "pillow/hopper_zero_comment_subblocks.gif",
    "pillow/iss634.gif",
    "pillow/issue_2811.gif",
    "pillow/missing_background.gif",
    "pillow/multiple_comments.gif",
    "pillow/no_palette.gif",
    "pillow/no_palette_after_rgb.gif",
    "pillow/no_palette_with_background.gif",
    "pillow/no_palette_with_transparency.gif",
    "pillow/no_palette_with_transparency_after_rgb.gif",
    "pillow/palette_not_needed_for_second_frame.gif",
    "pillow/second_frame_comment.gif",
    "pillow/test.colors.gif",
    "pillow/test_extents.gif",
    "pillow/test_extents_transparency.gif",
    "pillow/text_mono.gif",
    "pillow/transparent.gif",
    "pillow/transparent_dispose.gif",
    "pillow/zero_width.gif",
]

# Files SOURCES.md marks hostile (bombs, crash and stall tests, fuzzer output) and that
# Pillow itself cannot decode: each must be refused, with what the message must say.
SCREEN_TOO_BIG = "logical screen: frame size .* exceeds --max-frame-pixels 64000000"
CORRUPT = "frame [0-9]+ is truncated or corrupt"
REFUSED = {
    "image-gif/crashtest/issue-117-out-of-range.gif": CORRUPT,
    "image-gif/crashtest/issue-96-small-codesize-2.gif": SCREEN_TOO_BIG,  # 11390x12595
    "image-gif/crashtest/issue-96-small-codesize.gif": r"empty logical screen \(185x0\)",
    "image-gif/stall/issue-101-infinite-empty-loop.gif": SCREEN_TOO_BIG,  # 6727x65351
    "libnsgif/afl/afl-000001.gif": "is not a GIF",  # two bytes, no GIF signature
    "libnsgif/afl/afl-000011.gif": CORRUPT,
    "libnsgif/afl/afl-000023.gif": CORRUPT,
    "libnsgif/afl/afl-000049.gif": r"empty logical screen \(1056x0\)",
    "libnsgif/afl/afl-000140.gif": CORRUPT,
    "libnsgif/afl/afl-000293.gif": CORRUPT,
    "libnsgif/afl/afl-000489.gif": CORRUPT,
    "libnsgif/afl/afl-000658.gif": CORRUPT,
    "libnsgif/lzwof.gif": CORRUPT,
    "libnsgif/lzwoob.gif": CORRUPT,
    "pillow/decompression_bomb.gif": "frame 0: frame size 65535x66601 .* exceeds --max-frame-pixels",
    "pillow/decompression_bomb_extents.gif": "frame 1: frame size 65635x65635 .* exceeds --max-frame-pixels",
    "pillow/zero_width.gif": r"empty logical screen \(0x32\)",
}

# Pillow's own tests compare frame `index` of these GIFs with these RGBA renderings.
PILLOW_RENDERINGS = {
    "pillow/different_transparency.gif": ("different_transparency_merged.png", 1),
    "pillow/dispose_none_load_end.gif": ("dispose_none_load_end_second.png", 1),
    "pillow/dispose_prev_first_frame.gif": ("dispose_prev_first_frame_seeked.png", 1),
    "pillow/missing_background.gif": ("missing_background_first_frame.png", 1),
}
# giflib's gif2rgb paints every image opaquely onto one screen, without disposal or
# transparency. For these opaque files, each image painted over the last, that is the
# composited frame named here (fire: the last). welcome2.rgb does not qualify: it has
# transparency and disposal 2. x-trans is transparent: it matches only where opaque.
GIF2RGB_RENDERINGS = {
    "giflib/pic/gifgrid.gif": 0,
    "giflib/pic/porsche.gif": 0,
    "giflib/pic/solid2.gif": 0,
    "giflib/pic/treescap.gif": 0,
    "giflib/pic/treescap-interlaced.gif": 0,
    "giflib/pic/fire.gif": -1,
    "giflib/pic/x-trans.gif": 0,
}
# GIF output is re-quantised to at most 256 colours per frame; the bound the other GIF round-trip tests use.
MIN_PSNR_DB = 30.0
# Files the real executable runs, to prove exit codes and stderr outside this process.
REAL_PROCESS_FILES = {
    "pillow/hopper.gif": 0,
    "pillow/decompression_bomb.gif": 1,
    "libnsgif/afl/afl-000001.gif": 1,
    "libnsgif/lzwoob.gif": 1,
    "image-gif/stall/issue-101-infinite-empty-loop.gif": 1,
}


@pytest.fixture(scope="module")
def conformance(shared_testdata: Path) -> Path:
    return shared_testdata / "gif-conformance"


def logical_screen(path: Path) -> tuple[int, int]:
    """(width, height) straight from the GIF's screen descriptor."""
    width, height = struct.unpack_from("<HH", path.read_bytes(), 6)
    return width, height


def rgba_frames(path: Path, width: int, height: int) -> Iterator[tuple[np.ndarray, int]]:
    """Each frame as Pillow composites it, cropped to the logical screen, with its delay (one frame in memory)."""
    with Image.open(path) as image:
        for index in range(image.n_frames):
            image.seek(index)
            yield np.asarray(image.convert("RGBA"))[:height, :width], image.info.get("duration", 0)


def loop_of(path: Path) -> int | None:
    with Image.open(path) as image:
        return image.info.get("loop")


def assert_same_picture(got: np.ndarray, expected: np.ndarray, where: str) -> None:
    """Same transparency exactly; the same colours wherever both are opaque, up to GIF re-quantisation."""
    assert got.shape == expected.shape, where
    opaque = expected[..., 3] >= 128
    if not np.array_equal(got[..., 3] >= 128, opaque):
        np.testing.assert_array_equal(got[..., 3] >= 128, opaque, err_msg=where)  # says where they differ
    if opaque.any():
        assert psnr_where(got[..., :3], expected[..., :3], opaque) >= MIN_PSNR_DB, where


def psnr_where(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR over the pixels under ``mask`` (in integers, whole arrays: this runs on every frame of every file)."""
    difference = a.astype(np.int32) - b
    squared = np.einsum("ijk,ijk->ij", difference, difference)
    mse = float(squared[mask].sum()) / (3 * int(mask.sum()))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def output_frame(path: Path, index: int) -> np.ndarray:
    with Image.open(path) as image:
        image.seek(index % image.n_frames)
        return np.asarray(image.convert("RGBA"))


def check_reference_renderings(name: str, folder: Path, out: Path) -> None:
    if name in PILLOW_RENDERINGS:
        png, index = PILLOW_RENDERINGS[name]
        with Image.open(folder / "pillow" / "expected" / png) as reference:
            expected = np.asarray(reference.convert("RGBA"))
        assert_same_picture(output_frame(out, index), expected, f"{name} frame {index} vs {png}")
    if name in GIF2RGB_RENDERINGS:
        index = GIF2RGB_RENDERINGS[name]
        stem = Path(name).stem
        rgb = np.fromfile(folder / "giflib" / "expected_rgb" / f"{stem}.rgb", np.uint8)
        got = output_frame(out, index)
        opaque = got[..., 3] >= 128
        assert opaque.any()
        expected = rgb.reshape(*got.shape[:2], 3)
        assert psnr_where(got[..., :3], expected, opaque) >= MIN_PSNR_DB, f"{name} vs gif2rgb"


def test_every_conformance_file_is_listed(conformance: Path) -> None:
    present = sorted(str(p.relative_to(conformance)) for p in conformance.rglob("*.gif"))
    assert present == sorted(CONFORMANCE_FILES)
    assert set(REFUSED) <= set(CONFORMANCE_FILES) and set(REAL_PROCESS_FILES) <= set(CONFORMANCE_FILES)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", CONFORMANCE_FILES)
def test_conformance_file_through_the_command_line(
    conformance: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    source, out_dir = conformance / name, tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "out.gif"
    started = time.monotonic()
    code = main(["process", str(source), "-o", str(out), *PASSTHROUGH])
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    if name in REFUSED:
        lines = captured.err.splitlines()
        assert code == 1 and len(lines) == 1, captured.err
        assert lines[0].startswith(f"gifstream: error: {source}"), lines[0]
        assert_matches(REFUSED[name], lines[0])
        assert elapsed < 10
        assert list(out_dir.iterdir()) == [], "a refused input leaves no output and no temporary"
        return
    assert (code, captured.err) == (0, ""), captured.err
    assert [p.name for p in out_dir.iterdir()] == ["out.gif"]
    width, height = logical_screen(source)
    with Image.open(out) as written:
        assert written.size == (width, height)
    frames = zip(rgba_frames(out, width, height), rgba_frames(source, width, height), strict=True)
    for index, ((got, got_ms), (expected, expected_ms)) in enumerate(frames):
        assert got_ms == expected_ms, f"frame {index} delay"
        assert_same_picture(got, expected, f"{name} frame {index}")
    assert loop_of(out) == loop_of(source)
    check_reference_renderings(name, conformance, out)


def assert_matches(pattern: str, line: str) -> None:
    assert re.search(pattern, line), f"{pattern!r} not in {line!r}"


@pytest.mark.parametrize(("name", "code"), REAL_PROCESS_FILES.items())
def test_the_real_executable_exits_with_the_right_code(conformance: Path, tmp_path: Path, name: str, code: int) -> None:
    out = tmp_path / "out.gif"
    started = time.monotonic()
    result = gifstream_command("process", str(conformance / name), "-o", str(out), *PASSTHROUGH, timeout=30)
    elapsed = time.monotonic() - started
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert result.stdout == b""
    if code == 0:
        assert stderr == "" and [p.name for p in tmp_path.iterdir()] == ["out.gif"]
        return
    assert len(stderr.splitlines()) == 1 and stderr.startswith("gifstream: error: ") and "Traceback" not in stderr
    assert elapsed < 10
    assert list(tmp_path.iterdir()) == []
