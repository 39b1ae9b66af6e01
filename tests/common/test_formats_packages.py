"""Package detection and validation: every format round-trips; every damage class is named."""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from luatos_common import bkcrc
from luatos_common.luadb import build_luadb, parse_luadb
from luatos_common.packages import (
    KIND_AIR8101,
    KIND_EC,
    KIND_FULL,
    KIND_LFTA,
    PackageError,
    build_air8101_ota,
    build_ec_script,
    build_full,
    build_lfta,
    detect_and_validate,
    inspect_package,
    parse_vendor_filename,
    vendor_filename,
)

FILES = {"main.lua": b'PROJECT = "demo"\nVERSION = "1.0.3"\nsys.run()\n',
         "netdrv_wifi.lua": bytes(range(256)) * 3}


# ------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize(("build", "kind"), [
    (build_air8101_ota, KIND_AIR8101),
    (build_lfta, KIND_LFTA),
    (lambda f: build_full("V2002", f), KIND_FULL),
    (build_ec_script, KIND_EC),
])
def test_round_trip(build, kind: str) -> None:  # type: ignore[no-untyped-def]
    data = build(FILES)
    pkg = detect_and_validate(data)
    assert pkg.kind == kind
    assert pkg.size == len(data)
    assert pkg.sha256 == hashlib.sha256(data).hexdigest()
    assert pkg.files == FILES
    assert pkg.core_version == ("V2002" if kind == KIND_FULL else None)
    report = inspect_package(data)
    assert report.ok and report.kind == kind
    assert report.files == [(n, len(d)) for n, d in FILES.items()]


def test_air8101_layout_matches_reference() -> None:
    data = build_air8101_ota(FILES)
    assert data[:1024] == b"\xff" * 1024
    assert data[1024:1028] == b"TAUL"
    length = struct.unpack_from("<I", data, 1028)[0]
    assert len(data) == 1032 + length and length % 34 == 0
    image = bkcrc.unframe(data[1032:])
    assert image[:len(build_luadb(FILES))] == build_luadb(FILES)
    pkg = detect_and_validate(data)
    assert pkg.details["type"] == 1 and pkg.details["expected_len"] == len(data)


def test_lfta_layout_matches_reference() -> None:
    data = build_lfta(FILES, timestamp=0x6094D997)
    f = struct.unpack_from("<64I", data)
    assert data[:4] == b"LFTA" and f[1] == 0 and f[2] == 0x10 and f[3] == 0x6094D997
    assert f[4] == 1 and f[5] == 0 and f[6] == len(data) - 256
    assert f[7] == zlib.crc32(data[256:]) and not any(f[8:])
    assert {e.name: e.data for e in parse_luadb(gzip.decompress(data[256:]))} == FILES


def test_ec_layout_matches_reference() -> None:
    data = build_ec_script(FILES)
    magic, hcrc = struct.unpack_from("<II", data)
    assert magic == 0xEAF18C16
    assert hcrc == zlib.crc32(data[8:92]) ^ 0xFFFFFFFF
    common_len, sdk_len = struct.unpack_from("<II", data, 52)
    assert sdk_len == 0 and len(data) == 92 + common_len
    assert data[60:76] == hashlib.md5(data[92:]).digest()
    total, dlen = struct.unpack_from("<II", data, 96)
    assert total == dlen == common_len - 36
    assert struct.unpack_from("<I", build_ec_script(FILES, chip="EC7xx"))[0] == 0xEAC37218


def test_full_carries_core_version_and_core_image() -> None:
    data = build_full("V2002", FILES, core_image=b"\x90" * 100)
    pkg = detect_and_validate(data)
    assert pkg.core_version == "V2002" and pkg.details["core_image_len"] == 100
    assert pkg.files == FILES
    with pytest.raises(ValueError, match="core version"):
        build_full("", FILES)
    with pytest.raises(ValueError, match="core version"):
        build_full("V 2002", FILES)


# ------------------------------------------------------------------------- refusals: general

def test_empty_is_refused() -> None:
    with pytest.raises(PackageError, match=r"size.*0 bytes \(empty"):
        detect_and_validate(b"")


@pytest.mark.parametrize(("data", "pattern"), [
    (b"hello world", r"unknown package format"),
    (b"PK\x03\x04rest", r"ZIP archive.*\.soc"),
    (build_luadb(FILES), r"bare LuaDB image"),
])
def test_unknown_formats_are_named(data: bytes, pattern: str) -> None:
    with pytest.raises(PackageError, match=pattern):
        detect_and_validate(data)


# ------------------------------------------------------------------------ refusals: Air8101

def _air() -> bytearray:
    return bytearray(build_air8101_ota(FILES))


def test_air8101_prefix_byte() -> None:
    d = _air()
    d[700] = 0xFE
    with pytest.raises(PackageError, match=r"0xFF prefix byte at offset 700.*got 0xFE"):
        detect_and_validate(bytes(d))


def test_air8101_magic() -> None:
    d = _air()
    d[1024:1028] = b"TAUX"
    with pytest.raises(PackageError, match=r"magic at offset 1024.*'TAUL'.*54 41 55 58"):
        detect_and_validate(bytes(d))


@pytest.mark.parametrize(("delta", "pattern"), [
    (1, r"length field L at offset 1028.*multiple of 34"),
    (34, r"total size.*truncated"),
    (-34, r"total size.*34 bytes after the framed image"),
])
def test_air8101_wrong_length_field(delta: int, pattern: str) -> None:
    d = _air()
    length = struct.unpack_from("<I", d, 1028)[0]
    struct.pack_into("<I", d, 1028, length + delta)
    with pytest.raises(PackageError, match=pattern):
        detect_and_validate(bytes(d))


@pytest.mark.parametrize("cut", [1, 34, 500])
def test_air8101_truncated(cut: int) -> None:
    with pytest.raises(PackageError, match=r"total size.*file truncated"):
        detect_and_validate(bytes(_air()[:-cut]))


def test_air8101_short_header() -> None:
    with pytest.raises(PackageError, match=r"header.*1032 bytes.*got 1030 bytes"):
        detect_and_validate(bytes(_air()[:1030]))


@pytest.mark.parametrize("block", [0, 5, -1])
@pytest.mark.parametrize("in_crc", [False, True])
def test_air8101_flip_in_each_block_region(block: int, in_crc: bool) -> None:
    d = _air()
    nblocks = (len(d) - 1032) // 34
    b = block % nblocks
    pos = 1032 + b * 34 + (33 if in_crc else 7)
    d[pos] ^= 0x10
    with pytest.raises(PackageError) as ei:
        detect_and_validate(bytes(d))
    assert f"CRC of block {b}" in str(ei.value)
    assert ei.value.offset == 1032 + b * 34 + 32


def test_air8101_requires_main() -> None:
    with pytest.raises(PackageError, match=r"no main.luac or main.lua.*netdrv_wifi.lua"):
        detect_and_validate(build_air8101_ota({"netdrv_wifi.lua": b"x"}))
    assert detect_and_validate(build_air8101_ota({"main.luac": b"\x1bLua"})).files


def test_air8101_luadb_that_does_not_parse() -> None:
    junk = b"\x01\x04\x5a\xa5\x5a\xa5\x02\x02\x00\x00" + b"\x00" * 54
    framed = bkcrc.frame(junk)
    data = b"\xff" * 1024 + b"TAUL" + struct.pack("<I", len(framed)) + framed
    with pytest.raises(PackageError, match=r"script image.*unframed.*header version"):
        detect_and_validate(data)


# --------------------------------------------------------------------------- refusals: LFTA

def _lfta() -> bytearray:
    return bytearray(build_lfta(FILES, timestamp=1))


def test_lfta_bad_crc32() -> None:
    d = _lfta()
    d[300] ^= 1
    with pytest.raises(PackageError, match=r"payload CRC32 field \[7\] at offset 28"):
        detect_and_validate(bytes(d))


def test_lfta_wrong_length_and_truncation() -> None:
    d = _lfta()
    with pytest.raises(PackageError, match=r"payload length field \[6\].*file truncated"):
        detect_and_validate(bytes(d[:-3]))
    with pytest.raises(PackageError, match=r"payload length field \[6\].*extra bytes"):
        detect_and_validate(bytes(d) + b"\0")
    with pytest.raises(PackageError, match=r"LFTA package: header.*256 bytes.*got 100"):
        detect_and_validate(bytes(d[:100]))


def _lfta_with_payload(payload: bytes) -> bytes:
    f = [0] * 64
    f[0], f[2], f[4], f[6], f[7] = 0x4154464C, 0x10, 1, len(payload), zlib.crc32(payload)
    return struct.pack("<64I", *f) + payload


def test_lfta_bad_gzip() -> None:
    with pytest.raises(PackageError, match=r"gzip payload at offset 256.*valid gzip"):
        detect_and_validate(_lfta_with_payload(b"not gzip at all"))
    gz = gzip.compress(build_luadb(FILES))
    with pytest.raises(PackageError, match=r"gzip payload.*ends early"):
        detect_and_validate(_lfta_with_payload(gz[:-12]))


def test_lfta_gzip_bomb_is_refused() -> None:
    with pytest.raises(PackageError, match=r"gzip payload.*at most 16777216 bytes unpacked"):
        detect_and_validate(_lfta_with_payload(gzip.compress(b"\0" * (17 << 20), 1)))


def test_lfta_gzip_of_non_luadb() -> None:
    with pytest.raises(PackageError, match=r"LFTA package: script image.*gunzipped"):
        detect_and_validate(_lfta_with_payload(gzip.compress(b"plain text")))


# ----------------------------------------------------------------------------- refusals: EC

def _ec() -> bytearray:
    return bytearray(build_ec_script(FILES))


def test_ec_bad_header_crc() -> None:
    d = _ec()
    d[10] ^= 1  # inside MainVersion, covered by the header CRC
    with pytest.raises(PackageError, match=r"EC package: header CRC at offset 4"):
        detect_and_validate(bytes(d))


def test_ec_bad_md5() -> None:
    d = _ec()
    d[-1] ^= 1
    with pytest.raises(PackageError, match=r"common part MD5 at offset 60"):
        detect_and_validate(bytes(d))


def test_ec_truncated() -> None:
    with pytest.raises(PackageError, match=r"EC package: total size.*truncated"):
        detect_and_validate(bytes(_ec()[:-1]))


# --------------------------------------------------------------------------- refusals: full

def _full() -> bytearray:
    return bytearray(build_full("V2002", FILES))


def test_full_bad_header_crc() -> None:
    d = _full()
    d[9] ^= 1  # inside the core version
    with pytest.raises(PackageError, match=r"luatos-full package: header CRC32 at offset 76"):
        detect_and_validate(bytes(d))


def test_full_payload_corruption_and_truncation() -> None:
    d = _full()
    d[-1] ^= 1
    with pytest.raises(PackageError, match=r"payload SHA-256 at offset 32"):
        detect_and_validate(bytes(d))
    with pytest.raises(PackageError, match=r"total size.*file truncated"):
        detect_and_validate(bytes(_full()[:-10]))


# ------------------------------------------------------------------------------- inspection

def test_inspect_lists_every_bad_block() -> None:
    d = _air()
    for b in (2, 9):
        d[1032 + b * 34 + 3] ^= 0xFF
    rep = inspect_package(bytes(d))
    assert not rep.ok and rep.package is None
    assert [c.name for c in rep.failures] == ["CRC of block 2", "CRC of block 9"]
    assert [n for n, _ in rep.files] == list(FILES)  # still listed after unframing


def test_inspect_unknown_format() -> None:
    rep = inspect_package(b"\x00\x01")
    assert rep.kind is None and not rep.ok and "unknown package format" in rep.failures[0].detail


# ---------------------------------------------------------------------------- vendor names

def test_vendor_filename_round_trip() -> None:
    name = vendor_filename("PANSHI_CAT1", "V2044", "001.002.019", "Air780EHM")
    assert name == "PANSHI_CAT1_2044.001.019_LuatOS-SoC_Air780EHM.bin"
    v = parse_vendor_filename("/tmp/dist/" + name)
    assert v is not None
    assert v == ("PANSHI_CAT1", "V2044", "001.019", "Air780EHM")
    assert v.project == "PANSHI_CAT1" and v.fota_version == "2044.001.019"


@pytest.mark.parametrize("name", [
    "demo.bin", "demo_2001.001_LuatOS-SoC_Air8101.bin", "_2001.1.0_LuatOS-SoC_Air8101.bin",
    "demo_2001.001.000_LuatOS-SoC_Air8101.soc",
])
def test_vendor_filename_not_matching(name: str) -> None:
    assert parse_vendor_filename(name) is None


@pytest.mark.parametrize(("args", "pattern"), [
    (("", "V1", "1.0.0", "Air8101"), "project"),
    (("a b", "V1", "1.0.0", "Air8101"), "project"),
    (("p", "X1", "1.0.0", "Air8101"), "core"),
    (("p", "V1", "1.0", "Air8101"), None),
    (("p", "V1", "1.x.0", "Air8101"), "script version"),
    (("p", "V1", "1.0.0", "Air 8101"), "chip"),
])
def test_vendor_filename_checks_parts(args: tuple[str, str, str, str], pattern: str | None) -> None:
    if pattern is None:
        assert vendor_filename(*args) == "p_1.1.0_LuatOS-SoC_Air8101.bin"
    else:
        with pytest.raises(ValueError, match=pattern):
            vendor_filename(*args)


# ------------------------------------------------------------------------ properties + extras

_SMALL = {"main.lua": b"sys.run()\n", "a.lua": b"x" * 70}
_BUILT = {
    KIND_AIR8101: build_air8101_ota(_SMALL),
    KIND_FULL: build_full("V2002", _SMALL),
    KIND_EC: build_ec_script(_SMALL),
}


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(sorted(_BUILT)), st.data())
def test_every_single_byte_flip_is_refused(kind: str, data: st.DataObject) -> None:
    """In these formats every byte is covered by a magic, a length, a CRC or a digest."""
    pkg = bytearray(_BUILT[kind])
    pos = data.draw(st.integers(0, len(pkg) - 1))
    pkg[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(PackageError):
        detect_and_validate(bytes(pkg))


lua_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=27)


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(lua_names.map(lambda s: s + ".lua"), st.binary(max_size=400),
                       max_size=6))
def test_round_trip_property(extra: dict[str, bytes]) -> None:
    files = {"main.lua": b"sys.run()\n", **extra}
    for data in (build_air8101_ota(files), build_lfta(files, timestamp=0),
                 build_full("V2001", files), build_ec_script(files)):
        assert detect_and_validate(data).files == files


def test_full_wrong_format_version_and_core_text() -> None:
    d = _full()
    d[4] = 2
    d[76:80] = struct.pack("<I", zlib.crc32(bytes(d[:76])))
    with pytest.raises(PackageError, match=r"format version at offset 4: expected 1, got 2"):
        detect_and_validate(bytes(d))
    d = _full()
    d[8:24] = b"V20\x0102" + b"\0" * 10
    d[76:80] = struct.pack("<I", zlib.crc32(bytes(d[:76])))
    with pytest.raises(PackageError, match=r"core version at offset 8"):
        detect_and_validate(bytes(d))


def test_ec_with_sdk_part_is_not_script_only() -> None:
    d = bytearray(build_ec_script(FILES))
    sdk = b"\x5d" * 64
    struct.pack_into("<I", d, 56, len(sdk))
    struct.pack_into("<I", d, 4, zlib.crc32(bytes(d[8:92])) ^ 0xFFFFFFFF)
    pkg = detect_and_validate(bytes(d) + sdk)
    assert pkg.details["script_only"] is False and pkg.details["sdk_len"] == 64


def test_lfta_nonzero_reserved_field_is_only_a_warning() -> None:
    d = _lfta()
    d[40] = 1  # field [10]
    assert detect_and_validate(bytes(d)).kind == KIND_LFTA
    rep = inspect_package(bytes(d))
    assert rep.ok and any("[10]" in w for w in rep.warnings)


def test_error_attributes_for_callers() -> None:
    d = _air()
    d[1024:1028] = b"XXXX"
    with pytest.raises(PackageError) as ei:
        detect_and_validate(bytes(d))
    e = ei.value
    assert (e.format, e.field, e.offset, e.got) == ("Air8101 TAUL package", "magic", 1024,
                                                    b"XXXX")


@pytest.mark.parametrize("pad_to", [None, 1024])
def test_image_framing_is_recognised_by_crc_not_length(pad_to: int | None) -> None:
    from luatos_common.packages import inspect_image, is_framed_image

    # an unframed, unpadded image whose length happens to be a multiple of 34
    files = {"main.lua": b"x"}
    plain = build_luadb(files, pad_to=pad_to)
    plain = build_luadb({"main.lua": b"x" * (1 + (-len(plain)) % 34)}, pad_to=pad_to) \
        if pad_to is None else plain
    assert pad_to is not None or len(plain) % 34 == 0
    assert not is_framed_image(plain)
    assert inspect_image(plain).ok
    framed = bytearray(bkcrc.frame(plain))
    assert is_framed_image(bytes(framed))
    framed[23] ^= 1  # block 0 damaged (in the header checksum): still recognised as framed, and reported
    assert is_framed_image(bytes(framed))
    rep = inspect_image(bytes(framed))
    assert rep.kind == "luadb-bkcrc" and [c.name for c in rep.failures] == ["CRC of block 0"]
