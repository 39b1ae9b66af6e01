"""Regression tests for docs/review-server.md findings 1-8 (each failed before its fix)."""

from __future__ import annotations

import dataclasses
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from luatos_fota import schema
from luatos_fota.audit import AuditEvent
from luatos_fota.store import Store
from luatos_fota.testing import RunningServer, device_request, running_server, script_package

KEY = "revkey"
FW = "REV_LuatOS-SoC_Air8101"
MAC = "C8C2C68CD602"


def pkg(version: str) -> bytes:
    return script_package(FW, version)


def check(version: str, mac: str = MAC, key: str = KEY, fw: str = FW) -> str:
    return f"/api/site/firmware_upgrade?mac={mac}&project_key={key}&firmware_name={fw}&version={version}"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "d", admin_token="tok") as s:
        yield s


def _serves(s: RunningServer, rid: int) -> int:
    return s.store.releases.stats(rid)[0].serves


# ---------------------------------------------------------------- 1: closed products

def test_device_seen_on_open_product_cannot_fetch_closed_product(srv):
    st = srv.store
    st.products.add(KEY, FW)
    closed = st.products.add("secret", "SECRET_LuatOS-SoC_Air8101", auto_register=False)
    st.releases.add(script_package("SECRET_LuatOS-SoC_Air8101", "001.000.009"), product_id=closed.id, version="001.000.009")
    assert device_request(srv.port, check("2001.001.000")).status == 304  # open product, no release
    r = device_request(srv.port, check("2001.001.000", key="secret", fw="SECRET_LuatOS-SoC_Air8101"))
    assert r.status == 403 and r.json()["code"] == 17 and len(r.body) < 400
    assert st.devices.get(MAC).product_id == 1  # not moved into the closed product


def test_registered_device_is_served_by_its_closed_product_but_not_moved(srv):
    st = srv.store
    open_p = st.products.add(KEY, FW)
    closed = st.products.add("secret", "SECRET_LuatOS-SoC_Air8101", auto_register=False)
    st.releases.add(script_package("SECRET_LuatOS-SoC_Air8101", "001.000.009"), product_id=closed.id, version="001.000.009")
    st.devices.register(MAC, closed.id)
    srv.app.fota.invalidate()
    r = device_request(srv.port, check("2001.001.000", key="secret", fw="SECRET_LuatOS-SoC_Air8101"))
    assert r.status == 200
    # a device registered to the closed product checking in with another product's key
    r = device_request(srv.port, check("2001.001.000"))
    assert r.status == 403 and r.json()["code"] == 17
    assert st.devices.get(MAC).product_id == closed.id != open_p.id


# ---------------------------------------------------------------- 2: overlong fields, poisoned buffer

def test_overlong_device_id_and_version_are_400_code_3(srv):
    srv.store.products.add(KEY, FW)
    r = device_request(srv.port, check("2001.001.000", mac="A" * 250))
    assert r.status == 400 and r.json()["code"] == 3 and "mac" in r.json()["msg"]
    r = device_request(srv.port, check("2001." + "1" * 70 + ".000"))
    assert r.status == 400 and r.json()["code"] == 3 and "version" in r.json()["msg"]
    assert srv.store.devices.get("A" * 250) is None


def _writer_survives_bad_row(s: RunningServer) -> None:
    w = s.app.fota.writer
    s.flush()
    before = len(s.store.audit.query(event_="probe", limit=100))
    good = AuditEvent("probe", "GOOD")
    w.record(good)
    w.record(dataclasses.replace(good, event=None))  # type: ignore[arg-type]  # NOT NULL on both databases
    w.record(dataclasses.replace(good, device_key="GOOD2"))
    w.flush()  # must not raise, must not keep the bad row
    rows = s.store.audit.query(event_="probe", limit=100)
    assert len(rows) - before == 2 and {r.device_key for r in rows} >= {"GOOD", "GOOD2"}
    assert w.dropped_audit == 1
    w.record(dataclasses.replace(good, device_key="GOOD3"))
    w.flush()
    assert any(r.device_key == "GOOD3" for r in s.store.audit.query(event_="probe", limit=100))


def test_writer_drops_a_bad_row_and_keeps_the_rest_sqlite(srv):
    _writer_survives_bad_row(srv)


@pytest.mark.postgres
def test_overlong_ids_postgres_are_400_and_audit_keeps_flowing(tmp_path, pg_url):
    with running_server(tmp_path / "d", db_url=pg_url, flush_interval_s=0.1) as s:
        s.store.products.add(KEY, FW)
        r = device_request(s.port, check("2001.001.000", mac="A" * 250))
        assert r.status == 400 and r.json()["code"] == 3
        r = device_request(s.port, check("2001.001.000", mac="B" * 250, key="nope", fw="x"))
        assert r.status in (400, 404)
        assert device_request(s.port, check("2001.001.000")).status == 304
        s.flush()
        assert s.store.audit.query(device_key=MAC, limit=5), "audit stopped after an overlong id"
        assert not s.app.fota.writer._audit
        _writer_survives_bad_row(s)


# ---------------------------------------------------------------- 3: event loop never blocks on the DB

def test_cached_device_answered_while_another_holds_the_write_lock(tmp_path):
    with running_server(tmp_path / "d", hot_busy_timeout_s=1.0, retry_after_s=9) as s:
        s.store.products.add(KEY, FW)
        assert device_request(s.port, check("2001.001.000")).status == 304  # now cached
        con = sqlite3.connect(tmp_path / "d" / "fota.db", isolation_level=None)
        con.execute("BEGIN IMMEDIATE")  # e.g. a CLI command or another instance writing
        res: dict[str, object] = {}

        def first_seen() -> None:
            res["new"] = device_request(s.port, check("2001.001.000", mac="C8C2C68CD6FF"), timeout=20)

        th = threading.Thread(target=first_seen)
        try:
            th.start()
            time.sleep(0.2)  # let it block inside the insert
            r = device_request(s.port, check("2001.001.000"), timeout=5)  # lock still held
            assert r.status == 304
            th.join(20)
        finally:
            con.execute("ROLLBACK")
            con.close()
        new = res["new"]
        assert new.status == 503 and new.header("Retry-After") == "9"  # type: ignore[attr-defined]
        assert device_request(s.port, check("2001.001.000", mac="C8C2C68CD6FF")).status == 304


def test_ban_does_not_reload_the_catalogue(srv, monkeypatch):
    srv.store.products.add(KEY, FW)
    assert device_request(srv.port, check("2001.001.000")).status == 304
    calls = []
    real = srv.store.releases.load_catalog
    monkeypatch.setattr(srv.store.releases, "load_catalog", lambda: calls.append(1) or real())
    r = requests.post(f"{srv.base_url}/admin/api/devices/{MAC}/ban", json={"reason": "stolen"},
                      headers={"Authorization": "Bearer tok"}, timeout=10)
    assert r.status_code == 200
    r = device_request(srv.port, check("2001.001.000"))
    assert r.status == 403 and r.json()["code"] == 21
    assert calls == []


# ---------------------------------------------------------------- 4: device list beats "all"

def test_device_list_forced_rollback_beats_newer_release_for_all(srv):
    st = srv.store
    p = st.products.add(KEY, FW)
    st.releases.add(pkg("001.000.005"), product_id=p.id, version="001.000.005")
    rel4 = st.releases.add(pkg("001.000.004"), product_id=p.id, version="001.000.004", device_keys=[MAC], forced=True,
                          allow_downgrade=True)
    srv.app.fota.invalidate()
    r = device_request(srv.port, check("2001.001.005"))
    assert r.status == 200 and r.header("x-fota-release") == str(rel4.id)
    assert device_request(srv.port, check("2001.001.005", mac="C8C2C68CD603")).status == 304


# ---------------------------------------------------------------- 6: numeric version comparison

def test_respelling_the_version_neither_lifts_the_ban_nor_resets_the_count(tmp_path):
    with running_server(tmp_path / "d", loop_max_serves=3) as s:
        p = s.store.products.add(KEY, FW)
        s.store.releases.add(pkg("001.000.002"), product_id=p.id, version="001.000.002")
        spellings = ["2001.001.000", "2001.1.0", "2001.001.000"]
        assert [device_request(s.port, check(v)).status for v in spellings] == [200, 200, 200]
        assert device_request(s.port, check("2001.1.0")).status == 403
        r = device_request(s.port, check("2001.001.000"))
        assert r.status == 403 and r.json()["code"] == 40


def test_falling_back_to_an_older_version_does_not_reset_the_count(tmp_path):
    with running_server(tmp_path / "d", loop_max_serves=4) as s:
        p = s.store.products.add(KEY, FW)
        s.store.releases.add(pkg("001.000.002"), product_id=p.id, version="001.000.002")
        seq = ["2001.001.001", "2001.001.001", "2001.001.000", "2001.001.000"]
        assert [device_request(s.port, check(v)).status for v in seq] == [200] * 4
        r = device_request(s.port, check("2001.001.000"))
        assert r.status == 403 and r.json()["code"] == 40
        assert device_request(s.port, check("2001.001.001")).status == 200  # a rise is progress: ban lifted


# ---------------------------------------------------------------- 7: count what is sent

def test_failed_blob_read_is_not_a_serve(srv, monkeypatch):
    p = srv.store.products.add(KEY, FW)
    rel = srv.store.releases.add(pkg("001.000.002"), product_id=p.id, version="001.000.002")

    def unreadable(sha: str) -> bytes:
        raise PermissionError(f"blobs/{sha}: permission denied")

    monkeypatch.setattr(srv.app.blob_cache.blobs, "read", unreadable)
    for _ in range(3):
        r = device_request(srv.port, check("2001.001.000"))
        assert r.status == 503 and r.header("Retry-After")
    assert _serves(srv, rel.id) == 0


def test_head_and_ranges_see_the_loop_guard(tmp_path):
    with running_server(tmp_path / "d", loop_max_serves=2) as s:
        p = s.store.products.add(KEY, FW)
        rel = s.store.releases.add(pkg("001.000.002"), product_id=p.id, version="001.000.002")
        size = rel.size
        # Range continuations add up their bytes: 10- and 20- are (size-10)+(size-20) bytes,
        # one package's worth (the serve rows record what each sent)
        assert device_request(s.port, check("2001.001.000"), extra_headers=b"Range: bytes=10-\r\n").status == 206
        assert device_request(s.port, check("2001.001.000"), extra_headers=b"Range: bytes=20-\r\n").status == 206
        assert _serves(s, rel.id) == 2
        dev = s.store.devices.get(MAC)
        assert s.store.serves.load(dev.id, rel.id, 0.0) == (0, 2 * size - 30)
        h = device_request(s.port, check("2001.001.000"), method=b"HEAD")
        assert h.status == 200 and h.body == b"" and _serves(s, rel.id) == 2  # HEAD records nothing
        assert device_request(s.port, check("2001.001.000")).status == 200  # 1 worth before: allowed
        h = device_request(s.port, check("2001.001.000"), method=b"HEAD")
        assert h.status == 403 and h.body == b""  # 2 worth: the guard applies to HEAD too (without banning)
        assert s.store.devices.get(MAC).ban_code == 0
        # two packages' worth went out: a resume is refused like a whole download
        r = device_request(s.port, check("2001.001.000"), extra_headers=b"Range: bytes=30-\r\n")
        assert r.status == 403 and r.json()["code"] == 40
        r = device_request(s.port, check("2001.001.000"))
        assert r.status == 403 and r.json()["code"] == 40
        s.flush()
        assert s.store.audit.query(device_key=MAC, event_="head", limit=10)


# ---------------------------------------------------------------- 5: push goes through the decision

def _login(port: int, device: str, version: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(json.dumps({"login": {"device": device, "version": version}}).encode() + b"\n")
    buf = b""
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        assert chunk, "push hub closed the connection"
        buf += chunk
    return sock


def test_push_skips_up_to_date_banned_and_pinned_elsewhere(tmp_path):
    from luatos_fota.push import PushHub

    hub = PushHub(min_gap=0)
    with running_server(tmp_path / "d", admin_token="tok", push_hub=hub,
                        extra={"push_port": 0, "push_host": "127.0.0.1"}) as s:
        st = s.store
        p = st.products.add(KEY, FW)
        rel1 = st.releases.add(pkg("001.000.001"), product_id=p.id, version="001.000.001")
        rel2 = st.releases.add(pkg("001.000.002"), product_id=p.id, version="001.000.002")
        old, cur, banned, pinned = "C8C2C68CD601", "C8C2C68CD602", "C8C2C68CD603", "C8C2C68CD604"
        for mac, v in ((old, "2001.001.000"), (cur, "2001.001.002"), (banned, "2001.001.000"),
                       (pinned, "2001.001.000")):
            device_request(s.port, check(v, mac=mac), method=b"HEAD")  # known, nothing served
        st.devices.ban(banned, "returned unit")
        st.devices.pin(pinned, rel1.id)
        socks = [_login(hub.port, m, v) for m, v in ((old, "2001.001.000"), (cur, "2001.001.002"),
                                                     (banned, "2001.001.000"), (pinned, "2001.001.000"))]
        try:
            r = requests.post(f"{s.base_url}/admin/api/push", json={"release_id": rel2.id},
                              headers={"Authorization": "Bearer tok"}, timeout=10)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["results"] == {old: "sent"}
            skipped = body["skipped"]
            assert set(skipped) == {cur, banned, pinned}
            assert "latest" in skipped[cur] and "banned" in skipped[banned] and "pinned" in skipped[pinned]
            assert _serves(s, rel2.id) == 1  # the push is a serve: stats and loop guard see it
            buf = b""
            while b"\n" not in buf:
                buf += socks[0].recv(4096)
            url = json.loads(buf.split(b"\n")[0])["url"]
            assert url.startswith(f"###{s.base_url}/dl/{rel2.sha256}.bin?fota_sn=")
            # the device fetches the URL: a serve already counted, not counted twice
            got = requests.get(url[3:], timeout=10)
            assert got.status_code == 200 and _serves(s, rel2.id) == 1
        finally:
            for x in socks:
                x.close()


def test_dl_by_identified_device_counts_and_is_guarded(tmp_path):
    # Open downloads (private_downloads off): a ?mac= URL is how such a device is identified.
    with running_server(tmp_path / "d", loop_max_serves=2, private_downloads=False) as s:
        p = s.store.products.add(KEY, FW)
        rel = s.store.releases.add(pkg("001.000.002"), product_id=p.id, version="001.000.002")
        assert device_request(s.port, check("2001.001.000", mac=MAC), method=b"HEAD").status == 200
        url = f"/dl/{rel.sha256}.bin?mac={MAC}"
        assert device_request(s.port, url).status == 200
        assert _serves(s, rel.id) == 1
        assert device_request(s.port, url).status == 200
        r = device_request(s.port, url)
        assert r.status == 403 and r.json()["code"] == 40
        assert device_request(s.port, f"/dl/{rel.sha256}.bin").status == 200  # anonymous: not counted


# ---------------------------------------------------------------- 8: migrations

def _shape(url: str) -> dict[str, object]:
    eng = sa.create_engine(url)
    try:
        insp = sa.inspect(eng)
        out: dict[str, object] = {}
        for tname in sorted(insp.get_table_names()):
            out[tname] = (sorted((c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(tname)),
                          sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                 for i in insp.get_indexes(tname)))
        with eng.connect() as c:
            out["_generation_rows"] = sorted(r[0] for r in c.execute(sa.text("SELECT id FROM generation")))
        return out
    finally:
        eng.dispose()


def test_v1_database_upgrades_to_the_current_schema(tmp_path):
    v1 = tmp_path / "v1"
    v1.mkdir()
    url = f"sqlite:///{v1 / 'fota.db'}"
    eng = sa.create_engine(url)
    with eng.begin() as c:  # exactly what a version-1 server left behind
        schema.schema_version.create(c)
        schema.MIGRATIONS[0](c)
        c.execute(schema.schema_version.insert().values(id=1, version=1))
        c.execute(sa.text("INSERT INTO products (project_key, firmware_name, name, auto_register, created_at) "
                          "VALUES ('k', 'F_LuatOS-SoC_Air8101', 'F', 1, 0)"))
    eng.dispose()
    assert schema.LATEST >= 2, "migration 2 exists"
    shape_v1 = _shape(url)
    st = Store(v1)
    assert st.products.all()[0].project_key == "k"
    st.close()
    fresh = Store(tmp_path / "fresh")
    fresh.close()
    upgraded, new = _shape(url), _shape(f"sqlite:///{tmp_path / 'fresh' / 'fota.db'}")
    assert upgraded == new
    assert shape_v1 != new  # migration 1 is the frozen v1 schema, not today's metadata


@pytest.mark.postgres
def test_v1_database_upgrades_on_postgres(tmp_path, pg_url):
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        schema.schema_version.create(c)
        schema.MIGRATIONS[0](c)
        c.execute(schema.schema_version.insert().values(id=1, version=1))
    eng.dispose()
    st = Store(tmp_path / "d", pg_url)
    with st.db.ro() as c:
        assert schema.current_version(c) == schema.LATEST
    st.close()
