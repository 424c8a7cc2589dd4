"""Hypothesis strategies that mutate bytes: the classic fuzzer moves (bit flips, interesting values,
deletions, insertions, duplications, truncation, splicing two seeds) plus format-aware ones (a header
field of a PNG, JPEG or BMP set to an interesting value, PNG chunk checksums made right again so that
the decoder reads past them). Every move is drawn from Hypothesis, so a failing input shrinks to few,
small moves.
"""
from __future__ import annotations

import struct
import zlib
from typing import Callable, Mapping, Sequence

from hypothesis import strategies as st

# values at the edges of the integer types that headers use (sizes, counts, offsets)
INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF)
INTERESTING_16 = (0, 1, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF)
INTERESTING_32 = (0, 1, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 20_000, 65_500, 100_000, 1_000_000)

Move = Callable[[bytearray, Sequence[bytes]], bytearray]


def _at(data: bytearray, pos: int) -> int:
    return pos % len(data) if data else 0


def _flip(pos: int, bit: int) -> Move:
    def move(data: bytearray, _: Sequence[bytes]) -> bytearray:
        if data:
            data[_at(data, pos)] ^= 1 << bit
        return data
    return move


def _set_byte(pos: int, value: int) -> Move:
    def move(data: bytearray, _: Sequence[bytes]) -> bytearray:
        if data:
            data[_at(data, pos)] = value
        return data
    return move


def _set_word(pos: int, value: int, size: int, big: bool) -> Move:
    def move(data: bytearray, _: Sequence[bytes]) -> bytearray:
        if len(data) >= size:
            i = pos % (len(data) - size + 1)
            data[i:i + size] = (value % (1 << (8 * size))).to_bytes(size, "big" if big else "little")
        return data
    return move


def _delete(pos: int, length: int) -> Move:
    def move(data: bytearray, _: Sequence[bytes]) -> bytearray:
        i = _at(data, pos)
        del data[i:i + length]
        return data
    return move


def _insert(pos: int, chunk: bytes) -> Move:
    def move(data: bytearray, _: Sequence[bytes]) -> bytearray:
        i = _at(data, pos)
        data[i:i] = chunk
        return data
    return move


def _duplicate(pos: int, length: int) -> Move:
    def move(data: bytearray, _: Sequence[bytes]) -> bytearray:
        i = _at(data, pos)
        data[i:i] = data[i:i + length]
        return data
    return move


def _truncate(pos: int) -> Move:
    def move(data: bytearray, _: Sequence[bytes]) -> bytearray:
        return data[: _at(data, pos)]
    return move


def _splice(pos: int, other: int, other_pos: int) -> Move:
    def move(data: bytearray, seeds: Sequence[bytes]) -> bytearray:
        donor = seeds[other % len(seeds)]
        return data[: _at(data, pos)] + bytearray(donor[other_pos % max(len(donor), 1):])
    return move


positions = st.integers(0, 1 << 20)


def byte_moves() -> st.SearchStrategy[Move]:
    """One generic mutation."""
    return st.one_of(
        st.builds(_flip, positions, st.integers(0, 7)),
        st.builds(_set_byte, positions, st.one_of(st.sampled_from(INTERESTING_8), st.integers(0, 255))),
        st.builds(_set_word, positions, st.sampled_from(INTERESTING_16), st.just(2), st.booleans()),
        st.builds(_set_word, positions, st.sampled_from(INTERESTING_32), st.just(4), st.booleans()),
        st.builds(_delete, positions, st.integers(1, 64)),
        st.builds(_insert, positions, st.binary(min_size=1, max_size=32)),
        st.builds(_duplicate, positions, st.integers(1, 256)),
        st.builds(_truncate, positions),
        st.builds(_splice, positions, st.integers(0, 64), positions),
    )


# ---------------------------------------------------------------- format-aware moves
def png_fix_crcs(data: bytearray) -> bytearray:
    """Recompute every PNG chunk's CRC (as far as the chunk lengths can be followed), so that a mutated
    chunk reaches the decoder instead of failing the checksum."""
    i = 8
    while i + 12 <= len(data):
        length = int.from_bytes(data[i:i + 4], "big")
        end = i + 8 + length
        if end + 4 > len(data):
            break
        data[end:end + 4] = struct.pack(">I", zlib.crc32(bytes(data[i + 4:end])) & 0xFFFFFFFF)
        i = end + 4
    return data


# (offset, size in bytes, big-endian) of header fields worth pushing to their limits
PNG_FIELDS = ((16, 4, True), (20, 4, True), (24, 1, True), (25, 1, True), (26, 1, True), (27, 1, True),
              (28, 1, True), (8, 4, True), (33, 4, True))         # IHDR: width, height, depth, colour type...
BMP_FIELDS = ((2, 4, False), (10, 4, False), (14, 4, False), (18, 4, False), (22, 4, False), (26, 2, False),
              (28, 2, False), (30, 4, False), (34, 4, False), (46, 4, False), (50, 4, False))


def _jpeg_fields(data: bytearray) -> list[tuple[int, int, bool]]:
    """Height, width and component count of every SOFn segment, and every segment's length field."""
    fields, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        fields.append((i + 2, 2, True))
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            fields += [(i + 4, 1, True), (i + 5, 2, True), (i + 7, 2, True), (i + 9, 1, True)]
        if marker == 0xDA:
            break
        i += 2 + length
    return fields


def _set_field(which: int, value: int, fix_png: bool) -> Move:
    def move(data: bytearray, _: Sequence[bytes]) -> bytearray:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            fields = PNG_FIELDS
        elif data[:2] == b"BM":
            fields = BMP_FIELDS
        elif data[:2] == b"\xff\xd8":
            fields = tuple(_jpeg_fields(data))
        else:
            return data
        if not fields:
            return data
        off, size, big = fields[which % len(fields)]
        if off + size <= len(data):
            data[off:off + size] = (value % (1 << (8 * size))).to_bytes(size, "big" if big else "little")
        if fix_png and data[:8] == b"\x89PNG\r\n\x1a\n":
            png_fix_crcs(data)
        return data
    return move


def _fix_png(data: bytearray, _: Sequence[bytes]) -> bytearray:
    return png_fix_crcs(data) if data[:8] == b"\x89PNG\r\n\x1a\n" else data


def image_moves() -> st.SearchStrategy[Move]:
    """A generic mutation, a header field of the image set to an edge value, or PNG checksums fixed."""
    values = st.one_of(st.sampled_from(INTERESTING_32), st.integers(0, 1 << 32))
    return st.one_of(byte_moves(), st.builds(_set_field, st.integers(0, 63), values, st.booleans()),
                     st.just(_fix_png))


@st.composite
def mutated(draw, seeds: Mapping[str, bytes], moves: st.SearchStrategy[Move] | None = None,
            max_moves: int = 6) -> tuple[str, bytes]:
    """``(seed name, bytes)``: a seed after 0 to ``max_moves`` mutations (0: the seed itself)."""
    names = sorted(seeds)
    name = draw(st.sampled_from(names))
    data = bytearray(seeds[name])
    donors = [seeds[n] for n in names]
    for move in draw(st.lists(moves if moves is not None else byte_moves(), max_size=max_moves)):
        data = move(data, donors)
    return name, bytes(data)
