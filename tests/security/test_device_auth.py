"""Device authentication: forged check-ins, session takeover on the push channel, forged
installs and package downloads without a credential, for products in hmac and token mode."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from luatos_fota.deviceauth import hmac_token
from luatos_fota.push import PushHub
from luatos_fota.testing import RunningServer, device_request, running_server

from .attack import FW, KEY, TOKEN, VICTIM, check_target, package


def _serves(s: RunningServer) -> int:
    s.flush()
    return sum(r.served for r in s.store.releases.stats())


def _bearer(tok: str) -> bytes:
    return f"Authorization: Bearer {tok}\r\n".encode()


@pytest.fixture
def hmac_server(tmp_path: Path) -> Any:
    hub = PushHub(min_gap=0)
    with running_server(tmp_path / "d", admin_token=TOKEN, push_hub=hub, loop_max_serves=3,
                        extra={"push_port": 0, "push_host": "127.0.0.1"}) as s:
        p = s.store.products.add(KEY, FW)
        p = s.store.products.set_auth(p.id, "hmac")
        rel = s.store.releases.add(package(), product_id=p.id, version="001.000.002")
        yield s, hub, p.auth_secret, rel


def test_forged_check_ins_are_401_and_touch_nothing(hmac_server: Any) -> None:
    s, _, secret, _ = hmac_server
    for cred in (b"", _bearer("0" * 64), _bearer(hmac_token("wrong-secret", VICTIM)), b"Authorization: x\r\n"):
        for _ in range(8):  # more than loop_max_serves: would have banned the victim
            r = device_request(s.port, check_target("2001.001.000"), extra_headers=cred)
            assert r.status == 401 and r.json()["code"] == 401 and r.header("WWW-Authenticate")
    s.flush()
    assert s.store.devices.get(VICTIM) is None  # no device row
    assert _serves(s) == 0  # nothing counted
    assert s.store.audit.query(event_="unauthorized", limit=5)
    # the real device, with its derived token (upper-case hex, as crypto.hmac_sha256 answers)
    good = _bearer(hmac_token(secret, VICTIM).upper())
    r = device_request(s.port, check_target("2001.001.000"), extra_headers=good)
    assert r.status == 200 and r.header("X-Fota-Version") == "2001.001.002"
    assert s.store.devices.get(VICTIM).ban_code == 0 and _serves(s) == 1


def _login(port: int, body: dict[str, Any]) -> tuple[socket.socket, dict[str, Any]]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(json.dumps({"login": body}).encode() + b"\n")
    buf = b""
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return sock, json.loads(buf.split(b"\n")[0]) if buf else {}


def test_push_login_needs_the_credential_and_cannot_take_over(hmac_server: Any) -> None:
    s, hub, secret, rel = hmac_server
    tok = hmac_token(secret, VICTIM)
    assert device_request(s.port, check_target("2001.001.000"), extra_headers=_bearer(tok)).status == 200
    real, ok = _login(hub.port, {"device": VICTIM, "project_key": KEY, "version": "2001.001.000", "token": tok})
    assert ok == {"login": "ok"}
    for body in ({"device": VICTIM, "project_key": KEY},  # no token
                 {"device": VICTIM, "project_key": KEY, "token": "f" * 64},  # wrong token
                 {"device": VICTIM},  # no product named: the device's own product still requires auth
                 {"device": VICTIM, "project_key": "OTHER_OPEN_KEY", "version": "2001.001.002"}):
        forged, answer = _login(hub.port, body)
        assert answer.get("code") == "unauthorized", (body, answer)
        forged.close()
    assert hub.online()[0]["peer"].endswith(str(real.getsockname()[1]))  # the real session survives
    # A forged version in a login never confirms an install: the device row keeps what it reported.
    dev = s.store.devices.get(VICTIM)
    assert dev.reported_version == "2001.001.000"
    r = requests.post(f"{s.base_url}/admin/api/push", json={"release_id": rel.id},
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 200 and r.json()["results"] == {VICTIM: "sent"}, r.json()
    buf = b""
    while b"\n" not in buf:
        buf += real.recv(4096)
    url = json.loads(buf.split(b"\n")[0])["url"][3:]
    assert "&exp=" in url and "&sig=" in url
    assert requests.get(url, timeout=10).status_code == 200  # the signed link works without a credential
    real.close()


def test_packages_are_private(hmac_server: Any) -> None:
    s, _, secret, rel = hmac_server
    path = f"/dl/{rel.sha256}.bin"
    tok = hmac_token(secret, VICTIM)
    downloads = [device_request(s.port, p, extra_headers=h).status for p, h in (
        (path, b""), (f"/dl/artifact/{rel.artifact_id}.bin", b""), (f"/dl/artifact/{rel.artifact_id}", b""),
        (f"{path}?fota_sn=madeup", b""), (f"{path}?exp=9999999999&sig=" + "0" * 32, b""),
        (f"{path}?exp={int(time.time()) + 60}&sig=" + "0" * 32, b""),
        (f"{path}?mac={VICTIM}", b""),  # no credential
        (f"{path}?mac={VICTIM}", _bearer("0" * 64)),  # forged credential
        (f"/dl/artifact/{rel.artifact_id}.bin", _bearer(tok)),  # artifact URLs: admin only
    )]
    assert downloads == [403] * 9, downloads
    # the device itself (checked in once, release targets it), and the operator
    assert device_request(s.port, check_target("2001.001.000"), extra_headers=_bearer(tok), method=b"HEAD").status == 200
    assert device_request(s.port, f"{path}?mac={VICTIM}", extra_headers=_bearer(tok)).status == 200
    assert device_request(s.port, f"/dl/artifact/{rel.artifact_id}.bin", extra_headers=_bearer(TOKEN)).status == 200
    # a release not targeting the device is not downloadable by it
    s.store.releases.set_target(rel.id, "devices", device_keys=["C8C2C6000001"])
    s.app.fota.invalidate()
    assert device_request(s.port, f"{path}?mac={VICTIM}", extra_headers=_bearer(tok)).status == 403


def test_signed_links_expire(tmp_path: Path) -> None:
    with running_server(tmp_path / "d", admin_token=TOKEN, signed_url_ttl_s=1.0) as s:
        p = s.store.products.add(KEY, FW)
        rel = s.store.releases.add(package(), product_id=p.id, version="001.000.002")
        target = (f"/api/site/turnkey_fota?mac={VICTIM}&project_key={KEY}&firmware_name={FW}"
                  "&core_version=2001&script_version=001.000.000")
        url = device_request(s.port, target).json()["url"]
        path = url[len(s.base_url):]
        assert device_request(s.port, path).status == 200
        assert device_request(s.port, path.replace(rel.sha256, "0" * 64)).status == 403  # bound to its path
        time.sleep(2.1)
        assert device_request(s.port, path).status == 403


def test_token_mode_with_csv_import(tmp_path: Path) -> None:
    with running_server(tmp_path / "d", admin_token=TOKEN) as s:
        p = s.store.products.add(KEY, FW)
        s.store.releases.add(package(), product_id=p.id, version="001.000.002")
        r = requests.patch(f"{s.base_url}/admin/api/products/{p.id}", json={"auth_mode": "token"},
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert r.status_code == 200 and r.json()["auth_mode"] == "token"
        csv = f"device,token\nc8:c2:c6:8c:d6:02,{'a1' * 16}\nC8C2C6000009,{'b2' * 16}\n"
        r = requests.post(f"{s.base_url}/admin/api/products/{p.id}/tokens", data=csv,
                          headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/csv"}, timeout=10)
        assert r.status_code == 200 and r.json() == {"imported": 2}
        bad = requests.post(f"{s.base_url}/admin/api/products/{p.id}/tokens", data="x,y,z\n",
                            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/csv"}, timeout=10)
        assert bad.status_code == 400 and "line 1" in bad.json()["msg"]
        s.app.fota.invalidate()
        assert device_request(s.port, check_target("2001.001.000"), extra_headers=_bearer("b2" * 16)).status == 401
        assert device_request(s.port, check_target("2001.001.000"), extra_headers=_bearer("A1" * 16)).status == 200
        assert device_request(s.port, check_target("2001.001.000", mac="C8C2C6000099"),
                              extra_headers=_bearer("a1" * 16)).status == 401
