"""Admin HTTP API: bearer auth, OpenAPI, products, releases (multipart), targeting, devices,
audit, stats, and push through a real PushHub with a device connected over TCP."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from luatos_common.packages import build_lfta
from luatos_fota.testing import RunningServer, device_request, running_server, script_package

KEY = "adm"
FW = "ADM_LuatOS-SoC_Air8101"
MAC = "C8C2C68CD602"
PKG = script_package(FW, "001.000.002", "-- admin test")


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "d", admin_token="s3cret") as s:
        yield s


def api(srv: RunningServer, method: str, path: str, **kw) -> requests.Response:
    kw.setdefault("headers", {})["Authorization"] = "Bearer s3cret"
    return requests.request(method, srv.base_url + "/admin/api" + path, timeout=30, **kw)


def test_auth_required(srv):
    r = requests.get(srv.base_url + "/admin/api/products", timeout=10)
    assert r.status_code == 401 and r.json()["code"] == 401
    r = requests.get(srv.base_url + "/admin/api/products", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert r.status_code == 401
    assert api(srv, "GET", "/products").status_code == 200


def test_token_generated_and_stored_when_not_given(tmp_path, monkeypatch):
    monkeypatch.delenv("LUATOS_FOTA_TOKEN", raising=False)
    with running_server(tmp_path / "d") as s:
        tok = (tmp_path / "d" / "admin_token").read_text().strip()
        assert len(tok) >= 32 and s.admin_token == tok
        assert (tmp_path / "d" / "admin_token").stat().st_mode & 0o077 == 0
    with running_server(tmp_path / "d") as s2:
        assert s2.admin_token == tok  # stable across restarts


def test_openapi_document(srv):
    doc = requests.get(srv.base_url + "/admin/api/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    assert "/admin/api/releases" in doc["paths"] and "post" in doc["paths"]["/admin/api/releases"]


def test_full_release_workflow(srv):
    p = api(srv, "POST", "/products", json={"project_key": KEY, "firmware_name": FW, "name": "Demo"})
    assert p.status_code == 201
    pid = p.json()["id"]
    assert api(srv, "POST", "/products", json={"project_key": KEY, "firmware_name": FW}).status_code == 409
    up = api(srv, "POST", "/releases", files={"file": ("pkg.bin", PKG)},
             data={"product_id": str(pid), "version": "001.000.002", "notes": "first",
                   "skip_preflight": "true"})
    assert up.status_code == 201, up.text
    rel = up.json()
    assert rel["sha256"] and rel["enabled"] is True and rel["notes"] == "first"
    check = f"/api/site/firmware_upgrade?mac={MAC}&project_key={KEY}&firmware_name={FW}&version=2001.001.000"
    assert device_request(srv.port, check).status == 200
    # pause takes effect on the next check-in
    assert api(srv, "POST", f"/releases/{rel['id']}/pause").json()["enabled"] is False
    assert device_request(srv.port, check).status == 304
    api(srv, "POST", f"/releases/{rel['id']}/enable")
    # targeting: only another device
    t = api(srv, "POST", f"/releases/{rel['id']}/target", json={"mode": "devices", "devices": ["AABBCCDDEEFF"]})
    assert t.json()["devices"] == ["AABBCCDDEEFF"]
    assert device_request(srv.port, check).status == 304
    api(srv, "POST", f"/releases/{rel['id']}/target", json={"mode": "percent", "percent": 100})
    assert device_request(srv.port, check).status == 200
    # devices: list, ban, unban, pin
    devs = api(srv, "GET", "/devices").json()["devices"]
    assert devs[0]["device_key"] == MAC and devs[0]["reported_version"] == "2001.001.000"
    assert api(srv, "POST", f"/devices/{MAC}/ban", json={"reason": "stolen"}).json()["ban_code"] == 21
    assert device_request(srv.port, check).json()["code"] == 21
    assert api(srv, "GET", "/devices", params={"banned": "true"}).json()["devices"][0]["ban_reason"] == "stolen"
    api(srv, "POST", f"/devices/{MAC}/unban")
    assert api(srv, "POST", f"/devices/{MAC}/pin", json={"release_id": rel["id"]}).json()["pinned_release_id"] == rel["id"]
    # audit by device, stats
    audit = api(srv, "GET", "/audit", params={"device": MAC}).json()["audit"]
    events = {a["event"] for a in audit}
    assert {"serve", "checkin", "banned", "unbanned", "pinned"} <= events
    stats = api(srv, "GET", "/stats").json()["releases"][0]
    assert stats["served"] == 1 and stats["targeted"] == 1


def test_upload_refusal_is_422_with_field_and_reason(srv):
    pid = api(srv, "POST", "/products", json={"project_key": KEY, "firmware_name": FW}).json()["id"]
    r = api(srv, "POST", "/releases", files={"file": ("x.bin", b"")}, data={"product_id": str(pid), "version": "001.000.001"})
    assert r.status_code == 422 and r.json()["field"] == "file" and "empty" in r.json()["msg"]
    bad = bytearray(PKG)
    bad[1040] ^= 1
    r = api(srv, "POST", "/releases", files={"file": ("x.bin", bytes(bad))}, data={"product_id": str(pid), "version": "001.000.001"})
    assert r.status_code == 422 and "CRC" in r.json()["msg"]
    r = api(srv, "POST", "/releases", files={"file": ("x.bin", PKG)},
            data={"product_id": str(pid), "version": "001.000.003"})
    assert r.status_code == 422 and r.json()["field"] == "version"
    assert "sets VERSION = '001.000.002'" in r.json()["msg"]
    v4 = build_lfta({"main.lua": b'PROJECT = "ADM"\nVERSION = "001.000.004"\n'})
    r = api(srv, "POST", "/releases", files={"file": ("ADM_2001.001.004_LuatOS-SoC_Air8101.bin", v4)},
            data={"project_key": KEY})
    assert r.status_code == 201 and r.json()["script_version"] == "001.000.004"
    r = api(srv, "POST", "/releases", files={"file": ("x.bin", PKG)}, data={"product_id": str(pid)})
    assert r.status_code == 422 and r.json()["field"] == "version"
    assert "not above" in r.json()["msg"] and "release 1 (001.000.004" in r.json()["msg"]


def test_not_found_and_bad_input(srv):
    assert api(srv, "GET", "/releases/99").status_code == 404
    assert api(srv, "POST", "/devices/NOPE/ban").status_code == 404
    assert api(srv, "POST", "/products", data=b"[1,2]").status_code == 400


def _login(port: int, device: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(json.dumps({"login": {"device": device, "version": "2001.001.000"}}).encode() + b"\n")
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, "push hub closed the connection"
        buf += chunk
    assert json.loads(buf.split(b"\n")[0]) == {"login": "ok"}
    return s


def test_push_via_admin_api(tmp_path):
    from luatos_fota.push import PushHub

    hub = PushHub(min_gap=0)
    with running_server(tmp_path / "d", admin_token="s3cret", push_hub=hub, extra={"push_port": 0, "push_host": "127.0.0.1"}) as s:
        assert s.app.state.push_hub is hub and hub.address is not None
        p = s.store.products.add(KEY, FW)
        rel = s.store.releases.add(PKG, product_id=p.id, version="001.000.002")
        dev = _login(hub.port, MAC)
        try:
            online = api(s, "GET", "/push/online").json()["online"]
            assert [o["device"] for o in online] == [MAC]
            r = api(s, "POST", "/push", json={"release_id": rel.id})
            assert r.status_code == 200 and r.json()["results"] == {MAC: "sent"}
            buf = b""
            while b"\n" not in buf:
                buf += dev.recv(4096)
            cmd = json.loads(buf.split(b"\n")[0])
            assert cmd["fota"] == "true"
            # through the decision: a counted serve whose fota_sn rides in the URL
            assert cmd["url"].startswith(f"###{s.base_url}/dl/{rel.sha256}.bin?fota_sn=")
            assert s.store.releases.stats(rel.id)[0].serves == 1
            r = api(s, "POST", "/push", json={"devices": ["OFFLINE1"], "url": "http://x/y.bin"})
            assert r.json()["results"] == {"OFFLINE1": "offline"}
        finally:
            dev.close()


def test_push_without_hub_is_503(srv):
    assert api(srv, "GET", "/push/online").status_code == 503
