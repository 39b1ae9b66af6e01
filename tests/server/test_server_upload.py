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

FILES = {"main.lua": b"PROJECT='DEMO'\nVERSION='001.000.002'\n", "lib.lua": b"return 1\n"}


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


def test_no_version_given_is_read_from_the_package():
    up = check_upload(AIR, filename="script.bin")
    assert str(up.script_version) == "001.000.002" and up.version_source == "package"
    assert up.project == "DEMO"


def test_bad_version_text():
    with pytest.raises(UploadError, match="xxx.yyy.zzz"):
        check_upload(AIR, version="1.2")


def test_version_from_vendor_file_name():
    up = check_upload(AIR, filename="DEMO_2001.001.002_LuatOS-SoC_Air8101.bin",
                      firmware_name="DEMO_LuatOS-SoC_Air8101")
    assert str(up.script_version) == "001.000.002"
    assert up.version_source == "filename" and up.core_version == 2001


def test_file_name_for_another_firmware_refused():
    with pytest.raises(UploadError, match="is for firmware"):
        check_upload(AIR, filename="DEMO_2001.001.002_LuatOS-SoC_Air780E.bin",
                     firmware_name="DEMO_LuatOS-SoC_Air8101")


def test_version_contradicting_file_name_refused():
    with pytest.raises(UploadError, match="file name") as ei:
        check_upload(AIR, filename="DEMO_2001.001.007_LuatOS-SoC_Air8101.bin", version="001.000.002")
    assert ei.value.field == "filename"
    assert "x.z = 001.007" in str(ei.value) and "VERSION = '001.000.002'" in str(ei.value)


# ---------------------------------------------------------------- the package against its claims

def _air(main: bytes, **more: bytes) -> bytes:
    return pk.build_air8101_ota({"main.lua": main, **more})


def test_declared_version_must_be_the_packages():
    """The issue's case: --version 1.2.3 on a 001.000.001 package; and the renamed package."""
    one = _air(b'PROJECT = "DEMO"\nVERSION = "001.000.001"\n')
    with pytest.raises(UploadError) as ei:
        check_upload(one, version="1.2.3")
    assert ei.value.field == "version"
    assert "version 1.2.3 given, but the package's main.lua:2 sets VERSION = '001.000.001'" \
        in str(ei.value)
    with pytest.raises(UploadError) as ei:
        check_upload(one, version="001.000.002")
    assert ei.value.field == "version" and "001.000.002" in str(ei.value)
    with pytest.raises(UploadError) as ei:  # renamed file: 001.000.000 content, .1 in the name
        check_upload(_air(b'PROJECT = "DEMO"\nVERSION = "001.000.000"\n'),
                     filename="DEMO_2001.001.001_LuatOS-SoC_Air8101.bin")
    assert ei.value.field == "filename" and "VERSION = '001.000.000'" in str(ei.value)
    assert str(check_upload(one, version="001.000.001").script_version) == "001.000.001"


def test_project_must_be_the_products():
    pkg = _air(b'PROJECT = "OTHER"\nVERSION = "001.000.002"\n')
    with pytest.raises(UploadError) as ei:
        check_upload(pkg, version="001.000.002", firmware_name="DEMO_LuatOS-SoC_Air8101")
    assert ei.value.field == "PROJECT"
    assert "PROJECT = 'OTHER'" in str(ei.value) and "for PROJECT 'DEMO'" in str(ei.value)
    with pytest.raises(UploadError) as ei:
        check_upload(pkg, filename="DEMO_2001.001.002_LuatOS-SoC_Air8101.bin")
    assert ei.value.field == "filename" and "'DEMO'" in str(ei.value) and "'OTHER'" in str(ei.value)


@pytest.mark.parametrize(("main", "field_", "needle"), [
    (b"log.info('no globals')\n", "PROJECT", "no PROJECT"),
    (b'PROJECT = "DEMO"\n', "VERSION", "no VERSION"),
    (b'PROJECT = "DEMO"\nVERSION = "1.0.2"\n', "VERSION", "main.lua:2: VERSION '1.0.2' is not"),
    (b'PROJECT = "DEMO"\nVERSION = "001.000.002"\nlocal x = = 1\n', "file", "main.lua:3: syntax error"),
])
def test_package_that_cannot_run_or_report_refused(main, field_, needle):
    with pytest.raises(UploadError) as ei:
        check_upload(_air(main), version="001.000.002")
    assert ei.value.field == field_ and needle in str(ei.value), str(ei.value)


def test_syntax_error_in_any_file_refused():
    pkg = _air(b'PROJECT = "DEMO"\nVERSION = "001.000.002"\n', **{"net.lua": b"return {\n"})
    with pytest.raises(UploadError, match=r"net\.lua:2: syntax error"):
        check_upload(pkg, version="001.000.002")


def test_full_package_core_must_match_the_file_name():
    full = pk.build_full("V2002", FILES)
    with pytest.raises(UploadError) as ei:
        check_upload(full, filename="DEMO_2003.001.002_LuatOS-SoC_Air8101.bin")
    assert ei.value.field == "filename" and "core V2003" in str(ei.value) and "V2002" in str(ei.value)
    assert check_upload(full, filename="DEMO_2002.001.002_LuatOS-SoC_Air8101.bin").core_version == 2002


def test_version_must_rise_above_what_devices_may_run(tmp_path: Path):
    st = Store(tmp_path)
    p = st.products.add("K", "DEMO_LuatOS-SoC_Air8101")
    two = _air(b'PROJECT = "DEMO"\nVERSION = "001.000.002"\n')
    three = _air(b'PROJECT = "DEMO"\nVERSION = "001.000.003"\n')
    st.releases.add(three, product_id=p.id)
    with pytest.raises(UploadError) as ei:
        st.releases.add(two, product_id=p.id)
    assert ei.value.field == "version" and "release 1 (001.000.003, script)" in str(ei.value)
    # a device reporting a higher version than any release (flashed by hand) counts too
    st.devices.create("C8C2C68CD602", "mac", p.id, "2001.001.009", "")
    four = _air(b'PROJECT = "DEMO"\nVERSION = "001.000.004"\n')
    with pytest.raises(UploadError, match="devices reporting 2001.001.009"):
        st.releases.add(four, product_id=p.id)
    assert [r.script_version for r in st.releases.all()] == ["001.000.003"]
    # the explicit downgrade flag publishes it and records why
    rel = st.releases.add(two, product_id=p.id, allow_downgrade=True, actor="ops")
    assert "published as a downgrade" in rel.notes
    (entry,) = st.audit.query(event_="release_added", release_id=rel.id)
    assert entry.actor == "ops" and "devices reporting 2001.001.009" in entry.detail["downgrade"]
    ten = _air(b'PROJECT = "DEMO"\nVERSION = "001.000.010"\n')
    assert st.releases.add(ten, product_id=p.id).script_version == "001.000.010"
    st.close()


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
    p = st.products.add("K", "DEMO_LuatOS-SoC_Air8101")
    r = st.releases.add(AIR, product_id=p.id, version="001.000.002")
    sha = hashlib.sha256(AIR).hexdigest()
    assert r.sha256 == sha
    assert (tmp_path / "blobs" / sha[:2] / sha).read_bytes() == AIR
    with pytest.raises(Conflict, match="already carries"):
        st.releases.add(LFTA, product_id=p.id, version="001.000.002")
    # same bytes as a release of another product: one blob, one artifact row
    p2 = st.products.add("K2", "DEMO_LuatOS-SoC_Air8101")
    r2 = st.releases.add(AIR, product_id=p2.id, version="001.000.002")
    assert r2.artifact_id == r.artifact_id
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
    st.close()


def test_refused_upload_leaves_nothing(tmp_path: Path):
    st = Store(tmp_path)
    p = st.products.add("K", "DEMO_LuatOS-SoC_Air8101")
    with pytest.raises(UploadError):
        st.releases.add(BAD["taul block crc"][0], product_id=p.id, version="001.000.002")
    assert st.releases.all() == [] and st.blobs.all_digests() == []
    st.close()
