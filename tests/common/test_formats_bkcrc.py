"""BK CRC16 framing: test vectors from the reference, sizes, round trips, damage reports."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from luatos_common.bkcrc import (
    PackageError,
    bad_blocks,
    crc16_cms,
    frame,
    framed_size,
    unframe,
)
from luatos_common.packages import PackageError as PublicPackageError


def _bitwise_crc(data: bytes) -> int:
    """Textbook CRC-16/CMS, one bit at a time, to cross-check the table-driven version."""
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def test_reference_vectors() -> None:
    assert crc16_cms(b"123456789") == 0xAEE7
    assert crc16_cms(b"\xff" * 32) == 0x000C


@pytest.mark.parametrize("n", [0, 1, 2, 31, 63, 64, 65, 127, 200, 1001])
def test_table_driven_matches_bitwise(n: int) -> None:
    data = random.Random(n).randbytes(n)
    assert crc16_cms(data) == _bitwise_crc(data)


def test_public_error_is_the_same_class() -> None:
    assert PackageError is PublicPackageError
    assert issubclass(PackageError, ValueError)


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 64, 65, 1000])
def test_framed_size_and_layout(n: int) -> None:
    data = bytes(range(256)) * 4
    data = data[:n]
    framed = frame(data)
    assert len(framed) == framed_size(n) == -(-n // 32) * 34
    for i in range(0, len(framed), 34):
        block = framed[i:i + 32]
        assert framed[i + 32:i + 34] == crc16_cms(block).to_bytes(2, "big")
    if n % 32:
        assert framed[-2 - (32 - n % 32):-2] == b"\xff" * (32 - n % 32)


def test_all_ff_block_frames_with_reference_crc() -> None:
    assert frame(b"\xff" * 32) == b"\xff" * 32 + b"\x00\x0c"


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600))
def test_round_trip_property(data: bytes) -> None:
    out = unframe(frame(data))
    assert out[:len(data)] == data
    assert out[len(data):] == b"\xff" * (len(out) - len(data))
    assert len(out) % 32 == 0


def test_unframe_rejects_bad_length() -> None:
    framed = frame(b"x" * 100)
    with pytest.raises(PackageError, match=r"length.*multiple of 34.*got 135"):
        unframe(framed[:-1])


@pytest.mark.parametrize("block", [0, 1, 2, 3])
@pytest.mark.parametrize("where", ["data-first", "data-last", "crc"])
def test_flip_in_each_block_region_is_named(block: int, where: str) -> None:
    framed = bytearray(frame(bytes(range(128))))
    pos = block * 34 + {"data-first": 0, "data-last": 31, "crc": 33}[where]
    framed[pos] ^= 0x40
    with pytest.raises(PackageError) as ei:
        unframe(bytes(framed))
    msg = str(ei.value)
    assert f"CRC of block {block}" in msg
    assert f"offset {block * 34 + 32}" in msg
    assert ei.value.field == f"CRC of block {block}"
    assert bad_blocks(bytes(framed)) == [
        (block, block * 34, int.from_bytes(framed[block * 34 + 32:block * 34 + 34], "big"),
         crc16_cms(bytes(framed[block * 34:block * 34 + 32])))]


def test_unframe_reports_count_of_further_bad_blocks_and_base_offset() -> None:
    framed = bytearray(frame(b"a" * 32 * 5))
    for b in (1, 3, 4):
        framed[b * 34 + 5] ^= 1
    with pytest.raises(PackageError, match=r"block 1 at offset 1098.*2 more bad block"):
        unframe(bytes(framed), base_offset=1032)


def test_unframe_without_verify_returns_data() -> None:
    framed = bytearray(frame(b"hello" * 10))
    framed[33] ^= 0xFF
    assert unframe(bytes(framed), verify=False)[:50] == b"hello" * 10
