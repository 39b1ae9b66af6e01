"""The libfota2 device endpoint, driven with requests shaped byte for byte like the device's.

Every request goes over a real socket to uvicorn on loopback via
``luatos_fota.testing.device_request`` (``GET <target> HTTP/1.1``, ``Connection: Close``,
``Host`` with the port, no User-Agent), and the answer is read back raw.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from luatos_common.packages import build_full
from luatos_fota.records import Product, Release
from luatos_fota.testing import RunningServer, device_request, running_server, script_package

KEY = "prodkey123"
FW = "FOTA2_DEMO_LuatOS-SoC_Air8101"
MAC = "C8C2C68CD602"


def q(version: str, *, mac: str = MAC, key: str = KEY, fw: str = FW, base: str = "/api/site/firmware_upgrade?",
      idkey: str = "mac") -> str:
    """What libfota2 appends to opts.url: no '?' added, nothing encoded (behaviour.md §7.2)."""
    return f"{base}{idkey}={mac}&project_key={key}&firmware_name={fw}&version={version}"


def pkg(version: str) -> bytes:
    return script_package(FW, version)


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "data") as s:
        yield s


@pytest.fixture
def product(srv: RunningServer) -> Product:
    return srv.store.products.add(KEY, FW)


def add(srv: RunningServer, product: Product, version: str, data: bytes | None = None, **kw) -> Release:
    data = data if data is not None else script_package(product.firmware_name, version)
    rel = srv.store.releases.add(data, product_id=product.id,
                                version=version, **kw)
    srv.app.fota.invalidate()
    return rel


def test_upgrade_with_glued_query_and_exact_headers(srv, product):
    data = pkg("001.000.002")
    add(srv, product, "001.000.002", data)
    r = device_request(srv.port, q("2001.001.000", base="/api/site/firmware_upgrade"))
    assert r.status == 200
    assert r.body == data
    assert r.header("Content-Length") == str(len(data))
    assert r.header("Transfer-Encoding") is None
    assert r.header("Content-Type") == "application/octet-stream"
    assert r.header("Accept-Ranges") == "bytes"
    sha = hashlib.sha256(data).digest()
    assert r.header("ETag") == f'"{sha.hex()}"'
    assert r.header("Repr-Digest") == f"sha-256=:{base64.b64encode(sha).decode()}:"
    assert r.header("X-Fota-Version") == "2001.001.002"
    srv.flush()
    serve = srv.store.audit.query(device_key=MAC, event_="serve")[0]
    assert serve.detail["glued"] is True and serve.status == 200


@pytest.mark.parametrize("base", ["/api/site/firmware_upgrade?", "/upgrade?", "/update", "/fota/check?"])
def test_any_base_path_with_device_params_is_a_check_in(srv, product, base):
    add(srv, product, "001.000.002")
    r = device_request(srv.port, q("2001.001.000", base=base))
    assert r.status == 200, r.body[:200]


@pytest.mark.parametrize("idkey,dev", [("imei", "861234567890123"), ("uid", "0123456789ABCDEF0123"),
                                       ("mac", "c8c2c68cd6ff")])
def test_device_key_variants(srv, product, idkey, dev):
    add(srv, product, "001.000.002")
    r = device_request(srv.port, q("2001.001.000", mac=dev, idkey=idkey))
    assert r.status == 200
    expected = dev.upper() if idkey == "mac" else dev
    d = srv.store.devices.get(expected)
    assert d is not None and d.key_type == idkey


def test_libfota_v1_order_device_key_last_and_extra_params(srv, product):
    add(srv, product, "001.000.002")
    target = (f"/api/site/firmware_upgrade?project_key={KEY}&firmware_name={FW}&version=2001.001.000"
              f"&model=Air780E&device_key=abc&imei=861234567890999")
    assert device_request(srv.port, target).status == 200


def test_literal_nil_device_id_is_refused_with_code_3(srv, product):
    add(srv, product, "001.000.002")
    r = device_request(srv.port, q("2001.001.000", mac="nil"))
    assert r.status == 400
    assert r.json()["code"] == 3
    assert "nil" in r.json()["msg"]


def test_nil_device_id_by_ip_when_configured(tmp_path):
    with running_server(tmp_path / "d", anonymous_devices="by_ip") as s:
        p = s.store.products.add(KEY, FW)
        add(s, p, "001.000.002")
        assert device_request(s.port, q("2001.001.000", mac="nil")).status == 200
        assert s.store.devices.get("ip:127.0.0.1") is not None


def test_raw_utf8_project_name(srv):
    fw = "温湿度_LuatOS-SoC_Air8101"
    p = srv.store.products.add(KEY, fw)
    add(srv, p, "001.000.002")
    r = device_request(srv.port, q("2001.001.000", fw=fw, base="/api/site/firmware_upgrade"))
    assert r.status == 200
    # and a client that percent-encoded it is understood too
    from urllib.parse import quote
    assert device_request(srv.port, q("2001.001.000", fw=quote(fw), mac="C8C2C68CD603")).status == 200


def test_space_in_project_breaks_request_line_400(srv, product):
    r = device_request(srv.port, q("2001.001.000", fw="MY PROJ_LuatOS-SoC_Air8101"))
    assert r.status == 400


def test_up_to_date_is_304_without_body(srv, product):
    add(srv, product, "001.000.002")
    r = device_request(srv.port, q("2001.001.002"))
    assert r.status == 304
    assert r.body == b""
    assert r.header("Cache-Control") == "no-store"
    assert r.header("Content-Length") in (None, "0")


def test_no_release_is_304(srv, product):
    assert device_request(srv.port, q("2001.001.000")).status == 304


@pytest.mark.parametrize("key,fw,code,status", [("nokey", FW, 25, 404), (KEY, "OTHER_LuatOS-SoC_Air8101", 26, 404)])
def test_unknown_product_codes(srv, product, key, fw, code, status):
    r = device_request(srv.port, q("2001.001.000", key=key, fw=fw))
    assert (r.status, r.json()["code"]) == (status, code)
    assert r.header("Content-Type").startswith("application/json")


def test_bad_version_is_code_3(srv, product):
    r = device_request(srv.port, q("2001.1"))
    assert r.status == 400 and r.json()["code"] == 3 and "core.x.z" in r.json()["msg"]


def test_operator_ban_code_21_and_unban(srv, product):
    add(srv, product, "001.000.002")
    device_request(srv.port, q("2001.001.002"))  # registers the device
    srv.store.devices.ban(MAC, "bench unit")
    srv.app.fota.invalidate()
    r = device_request(srv.port, q("2001.001.000"))
    assert (r.status, r.json()["code"]) == (403, 21)
    srv.store.devices.unban(MAC)
    srv.app.fota.invalidate()
    assert device_request(srv.port, q("2001.001.000")).status == 200


def test_closed_product_refuses_unregistered_device_17(srv):
    p = srv.store.products.add(KEY, FW, auto_register=False)
    add(srv, p, "001.000.002")
    r = device_request(srv.port, q("2001.001.000"))
    assert (r.status, r.json()["code"]) == (403, 17)
    srv.store.devices.register(MAC, p.id)
    srv.app.fota.invalidate()
    assert device_request(srv.port, q("2001.001.000")).status == 200


def test_numeric_compare_and_no_downgrade_unless_forced(srv, product):
    rel = add(srv, product, "001.000.009")
    # 10 > 9 numerically (a string compare would say otherwise): device is newer -> no downgrade
    r = device_request(srv.port, q("2001.001.010"))
    assert r.status == 304
    srv.store.releases.update(rel.id, forced=True)
    srv.app.fota.invalidate()
    r = device_request(srv.port, q("2001.001.010"))
    assert r.status == 200 and r.header("X-Fota-Version") == "2001.001.009"


def test_middle_group_is_ignored(srv, product):
    add(srv, product, "001.777.002")
    assert device_request(srv.port, q("2001.001.002")).status == 304


def test_highest_targeting_release_wins_and_pause(srv, product):
    add(srv, product, "001.000.002")
    r3 = add(srv, product, "001.000.003")
    assert device_request(srv.port, q("2001.001.000")).header("X-Fota-Version") == "2001.001.003"
    srv.store.releases.update(r3.id, enabled=False)
    srv.app.fota.invalidate()
    assert device_request(srv.port, q("2001.001.000")).header("X-Fota-Version") == "2001.001.002"


def test_full_release_names_its_core(srv, product):
    full = build_full("V2002", {"main.lua": b'PROJECT = "FOTA2_DEMO"\nVERSION = "001.000.002"\n'})
    rel = add(srv, product, "001.000.002", full)
    assert rel.kind == "full" and rel.core_version == "V2002"
    # same script on an older core: the full package brings the new core
    r = device_request(srv.port, q("2001.001.002"))
    assert r.status == 200 and r.header("X-Fota-Version") == "2002.001.002"
    assert device_request(srv.port, q("2002.001.002", mac="C8C2C68CD6AA")).status == 304


def test_script_release_keeps_the_device_core(srv, product):
    add(srv, product, "001.000.005")
    r = device_request(srv.port, q("2003.001.004"))
    assert r.header("X-Fota-Version") == "2003.001.005"


def test_device_list_targeting(srv, product):
    add(srv, product, "001.000.002", device_keys=["c8:c2:c6:8c:d6:02"])
    assert device_request(srv.port, q("2001.001.000")).status == 200
    assert device_request(srv.port, q("2001.001.000", mac="C8C2C68CD699")).status == 304


def test_pin_beats_latest(srv, product):
    r2 = add(srv, product, "001.000.002")
    add(srv, product, "001.000.003")
    device_request(srv.port, q("2001.001.001"))
    srv.store.devices.pin(MAC, r2.id)
    srv.app.fota.invalidate()
    r = device_request(srv.port, q("2001.001.001"))
    assert r.header("X-Fota-Release") == str(r2.id)
    assert device_request(srv.port, q("2001.001.002")).status == 304


def test_version_report_confirms_the_serve(srv, product):
    rel = add(srv, product, "001.000.002")
    assert device_request(srv.port, q("2001.001.000")).status == 200
    assert device_request(srv.port, q("2001.001.002")).status == 304
    srv.flush()
    st = srv.store.releases.stats(rel.id)[0]
    assert (st.targeted, st.served, st.confirmed) == (1, 1, 1)
    d = srv.store.devices.get(MAC)
    assert d.reported_version == "2001.001.002" and d.last_ip == "127.0.0.1"


def test_every_decision_is_audited_with_a_reason(srv, product):
    add(srv, product, "001.000.002", device_keys=["C8C2C68CD6EE"])
    device_request(srv.port, q("2001.001.000"))
    srv.flush()
    a = srv.store.audit.query(device_key=MAC, event_="checkin")[0]
    assert a.status == 304 and "no enabled release targets this device" in a.detail["reason"]


def test_root_without_path_explains(srv):
    r = device_request(srv.port, "/")
    assert r.status == 404 and "firmware_upgrade" in r.json()["msg"]


def test_never_a_redirect(srv, product):
    add(srv, product, "001.000.002")
    for t in (q("2001.001.000"), q("2001.001.002"), q("x"), q("2001.001.000", key="zz"), "/upgrade?mac=1"):
        r = device_request(srv.port, t)
        assert not (300 <= r.status < 400 and r.status != 304), (t, r.status)


def test_keep_alive_connection_with_raw_utf8_targets(srv):
    """Two requests on one connection (not what devices do, but proxies do): both parsed."""
    import socket

    fw = "气象站_LuatOS-SoC_Air8101"
    p = srv.store.products.add(KEY, fw)
    add(srv, p, "001.000.002")
    statuses = []
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        for version in ("2001.001.002", "2001.001.000"):
            s.sendall(f"GET {q(version, fw=fw)} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(4096)
            head, _, body = buf.partition(b"\r\n\r\n")
            statuses.append(int(head[9:12]))
            length = next((int(ln.split(b":")[1]) for ln in head.split(b"\r\n")
                           if ln.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += s.recv(65536)
    assert statuses == [304, 200]


def test_head_on_device_endpoint_sends_headers_only(srv, product):
    data = pkg("001.000.002")
    add(srv, product, "001.000.002", data)
    r = device_request(srv.port, q("2001.001.000"), method=b"HEAD")
    assert r.status == 200 and r.body == b"" and r.header("Content-Length") == str(len(data))
    # a HEAD is not a serve: six of them do not trip the loop guard
    for _ in range(6):
        device_request(srv.port, q("2001.001.000"), method=b"HEAD")
    assert device_request(srv.port, q("2001.001.000")).status == 200


def test_writes_through_the_same_store_apply_at_once(tmp_path):
    """The pytest plugin adds releases via srv.store; no cache delay even with a long TTL."""
    with running_server(tmp_path / "d", cache_ttl_s=3600) as s:
        p = s.store.products.add(KEY, FW)
        assert device_request(s.port, q("2001.001.000")).status == 304
        s.store.releases.add(pkg("001.000.002"), product_id=p.id, version="001.000.002")
        assert device_request(s.port, q("2001.001.000")).status == 200
        s.store.devices.ban(MAC)
        assert device_request(s.port, q("2001.001.000")).json()["code"] == 21


def test_bare_endpoint_without_parameters(srv):
    r = device_request(srv.port, "/api/site/firmware_upgrade")
    assert r.status == 400 and r.json()["code"] == 25


@pytest.mark.parametrize("opts_url", [
    "http://H/api/site/firmware_upgrade?", "http://H/api/site/firmware_upgrade", "http://H/upgrade?",
    "http://H/upgrade", "http://H/upgrade?token=abc&", "http://H/upgrade?token=abc", "http://H/a/b/c/",
])
def test_every_opts_url_shape_libfota2_produces(srv, product, opts_url):
    """Build the request as libfota2 does (behaviour.md §7.2: base + query, no '?' added) for
    several base URLs."""
    add(srv, product, "001.000.002")
    base = opts_url.removeprefix("http://H")
    target = f"{base}mac={MAC}&project_key={KEY}&firmware_name={FW}&version=2001.001.000"
    r = device_request(srv.port, target)
    assert r.status == 200, (target, r.status, r.body[:100])
