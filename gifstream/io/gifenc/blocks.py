"""The byte blocks of a GIF89a file (header, loop extension, frames, trailer).

Image data is LZW-compressed by Pillow's GIF encoder; everything around it is
written here, so each frame can carry its own offset, size, colour table and
minimum code size.
"""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image

TRAILER = b";"
_COLOUR_RESOLUTION = 0x70  # 8 bits a primary, as every encoder writes


def _table_bits(colours: int) -> int:
    """log2 of the colour-table size that holds ``colours`` entries (a table has 2 to 256 entries)."""
    return max(1, (colours - 1).bit_length())


def colour_table(palette: np.ndarray) -> tuple[int, bytes]:
    """The table-size bits and the bytes of a colour table, zero-padded to a power of two."""
    bits = _table_bits(len(palette))
    padding = bytes(3 * ((1 << bits) - len(palette)))
    return bits, palette.astype(np.uint8).tobytes() + padding


def header(width: int, height: int, palette: np.ndarray, background: int, loop: int | None) -> bytes:
    """Signature, logical screen with its global colour table, and the NETSCAPE loop extension if ``loop``."""
    bits, table = colour_table(palette)
    screen = struct.pack("<6sHHBBB", b"GIF89a", width, height, 0x80 | _COLOUR_RESOLUTION | (bits - 1), background, 0)
    looping = b"" if loop is None else b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", loop) + b"\x00"
    return screen + table + looping


# LZW data is taken from Pillow's encoder in pieces of this size and written
# piece by piece. Joining a frame's data into one bytes object of its own,
# slightly different size every frame, fragmented glibc's heap over long runs
# (about 3 MB more memory held per 1,000 frames at 512x288); pieces of one size
# are reused instead.
LZW_PIECE_BYTES = 16384


def frame_pieces(
    indices: np.ndarray,
    left: int,
    top: int,
    delay_cs: int,
    disposal: int,
    transparent: int | None,
    local_palette: np.ndarray | None,
    table_colours: int,
) -> list[bytes]:
    """One frame: graphic control extension, image descriptor, optional local colour table and LZW data.

    ``indices`` is the (h, w) uint8 sub-rectangle placed at (left, top);
    ``table_colours`` is the number of entries of the colour table it indexes
    (the local one if given, else the global one), which sets the LZW code size.
    The frame's bytes come as a list of pieces, to be written in order.
    """
    height, width = indices.shape
    control = struct.pack("<3sBHBB", b"!\xf9\x04", (disposal << 2) | (transparent is not None), delay_cs,
                          transparent or 0, 0)  # fmt: skip
    flags, table = 0, b""
    if local_palette is not None:
        bits, table = colour_table(local_palette)
        flags = 0x80 | (bits - 1)
    descriptor = struct.pack("<BHHHHB", 0x2C, left, top, width, height, flags)
    code_size = max(2, _table_bits(table_colours))
    return [control + descriptor + table + bytes([code_size]), *lzw_pieces(indices, code_size), b"\x00"]


def lzw_pieces(indices: np.ndarray, code_size: int) -> list[bytes]:
    """The LZW-compressed data sub-blocks of ``indices`` (without the block terminator), as Pillow writes them."""
    image = Image.fromarray(np.ascontiguousarray(indices), "L")
    # What Image.tobytes("gif", ...) does, without joining the pieces into one object.
    encoder = Image._getencoder("L", "gif", ("L", code_size, 0))
    pieces = []
    try:
        encoder.setimage(image.im, (0, 0, *image.size))
        while True:
            _, status, piece = encoder.encode(LZW_PIECE_BYTES)
            pieces.append(piece)
            if status < 0:
                raise ValueError(
                    f"Pillow's GIF encoder failed (error {status}) on a {image.width}x{image.height} frame"
                )
            if status > 0:
                return pieces
    finally:
        encoder.cleanup()
