"""StreamValidator: a device refusing a package at the first impossible byte."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from luatos_common.packages import (
    ALL_KINDS,
    KIND_AIR8101,
    KIND_EC,
    KIND_FULL,
    KIND_LFTA,
    PackageError,
    StreamValidator,
    build_air8101_ota,
    build_ec_script,
    build_full,
    build_lfta,
)

FILES = {"main.lua": b"sys.run()\n", "blob.lua": bytes(range(256)) * 8}
BUILT = {
    KIND_AIR8101: build_air8101_ota(FILES),
    KIND_LFTA: build_lfta(FILES, timestamp=5),
    KIND_FULL: build_full("V2002", FILES),
    KIND_EC: build_ec_script(FILES),
}


def _feed(v: StreamValidator, data: bytes, chunk: int) -> None:
    for i in range(0, len(data), chunk):
        v.feed(data[i:i + chunk])


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("chunk", [1, 4096])
def test_accepts_whole_package_in_chunks(kind: str, chunk: int) -> None:
    data = BUILT[kind]
    if chunk == 1 and kind == KIND_AIR8101:
        data = build_air8101_ota({"main.lua": b"x"})
    v = StreamValidator(ALL_KINDS)
    _feed(v, data, chunk)
    assert v.bytes_received == len(data) and v.expected_size == len(data)
    pkg = v.finish()
    assert pkg.kind == kind and pkg.size == len(data)


def test_expected_size_known_once_header_is_in() -> None:
    data = BUILT[KIND_AIR8101]
    v = StreamValidator()
    v.feed(data[:1031])
    assert v.expected_size is None
    v.feed(data[1031:1032])
    assert v.expected_size == len(data)


@pytest.mark.parametrize(("first", "offset"), [(b"\x00", 0), (b"LFX", 2), (b"\xff" * 10 + b"\x00", 10)])
def test_first_impossible_byte_is_refused_at_once(first: bytes, offset: int) -> None:
    v = StreamValidator()
    with pytest.raises(PackageError, match=f"magic/prefix at offset {offset}"):
        v.feed(first)


def test_ec_is_not_a_device_format_by_default() -> None:
    with pytest.raises(PackageError, match="not a package this device accepts"):
        StreamValidator().feed(BUILT[KIND_EC][:4])
    StreamValidator([KIND_EC]).feed(BUILT[KIND_EC][:4])


def test_restricting_kinds() -> None:
    v = StreamValidator([KIND_AIR8101])
    with pytest.raises(PackageError, match=r"expected 0xFF \(Air8101 TAUL\), got 4c 46"):
        v.feed(b"LFTA")
    with pytest.raises(ValueError, match="unknown package kinds"):
        StreamValidator(["zip"])


def test_bad_taul_magic_refused_before_the_body() -> None:
    v = StreamValidator()
    v.feed(b"\xff" * 1024)
    with pytest.raises(PackageError, match="offset 1026"):
        v.feed(b"TAxL")


def test_bad_length_field_refused_in_header() -> None:
    d = bytearray(BUILT[KIND_AIR8101][:1032])
    struct.pack_into("<I", d, 1028, 35)
    with pytest.raises(PackageError, match="length field L.*multiple of 34"):
        StreamValidator().feed(bytes(d))


def test_bad_block_refused_as_soon_as_the_block_is_complete() -> None:
    d = bytearray(BUILT[KIND_AIR8101])
    d[1032 + 34 * 3 + 1] ^= 1
    v = StreamValidator()
    v.feed(bytes(d[:1032 + 34 * 3 + 33]))  # block 3 not complete yet
    with pytest.raises(PackageError, match="CRC of block 3"):
        v.feed(bytes(d[1032 + 34 * 3 + 33:1032 + 34 * 4]))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_more_data_than_announced(kind: str) -> None:
    v = StreamValidator(ALL_KINDS)
    v.feed(BUILT[kind])
    with pytest.raises(PackageError, match=f"size at offset {len(BUILT[kind])}.*more data than"):
        v.feed(b"\xff")


@pytest.mark.parametrize("kind", [KIND_FULL, KIND_EC])
def test_header_crc_refused_when_header_completes(kind: str) -> None:
    d = bytearray(BUILT[kind])
    d[10] ^= 1
    v = StreamValidator(ALL_KINDS)
    with pytest.raises(PackageError, match="header CRC"):
        v.feed(bytes(d[:100]))


def test_max_size() -> None:
    v = StreamValidator(max_size=2000)
    with pytest.raises(PackageError, match="announced size.*at most 2000"):
        v.feed(BUILT[KIND_AIR8101][:1032])


@pytest.mark.parametrize("kind", [KIND_AIR8101, KIND_LFTA, KIND_FULL])
def test_short_body_at_finish(kind: str) -> None:
    v = StreamValidator()
    v.feed(BUILT[kind][:-1])
    with pytest.raises(PackageError, match="short body"):
        v.finish()


def test_finish_on_nothing_or_partial_prefix() -> None:
    with pytest.raises(PackageError, match="empty"):
        StreamValidator().finish()
    v = StreamValidator()
    v.feed(b"\xff" * 100)
    with pytest.raises(PackageError, match="stream ended inside the prefix"):
        v.finish()


def test_finish_runs_full_validation() -> None:
    d = bytearray(BUILT[KIND_LFTA])
    d[-20] ^= 1
    v = StreamValidator()
    v.feed(bytes(d))
    with pytest.raises(PackageError, match="CRC32"):
        v.finish()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=30))
def test_chunking_does_not_matter(sizes: list[int]) -> None:
    data = BUILT[KIND_AIR8101]
    v = StreamValidator()
    pos = 0
    for s in sizes * (len(data) // sum(sizes) + 1):
        if pos >= len(data):
            break
        v.feed(data[pos:pos + s])
        pos += s
    assert v.finish().files == FILES
