"""Upload validation: every bad package class and every missing/contradictory version refused
with a reason that names the problem; good packages stored content-addressed."""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from luatos_common import packages as pk
from luatos_common.luadb import build_luadb
from luatos_fota.store import Conflict, Store
from luatos_fota.uploads import UploadError, check_upload

FILES = {"main.lua": b"PROJECT='DEMO'\nVERSION='1.0.2'\n", "lib.lua": b"return 1\n"}


def _flip(b: bytes, at: int) -> bytes:
    x = bytearray(b)
    x[at] ^= 0x55
    return bytes(x)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("info.json", "{}")
    return buf.getvalue()


AIR = pk.build_air8101_ota(FILES)
LFTA = pk.build_lfta(FILES)
EC = pk.build_ec_script(FILES)

BAD = {
    "garbage": (b"hello world, not a package", "unknown package format"),
    "zip (.soc)": (_zip(), "ZIP"),
    "bare luadb": (build_luadb(FILES), "LuaDB"),
    "taul truncated": (AIR[:-40], "truncated"),
    "taul block crc": (_flip(AIR, 1032 + 5), "CRC"),
    "taul magic": (AIR[:1024] + b"XAUL" + AIR[1028:], "magic"),
    "taul no main": (pk.build_air8101_ota({"lib.lua": b"x"}), "main"),
    "lfta crc": (_flip(LFTA, len(LFTA) - 3), "CRC32"),
    "lfta length": (LFTA + b"\0", "payload length"),
    "ec header crc": (_flip(EC, 10), "header CRC"),
    "ec md5": (_flip(EC, len(EC) - 2), "MD5"),
    "ec truncated": (EC[:-1], "total size"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_packages_refused_with_reason(name):
    data, needle = BAD[name]
    with pytest.raises(UploadError) as ei:
        check_upload(data, filename="x.bin", version="001.000.002")
    e = ei.value
    assert e.field == "file"
    assert needle.lower() in str(e).lower(), str(e)
    assert e.as_json()["msg"] == str(e)


def test_empty_file_refused():
    with pytest.raises(UploadError, match="empty file"):
        check_upload(b"", filename="a.bin", version="001.000.001")


def test_offset_is_reported_for_damaged_block():
    with pytest.raises(UploadError) as ei:
        check_upload(BAD["taul block crc"][0], version="001.000.002")
    assert "offset" in ei.value.details or "offset" in str(ei.value)


def test_no_version_is_refused_not_guessed():
    with pytest.raises(UploadError) as ei:
        check_upload(AIR, filename="script.bin")
    assert ei.value.field == "version" and "--version" in str(ei.value)


def test_bad_version_text():
    with pytest.raises(UploadError, match="xxx.yyy.zzz"):
        check_upload(AIR, version="1.2")


def test_version_from_vendor_file_name():
    up = check_upload(AIR, filename="DEMO_2001.001.007_LuatOS-SoC_Air8101.bin",
                      firmware_name="DEMO_LuatOS-SoC_Air8101")
    assert (up.script_version.x, up.script_version.z) == (1, 7)
    assert up.version_source == "filename" and up.core_version == 2001


def test_file_name_for_another_firmware_refused():
    with pytest.raises(UploadError, match="is for firmware"):
        check_upload(AIR, filename="OTHER_2001.001.007_LuatOS-SoC_Air8101.bin",
                     firmware_name="DEMO_LuatOS-SoC_Air8101")


def test_version_contradicting_file_name_refused():
    with pytest.raises(UploadError, match="file name"):
        check_upload(AIR, filename="DEMO_2001.001.007_LuatOS-SoC_Air8101.bin", version="001.000.008")


def test_kind_must_match_package():
    with pytest.raises(UploadError) as ei:
        check_upload(AIR, version="001.000.002", kind="full")
    assert ei.value.field == "kind"
    full = pk.build_full("V2002", FILES)
    with pytest.raises(UploadError, match="must be 'full'"):
        check_upload(full, version="001.000.002", kind="script")
    with pytest.raises(UploadError, match="carries V2002"):
        check_upload(full, version="001.000.002", core="V2003")
    up = check_upload(full, version="001.000.002")
    assert (up.kind, up.core_version) == ("full", 2002)


def test_good_package_kinds_accepted():
    for data in (AIR, LFTA, EC, pk.build_full("V2002", FILES)):
        assert check_upload(data, version="001.000.002").package.sha256 == hashlib.sha256(data).hexdigest()


def test_lfta_is_gzip_payload():
    assert gzip.decompress(LFTA[256:])  # sanity: the fixture really is an LFTA package


def test_store_is_content_addressed_and_refuses_duplicates(tmp_path: Path):
    st = Store(tmp_path)
    p = st.add_product("K", "DEMO_LuatOS-SoC_Air8101")
    r = st.add_release(AIR, product_id=p["id"], version="001.000.002")
    sha = hashlib.sha256(AIR).hexdigest()
    assert r["sha256"] == sha
    assert (tmp_path / "blobs" / sha[:2] / sha).read_bytes() == AIR
    with pytest.raises(Conflict, match="already carries"):
        st.add_release(LFTA, product_id=p["id"], version="001.009.002")
    # same bytes as another release: one blob, one artifact row
    r2 = st.add_release(AIR, product_id=p["id"], version="001.000.003")
    assert r2["artifact_id"] == r["artifact_id"]
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
    st.close()


def test_refused_upload_leaves_nothing(tmp_path: Path):
    st = Store(tmp_path)
    p = st.add_product("K", "DEMO_LuatOS-SoC_Air8101")
    with pytest.raises(UploadError):
        st.add_release(BAD["taul block crc"][0], product_id=p["id"], version="001.000.002")
    assert st.list_releases() == [] and st.blobs.all_digests() == []
    st.close()
