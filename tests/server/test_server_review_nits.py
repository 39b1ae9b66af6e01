"""Regression tests for docs/review-server.md findings 9-14 (the NITs that were fixed)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from luatos_common.packages import build_air8101_ota
from luatos_fota.blobs import HOST_TAG, BlobStore
from luatos_fota.cli import main
from luatos_fota.store import Store
from luatos_fota.testing import RunningServer, device_request, running_server, script_package

KEY = "nitkey"
FW = "NIT_LuatOS-SoC_Air8101"
MAC = "C8C2C68CD602"


def check(version: str, mac: str = MAC) -> str:
    return f"/api/site/firmware_upgrade?mac={mac}&project_key={KEY}&firmware_name={FW}&version={version}"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "d", admin_token="tok") as s:
        yield s


# ---------------------------------------------------------------- 9: shared blob dir, gc

def test_clean_tmp_spares_other_hosts_and_live_writers(tmp_path):
    bs = BlobStore(tmp_path / "blobs")
    other_host = bs.tmp / "otherhost-1-aaaa"  # pid 1 there says nothing about this host
    other_host.write_bytes(b"x")
    mine_dead = bs.tmp / f"{HOST_TAG}-999999999-bbbb"
    mine_dead.write_bytes(b"x")
    stale = bs.tmp / "otherhost-2-cccc"
    stale.write_bytes(b"x")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    assert bs.clean_tmp() == 2
    assert other_host.exists() and not mine_dead.exists() and not stale.exists()


def test_blob_gc_removes_only_unreferenced_old_blobs(tmp_path):
    st = Store(tmp_path / "d")
    p = st.products.add(KEY, FW)
    rel = st.releases.add(script_package(FW, "001.000.001", "--1"), product_id=p.id, version="001.000.001")
    orphan = st.blobs.put(b"left behind by a crash between blob and commit")
    young = st.blobs.put(b"an upload whose transaction is still running")
    old = time.time() - 2 * 3600
    os.utime(st.blobs.path(orphan), (old, old))
    os.utime(st.blobs.path(rel.sha256), (old, old))
    st.close()
    r = CliRunner().invoke(main, ["blobs", "gc", "--data", str(tmp_path / "d"), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["removed"] == [orphan]
    st = Store(tmp_path / "d")
    assert st.blobs.exists(rel.sha256) and st.blobs.exists(young) and not st.blobs.exists(orphan)
    st.close()


# ---------------------------------------------------------------- 10: body size limits

def test_oversized_result_report_is_413(srv):
    body = json.dumps({"fota_sn": "x" * 5000, "result_code": 0}).encode()
    r = device_request(srv.port, "/api/site/turnkey_fota_result", method=b"POST",
                       extra_headers=f"Content-Length: {len(body)}\r\n".encode(), body=body)
    assert r.status == 413 and r.json()["code"] == 413


def test_oversized_upload_is_413(tmp_path):
    with running_server(tmp_path / "d", admin_token="tok", max_upload_bytes=1000) as s:
        p = s.store.products.add(KEY, FW)
        r = requests.post(f"{s.base_url}/admin/api/releases", headers={"Authorization": "Bearer tok"},
                          files={"file": ("x.bin", build_air8101_ota({"main.lua": b"-" * 3000}))},
                          data={"product_id": str(p.id), "version": "001.000.001"}, timeout=10)
        assert r.status_code == 413 and "1000" in r.json()["msg"]
        big = b"\0" * (200 << 10)  # refused from Content-Length alone, before the form is parsed
        r = requests.post(f"{s.base_url}/admin/api/releases", headers={"Authorization": "Bearer tok"},
                          files={"file": ("x.bin", big)}, data={"product_id": str(p.id)}, timeout=10)
        assert r.status_code == 413 and "max_upload_bytes" in r.json()["msg"]


# ---------------------------------------------------------------- 11: vendor file name chip field

def test_vendor_file_name_chip_is_cut_at_the_first_dash(tmp_path):
    st = Store(tmp_path / "d")
    p = st.products.add("k", "FOTA2_DEMO_LuatOS-SoC_Air8101")
    rel = st.releases.add(script_package("FOTA2_DEMO_LuatOS-SoC_Air8101", "001.000.003"), product_id=p.id,
                         filename="FOTA2_DEMO_V2001.1.3_LuatOS-SoC_Air8101-xx.bin")
    assert (rel.script_x, rel.script_z) == (1, 3)
    st.close()


# ---------------------------------------------------------------- 12: download authentication

def test_download_auth_needs_a_fota_sn_or_the_token(tmp_path):
    with running_server(tmp_path / "d", admin_token="tok", download_auth=True,
                        private_downloads=False) as s:
        p = s.store.products.add(KEY, FW)
        rel = s.store.releases.add(script_package(FW, "001.000.002", "--2"), product_id=p.id,
                                  version="001.000.002")
        path = f"/dl/{rel.sha256}.bin"
        r = device_request(s.port, path)
        assert r.status == 403 and "fota_sn" in r.json()["msg"]
        assert device_request(s.port, f"/dl/artifact/{rel.artifact_id}.bin").status == 403
        assert device_request(s.port, path + "?fota_sn=madeup").status == 403
        assert device_request(s.port, path, extra_headers=b"Authorization: Bearer tok\r\n").status == 200
        served = device_request(s.port, check("2001.001.000"))
        assert served.status == 200
        sn = served.header("x-fota-sn")
        assert sn and device_request(s.port, f"{path}?fota_sn={sn}").status == 200
        # the device endpoint itself is unaffected
        assert device_request(s.port, check("2001.001.002", mac="C8C2C68CD603")).status == 304


# ---------------------------------------------------------------- 14: small ones

def test_unicode_digits_in_version_are_refused(srv):
    srv.store.products.add(KEY, FW)
    r = device_request(srv.port, check("٢٠٠١.١.٠"))
    assert r.status == 400 and r.json()["code"] == 3


def test_rate_limit_bucket_ignores_mac_spelling(tmp_path):
    with running_server(tmp_path / "d", device_rate=0.001, device_burst=2) as s:
        s.store.products.add(KEY, FW)
        sts = [device_request(s.port, check("2001.001.000", mac=m)).status
               for m in ("c8c2c68cd602", "C8C2C68CD602", "c8:c2:c6:8c:d6:02")]
        assert sts == [304, 304, 429]


def test_method_not_allowed_and_overload_are_audited(tmp_path):
    with running_server(tmp_path / "d") as s:
        s.store.products.add(KEY, FW)
        assert device_request(s.port, check("2001.001.000"), method=b"POST").status == 405
        s.flush()
        assert s.store.audit.query(event_="bad_method", limit=5)
    with running_server(tmp_path / "e", max_inflight=0) as s:
        assert device_request(s.port, check("2001.001.000")).status == 503
        s.flush()
        assert s.store.audit.query(event_="overloaded", limit=5)
