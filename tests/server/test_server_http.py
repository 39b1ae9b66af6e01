"""Downloads, Range/If-Range/416, HEAD, the v2 (libfota3-shaped) API, rate limits, overload."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from luatos_fota.testing import RunningServer, device_request, running_server, script_package

KEY = "k1"
FW = "DEMO_LuatOS-SoC_Air8101"
MAC = "C8C2C68CD602"
CHECK = f"/api/site/firmware_upgrade?mac={MAC}&project_key={KEY}&firmware_name={FW}&version=2001.001.000"


@pytest.fixture
def data() -> bytes:
    return script_package(FW, "001.000.002", "-- " + os.urandom(3000).hex())


@pytest.fixture
def srv(tmp_path: Path, data: bytes) -> Iterator[RunningServer]:
    with running_server(tmp_path / "d", admin_token="tok") as s:
        p = s.store.products.add(KEY, FW)
        s.store.releases.add(data, product_id=p.id, version="001.000.002")
        yield s


ADMIN = b"Authorization: Bearer tok\r\n"  # packages are private: the operator may fetch any


def test_range_resume_on_device_endpoint(srv, data):
    r = device_request(srv.port, CHECK, extra_headers=b"Range: bytes=100-\r\n")
    assert r.status == 206
    assert r.header("Content-Range") == f"bytes 100-{len(data) - 1}/{len(data)}"
    assert r.body == data[100:] and r.header("Content-Length") == str(len(data) - 100)


def test_unsatisfiable_range_416(srv, data):
    r = device_request(srv.port, CHECK, extra_headers=f"Range: bytes={len(data)}-\r\n".encode())
    assert r.status == 416
    assert r.header("Content-Range") == f"bytes */{len(data)}"


def test_if_range(srv, data):
    etag = '"' + hashlib.sha256(data).hexdigest() + '"'
    ok = device_request(srv.port, CHECK, extra_headers=f"Range: bytes=10-\r\nIf-Range: {etag}\r\n".encode())
    assert ok.status == 206 and ok.body == data[10:]
    stale = device_request(srv.port, CHECK, extra_headers=b'Range: bytes=10-\r\nIf-Range: "deadbeef"\r\n')
    assert stale.status == 200 and stale.body == data


def test_resumed_download_counts_once(srv, data):
    """A download cut half way and resumed from there is one package's worth: one serve."""
    half = len(data) // 2
    for _ in range(5):
        assert device_request(srv.port, CHECK, extra_headers=f"Range: bytes=0-{half - 1}\r\n".encode()).status == 206
        r = device_request(srv.port, CHECK, extra_headers=f"Range: bytes={half}-\r\n".encode())
        assert r.status == 206 and len(r.body) == len(data) - half
    # five packages' worth went out (limit 6): a sixth whole download is still allowed...
    assert device_request(srv.port, CHECK).status == 200
    # ...and the seventh is a loop
    r = device_request(srv.port, CHECK)
    assert r.status == 403 and r.json()["code"] == 40


def test_stable_download_urls(srv, data):
    sha = hashlib.sha256(data).hexdigest()
    for path in (f"/dl/{sha}.bin", f"/dl/{sha}", f"/dl/{sha.upper()}.bin", "/dl/artifact/1.bin", "/dl/artifact/1"):
        assert device_request(srv.port, path).status == 403, path  # private without a credential
        r = device_request(srv.port, path, extra_headers=ADMIN)
        assert r.status == 200 and r.body == data, path
        assert r.header("ETag") == f'"{sha}"'
    r = device_request(srv.port, f"/dl/{sha}.bin", extra_headers=ADMIN + b"Range: bytes=-10\r\n")
    assert r.status == 206 and r.body == data[-10:]
    assert device_request(srv.port, "/dl/" + "0" * 64 + ".bin", extra_headers=ADMIN).status == 404


def test_head_on_download(srv, data):
    sha = hashlib.sha256(data).hexdigest()
    r = device_request(srv.port, f"/dl/{sha}.bin", method=b"HEAD", extra_headers=ADMIN)
    assert r.status == 200 and r.body == b""
    assert r.header("Content-Length") == str(len(data))


def test_v2_check_download_and_report(srv, data):
    target = (f"/api/site/turnkey_fota?mac={MAC}&project_key={KEY}&model=Air8101&core_id=x"
              "&core_version=2001&script_name=DEMO&script_version=001.000.000")
    r = device_request(srv.port, target)
    assert r.status == 200
    body = r.json()
    assert body["code"] == 0
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["size"] == len(data)
    assert body["script_version"] == "001.000.002" and body["core_version"] == "2001"
    assert body["fota_sn"]
    url = body["url"]
    assert url.startswith(f"http://127.0.0.1:{srv.port}/dl/")
    dl = device_request(srv.port, url.split(str(srv.port), 1)[1])
    assert dl.status == 200 and dl.body == data
    payload = json.dumps({"fota_sn": body["fota_sn"], "result_code": 0}).encode()
    rep = device_request(srv.port, "/api/site/turnkey_fota_result", method=b"POST",
                         extra_headers=b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(payload),
                         body=payload)
    assert rep.status == 200 and rep.json()["code"] == 0
    stats = srv.store.releases.stats(1)[0]
    assert stats.confirmed == 1
    # now up to date
    r2 = device_request(srv.port, target.replace("001.000.000", "001.000.002"))
    assert r2.json()["code"] == 27 and r2.json()["url"] == ""


def test_v2_report_unknown_sn_and_failure_code(srv):
    payload = b'{"fota_sn":"nope","result_code":0}'
    rep = device_request(srv.port, "/api/site/turnkey_fota_result", method=b"POST",
                         extra_headers=b"Content-Length: %d\r\n" % len(payload), body=payload)
    assert rep.status == 404
    bad = b'{"fota_sn":1}'
    rep = device_request(srv.port, "/api/site/turnkey_fota_result", method=b"POST",
                         extra_headers=b"Content-Length: %d\r\n" % len(bad), body=bad)
    assert rep.status == 400 and "result_code" in rep.json()["msg"]


def test_v2_failure_result_is_not_confirmed(srv):
    target = (f"/api/site/turnkey_fota?imei=861234567890123&project_key={KEY}&core_version=2001"
              "&script_name=DEMO&script_version=001.000.000")
    sn = device_request(srv.port, target).json()["fota_sn"]
    payload = json.dumps({"fota_sn": sn, "result_code": 2}).encode()
    rep = device_request(srv.port, "/api/site/turnkey_fota_result", method=b"POST",
                         extra_headers=b"Content-Length: %d\r\n" % len(payload), body=payload)
    assert rep.status == 200 and rep.json()["success"] is False
    s = srv.store.releases.stats(1)[0]
    assert (s.served, s.confirmed, s.failed) == (1, 0, 1)


def test_rate_limit_per_device_429_with_retry_after(tmp_path):
    with running_server(tmp_path / "d", device_rate=0.001, device_burst=3) as s:
        s.store.products.add(KEY, FW)
        codes = [device_request(s.port, CHECK.replace("2001.001.000", "2001.001.002")).status for _ in range(5)]
        assert codes[:3] == [304, 304, 304]
        r = device_request(s.port, CHECK)
        assert r.status == 429 and int(r.header("Retry-After")) >= 1 and r.json()["code"] == 43
        # another device is not affected
        assert device_request(s.port, CHECK.replace(MAC, "C8C2C68CD603")).status == 304


def test_rate_limit_per_ip(tmp_path):
    with running_server(tmp_path / "d", ip_rate=0.001, ip_burst=2) as s:
        s.store.products.add(KEY, FW)
        st = [device_request(s.port, CHECK.replace(MAC, f"C8C2C68CD6{i:02X}")).status for i in range(3)]
        assert st == [304, 304, 429]


def test_overload_503_with_retry_after(tmp_path):
    with running_server(tmp_path / "d", max_inflight=0, retry_after_s=7) as s:
        r = device_request(s.port, CHECK)
        assert r.status == 503 and r.header("Retry-After") == "7"


def test_store_failure_is_503_not_a_wrong_answer(srv, monkeypatch):
    def broken(*a, **kw):
        raise OSError("database unreachable")

    monkeypatch.setattr(srv.app.fota, "decide", broken)
    r = device_request(srv.port, CHECK)
    assert r.status == 503 and r.header("Retry-After") and r.json()["code"] == 43
