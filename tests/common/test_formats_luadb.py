"""LuaDB v2: Luatools-style writing, device-style reading, and clear errors."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from luatos_common.luadb import (
    HEADER_LEN,
    LuadbEntry,
    build_luadb,
    parse_luadb,
    parse_luadb_image,
)
from luatos_common.packages import PackageError

FILES = {"main.lua": b'PROJECT = "demo"\nVERSION = "1.0.0"\n', "util.lua": b"return {}\n"}


def test_header_layout_is_luatools_style() -> None:
    img = build_luadb(FILES)
    head = img[:HEADER_LEN]
    assert head[:6] == bytes.fromhex("01045aa55aa5")
    assert head[6:10] == bytes.fromhex("02020200")  # version 2
    assert head[10:16] == bytes.fromhex("030418000000")  # header length 0x18
    assert head[16:20] == bytes.fromhex("04020200")  # two files
    assert head[20:22] == b"\xfe\x02"
    assert struct.unpack("<H", head[22:24])[0] == sum(head[:22]) & 0xFFFF


def test_record_checksum_is_byte_sum_of_the_tlvs() -> None:
    img = build_luadb({"main.lua": b"abc"}, pad_to=None)
    rec = img[HEADER_LEN:]
    # 01 04 magic, 02 08 "main.lua", 03 04 size, FE 02 sum, data
    assert rec[6:8] == b"\x02\x08" and rec[8:16] == b"main.lua"
    assert rec[16:22] == b"\x03\x04" + struct.pack("<I", 3)
    assert rec[22:24] == b"\xfe\x02"
    assert struct.unpack("<H", rec[24:26])[0] == sum(rec[:24]) & 0xFFFF
    assert rec[26:] == b"abc"
    assert len(img) == HEADER_LEN + 26 + 3


def test_padding_to_1k_with_zeros() -> None:
    img = build_luadb(FILES)
    assert len(img) == 1024
    unpadded = build_luadb(FILES, pad_to=None)
    assert img[len(unpadded):] == b"\x00" * (1024 - len(unpadded))


def test_round_trip_keeps_order() -> None:
    items = [("z.lua", b"1"), ("a.lua", b"22"), ("main.lua", b"333")]
    assert parse_luadb(build_luadb(items)) == [LuadbEntry(n, d) for n, d in items]


def test_parser_accepts_ff_checksums_and_reordered_header_and_unknown_tlv() -> None:
    # luatos-cli style: header length 0x12, FF FF checksums; header TLVs reordered + unknown
    head = (b"\x04\x02\x01\x00" + b"\x77\x03abc" + b"\x01\x04\x5a\xa5\x5a\xa5"
            + b"\x03\x04\x12\x00\x00\x00" + b"\x02\x02\x02\x00" + b"\xfe\x02\xff\xff")
    rec = (b"\x01\x04\x5a\xa5\x5a\xa5\x02\x08main.lua" + b"\x03\x04\x02\x00\x00\x00"
           + b"\xfe\x02\xff\xff" + b"ok")
    img = parse_luadb_image(head + rec + b"\xff" * 30)
    assert [(e.name, e.data) for e in img.entries] == [("main.lua", b"ok")]
    assert img.header_len_field == 0x12
    assert img.checksum_mismatches() == []


def test_checksum_values_are_ignored_but_reported() -> None:
    img = bytearray(build_luadb(FILES))
    img[HEADER_LEN + 24] ^= 0x01  # first record's stored sum
    parsed = parse_luadb_image(bytes(img))
    assert [e.name for e in parsed.entries] == ["main.lua", "util.lua"]
    (m,) = parsed.checksum_mismatches()
    assert "main.lua" in m and f"offset {HEADER_LEN}" in m


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda b: b[:3], r"header: TLV type 0x01 value at offset 2"),
        (lambda b: b"\x01\x04\x5a\xa5\x5a\xa6" + b[6:], r"header magic at offset 2"),
        (lambda b: b[:8] + b"\x00\x00" + b[10:], r"header version at offset 8.*nonzero"),
        (lambda b: b[:18] + b"\x00\x00" + b[20:], r"file count at offset 18.*1\.\.1024.*got 0"),
        (lambda b: b[:18] + b"\x01\x04" + b[20:], r"file count.*got 1025"),
        (lambda b: b[:18] + b"\x03\x00" + b[20:], r"file 3/3.*truncated|padding"),
        (lambda b: b[:200], r"big.lua\): data at offset 175 \(0xAF\): expected 500 bytes.*truncated"),
        (lambda b: b[:-5] + b"junk!", r"padding after the last file.*0x6A"),
    ],
)
def test_damage_is_named(mutate, pattern: str) -> None:  # type: ignore[no-untyped-def]
    img = build_luadb({"main.lua": b"m" * 100, "big.lua": b"b" * 500}, pad_to=None) + b"\0" * 40
    with pytest.raises(PackageError, match=pattern):
        parse_luadb(mutate(img))


def test_parse_errors_carry_structured_fields() -> None:
    img = build_luadb(FILES)
    bad = img[:18] + b"\x00\x00" + img[20:]
    with pytest.raises(PackageError) as ei:
        parse_luadb(bad)
    assert ei.value.format == "LuaDB"
    assert ei.value.offset == 18
    assert ei.value.got == 0


def test_empty_data() -> None:
    with pytest.raises(PackageError, match="magic.*empty"):
        parse_luadb(b"")


def test_parser_refuses_duplicate_names() -> None:
    a = build_luadb([("a.lua", b"1")], pad_to=None)
    rec = a[HEADER_LEN:]
    head = bytearray(a[:HEADER_LEN])
    head[18:20] = b"\x02\x00"
    with pytest.raises(PackageError, match=r"duplicate of the record at offset 24"):
        parse_luadb(bytes(head) + rec + rec)


@pytest.mark.parametrize(
    ("files", "pattern"),
    [
        ({}, "no files"),
        ({"x" * 32 + ".lua": b""}, "36 bytes; names are at most 31"),
        ({"lib/x.lua": b""}, "flat"),
        ({"": b""}, "empty file name"),
        ([("a.lua", b""), ("a.lua", b"")], "duplicate file name 'a.lua'"),
        ({f"f{i}": b"" for i in range(1025)}, "1025 files"),
    ],
)
def test_builder_refuses_what_a_device_cannot_hold(files, pattern: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PackageError, match=pattern):
        build_luadb(files)


def test_31_byte_name_and_1024_files_fit() -> None:
    name = "n" * 27 + ".lua"
    assert parse_luadb(build_luadb({name: b"x"}))[0].name == name
    many = {f"f{i}.lua": b"" for i in range(1024)}
    assert len(parse_luadb(build_luadb(many))) == 1024


names = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                       blacklist_characters="/\\"), min_size=1, max_size=31)


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(names, st.binary(max_size=300), min_size=1, max_size=12),
       st.sampled_from([None, 1, 64, 1024]))
def test_round_trip_property(files: dict[str, bytes], pad_to: int | None) -> None:
    entries = parse_luadb(build_luadb(files, pad_to=pad_to))
    assert {e.name: e.data for e in entries} == files
    assert [e.name for e in entries] == list(files)
    assert all(e.computed_checksum == e.stored_checksum for e in entries)


def test_header_tlv_limit_is_bounded() -> None:
    img = build_luadb(FILES, pad_to=None)
    unknown = b"\x70\x00" * 130
    with pytest.raises(PackageError, match=r"header at offset \d+.*within 128 TLVs"):
        parse_luadb(unknown + img)
    # a few unknown TLVs before the magic are skipped, as the device does
    assert [e.name for e in parse_luadb(b"\x70\x01Z" * 3 + img)] == list(FILES)
