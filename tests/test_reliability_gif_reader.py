"""The GIF reader's walk of the block structure sees exactly the frames and delays Pillow decodes.

The walk is what the limits are checked against before anything is decoded,
and what reports the frame count and the delays; Pillow is what decodes. A
file on which the two disagree has frames the limits never saw.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from gifstream.io.gif import GifSource

PALETTE = bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255])  # red, green, blue, white


def lzw(indices: list[int], min_code_size: int = 2) -> bytes:
    """Image data for ``indices``: a clear code before every literal, so every code is min_code_size + 1 bits."""
    clear, end, width = 1 << min_code_size, (1 << min_code_size) + 1, min_code_size + 1
    codes = [code for index in indices for code in (clear, index)] + [end]
    bits = sum(code << (width * i) for i, code in enumerate(codes))
    packed = bits.to_bytes((width * len(codes) + 7) // 8, "little")
    chunks = [packed[i : i + 255] for i in range(0, len(packed), 255)]
    return bytes([min_code_size]) + b"".join(bytes([len(c)]) + c for c in chunks) + b"\x00"


def control(delay_cs: int) -> bytes:
    return b"\x21\xf9\x04" + struct.pack("<BHB", 0, delay_cs, 0) + b"\x00"


def image(width: int, height: int, colour: int) -> bytes:
    return b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + lzw([colour] * (width * height))


def gif(*blocks: bytes) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", 4, 4, 0x81, 0, 0) + PALETTE + b"".join(blocks) + b";"


def read(data: bytes) -> tuple[int | None, list[float], list[float], list[np.ndarray]]:
    """GifSource's frame count, header-walk delays, decoded delays and pixels."""
    source = GifSource(io.BytesIO(data))
    try:
        info = source.open()
        frames = list(source.frames())
        return (
            info.frame_count,
            list(source.durations_ms()),
            [f.duration_ms for f in frames],
            [f.pixels for f in frames],
        )
    finally:
        source.close()


def pillow_reading(data: bytes) -> tuple[list[float], list[np.ndarray]]:
    with Image.open(io.BytesIO(data)) as picture:
        durations, pixels = [], []
        for index in range(picture.n_frames):
            picture.seek(index)
            durations.append(float(picture.info.get("duration", 0)))
            pixels.append(np.asarray(picture.convert("RGB")))
        return durations, pixels


# Extensions whose first (or, for the loop extension, second) sub-block is the terminator.
# Pillow then reads on past it, taking the next bytes for more sub-blocks.
OPENERS = {
    "unknown-label": b"\x21\x01\x00",
    "empty-graphic-control": b"\x21\xf9\x00",
    "loop-extension-without-its-count": b"\x21\xff\x0bNETSCAPE2.0\x00",
}


def concealed_frame_gif(opener: bytes) -> bytes:
    """To the specification: ``opener``, a comment, a 1x1 blue 200 ms frame. To Pillow: a 2x2 green 700 ms one first.

    After ``opener`` Pillow takes the comment's introducer (0x21) for a
    sub-block length of 33, which ends on the zero byte planted in the
    comment; what follows in the comment is, to Pillow, a frame.
    """
    content = b"\x01" * 31 + b"\x00" + control(70) + image(2, 2, 1)
    comment = b"\x21\xfe" + bytes([len(content)]) + content + b"\x00"
    assert comment[34] == 0
    return gif(opener, comment, control(20), image(1, 1, 2))


@pytest.mark.parametrize("opener", OPENERS.values(), ids=OPENERS)
def test_a_frame_only_pillow_sees_is_counted_timed_and_decoded(opener: bytes) -> None:
    data = concealed_frame_gif(opener)
    pillow_durations, pillow_pixels = pillow_reading(data)
    assert pillow_durations == [700.0, 200.0]  # what the construction plants, as Pillow reads it
    count, walked, decoded, pixels = read(data)
    assert count == 2
    assert walked == decoded == [700.0, 200.0]
    np.testing.assert_array_equal(pixels[0][:2, :2], np.full((2, 2, 3), (0, 255, 0), np.uint8))
    for ours, theirs in zip(pixels, pillow_pixels, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_graphic_control_extension_without_a_transparent_index_byte_still_sets_the_delay() -> None:
    # Three bytes (flags and delay) are all Pillow needs when the transparency flag is clear.
    short_control = b"\x21\xf9\x03" + struct.pack("<BH", 0, 35) + b"\x00"
    data = gif(short_control, image(4, 4, 0), control(10), image(4, 4, 3))
    assert pillow_reading(data)[0] == [350.0, 100.0]
    count, walked, decoded, _ = read(data)
    assert count == 2 and walked == decoded == [350.0, 100.0]


def test_a_comment_with_no_sub_blocks_ends_at_its_terminator() -> None:
    # Pillow reads no further after an empty comment (unlike other extensions): neither may the walk.
    data = gif(b"\x21\xfe\x00", control(30), image(4, 4, 2), control(40), image(4, 4, 1))
    count, walked, decoded, pixels = read(data)
    assert count == 2 and walked == decoded == [300.0, 400.0]
    np.testing.assert_array_equal(pixels[0], np.full((4, 4, 3), (0, 0, 255), np.uint8))
