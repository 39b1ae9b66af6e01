"""The typed store: every repository hands out frozen records, each record's ``to_json`` is the
JSON the admin API and the CLI have always answered (same keys, same order), and the push
channel's shared state (repo_push.py) works on SQLite and PostgreSQL alike."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from luatos_fota import records
from luatos_fota.repo_push import PushSessionsRepo
from luatos_fota.store import Store
from luatos_fota.testing import RunningServer, running_server, script_package

KEY = "typed_key"
FW = "TYPED_LuatOS-SoC_Air8101"
MAC = "C8C2C68CD7A1"
TOKEN = "typed-store-token"

# The keys, in order, of what the admin API answered before the store was typed (captured from
# the dict-returning Store): the contract to_json keeps.
PRODUCT_KEYS = ["id", "project_key", "firmware_name", "name", "auto_register", "created_at", "auth_mode",
                "auth_secret"]
RELEASE_KEYS = ["id", "product_id", "artifact_id", "script_version", "core_version", "kind", "notes", "enabled",
                "forced", "target_mode", "percent", "created_at", "archived", "preflight_status", "preflight",
                "enable_on_pass", "sha256", "size", "package_kind", "project_key", "firmware_name", "script_x",
                "script_z", "core_num", "devices", "download_path", "preflight_result"]
ARTIFACT_KEYS = ["id", "sha256", "size", "kind", "core_version", "details", "filename", "created_at"]
DEVICE_KEYS = ["id", "device_key", "key_type", "product_id", "reported_version", "version_changed_at", "first_seen",
               "last_seen", "last_ip", "check_ins", "ban_code", "ban_reason", "banned_at", "pinned_release_id",
               "registered"]
AUDIT_KEYS = ["id", "ts", "event", "device_key", "product_id", "release_id", "status", "code", "ip", "actor",
              "detail"]
STATS_KEYS = ["release_id", "product_id", "script_version", "core_version", "kind", "enabled", "target_mode",
              "percent", "known_devices", "targeted", "served", "serves", "confirmed", "failed"]
SERVE_KEYS = ["id", "fota_sn", "device_id", "release_id", "channel", "from_version", "served_at", "result_code",
              "reported_at", "confirmed_at", "bytes", "device_key", "ban_code", "sha256"]


def assert_frozen(rec: Any) -> None:
    assert dataclasses.is_dataclass(rec) and not isinstance(rec, type), rec
    name = dataclasses.fields(rec)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(rec, name, getattr(rec, name))


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "d", admin_token=TOKEN) as s:
        yield s


def api(srv: RunningServer, path: str) -> Any:
    r = requests.get(f"{srv.base_url}/admin/api{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_every_repository_hands_out_frozen_records(tmp_path: Path) -> None:
    st = Store(tmp_path)
    try:
        p = st.products.add(KEY, FW)
        rel = st.releases.add(script_package(FW, "001.000.002", "-- x"), product_id=p.id, version="001.000.002")
        dev = st.devices.create(MAC, "mac", p.id, "2001.001.000", "10.0.0.1")
        _n, sn = st.serves.count_and_record(dev.id, rel.id, 0.0, 5, "v1", "2001.001.000", "full", size=rel.size)
        assert sn is not None
        made = [p, st.products.get(p.id), *st.products.all(), rel, st.releases.get(rel.id), *st.releases.all(),
                *st.releases.artifacts(), st.releases.artifact_by_sha(rel.sha256), *st.releases.stats(),
                dev, st.devices.get(MAC), st.devices.ban(MAC, "test"), *st.devices.all(),
                st.serves.by_sn(sn), st.serves.record_result(sn, 0), *st.audit.query()]
        for rec in made:
            assert_frozen(rec)
        st.push_sessions.register("i1", "")
        st.push_sessions.login(MAC, "i1", "1.2.3.4:5", {"project_key": KEY})
        (session,) = st.push_sessions.live(stale_s=60)
        assert_frozen(session)
        assert isinstance(session, records.PushSession) and session.info == {"project_key": KEY}
    finally:
        st.close()


def test_to_json_is_the_admin_api_answer_and_keeps_its_keys(srv: RunningServer) -> None:
    st = srv.store
    p = st.products.add(KEY, FW)
    plain = st.releases.add(script_package(FW, "001.000.002", "-- a"), product_id=p.id, version="001.000.002")
    targeted = st.releases.add(script_package(FW, "001.000.003", "-- b"), product_id=p.id, version="001.000.003",
                               device_keys=[MAC], preflight="pending")
    targeted = st.releases.record_preflight(targeted.id, {"status": "passed", "summary": "ok"})
    st.devices.register(MAC, p.id)
    banned = st.devices.ban(MAC, "stolen")
    srv.flush()
    # What the HTTP API answers is exactly each record's to_json, key order included.
    for rec, path, keys in ((p, f"/products/{p.id}", PRODUCT_KEYS), (plain, f"/releases/{plain.id}", RELEASE_KEYS),
                            (banned, f"/devices/{MAC}", DEVICE_KEYS)):
        got = api(srv, path)
        assert got == json.loads(json.dumps(rec.to_json())) and list(got) == keys
    # A stored preflight result is shown parsed, never as the raw column (as before).
    got = api(srv, f"/releases/{targeted.id}")
    assert list(got) == [k for k in RELEASE_KEYS if k != "preflight"]
    assert got["preflight_result"] == {"status": "passed", "summary": "ok"} and got["devices"] == [MAC]
    assert got["download_path"] == f"/dl/{targeted.sha256}.bin" and got["script_x"] == 1 and got["script_z"] == 3
    assert [list(a) for a in api(srv, "/artifacts")["artifacts"]] == [ARTIFACT_KEYS, ARTIFACT_KEYS]
    assert [list(s) for s in api(srv, "/stats")["releases"]] == [STATS_KEYS, STATS_KEYS]
    rows = api(srv, f"/audit?device={MAC}")["audit"]
    assert rows and all(list(a) == AUDIT_KEYS for a in rows)
    assert rows[0]["event"] == "banned" and rows[0]["detail"] == {"reason": "stolen"}
    assert [a.to_json() for a in st.audit.query(device_key=MAC)] == rows


def test_from_json_gives_the_record_back(tmp_path: Path) -> None:
    st = Store(tmp_path)
    try:
        p = st.products.add(KEY, FW)
        rel = st.releases.add(script_package(FW, "001.000.002", "-- a"), product_id=p.id, version="001.000.002",
                              preflight="pending")
        rel = st.releases.record_preflight(rel.id, {"status": "failed", "summary": "boot loop"})
        dev = st.devices.create(MAC, "mac", p.id, "2001.001.000", "10.0.0.1")
        for rec in (p, dev, *st.releases.stats(), *st.audit.query()):
            wire = json.loads(json.dumps(rec.to_json()))
            assert type(rec).from_json(wire) == rec  # type: ignore[attr-defined]
        back = records.Release.from_json(json.loads(json.dumps(rel.to_json())))
        assert back.to_json() == rel.to_json() and back.preflight_result == {"status": "failed", "summary": "boot loop"}
        fresh = st.releases.add(script_package(FW, "001.000.003", "-- b"), product_id=p.id, version="001.000.003")
        assert records.Release.from_json(json.loads(json.dumps(fresh.to_json()))) == fresh
    finally:
        st.close()


def test_serve_record_carries_the_joined_device_and_package(tmp_path: Path) -> None:
    st = Store(tmp_path)
    try:
        p = st.products.add(KEY, FW)
        rel = st.releases.add(script_package(FW, "001.000.002", "-- a"), product_id=p.id, version="001.000.002")
        dev = st.devices.create(MAC, "mac", p.id, "2001.001.000", "10.0.0.1")
        _n, sn = st.serves.count_and_record(dev.id, rel.id, 0.0, 5, "v2", "2001.001.000", "full", size=rel.size)
        assert sn is not None
        serve = st.serves.by_sn(sn)
        assert serve is not None and list(serve.to_json()) == SERVE_KEYS
        assert (serve.device_id, serve.device_key, serve.sha256, serve.bytes) == (dev.id, MAC, rel.sha256, rel.size)
        result = st.serves.record_result(sn, 0)
        assert result.to_json() == {"fota_sn": sn, "release_id": rel.id, "device_key": MAC, "success": True}
        assert st.serves.by_sn("nope") is None
    finally:
        st.close()


def _push_sessions_flow(tmp_path: Path, db_url: str | None) -> None:
    """Two instances' view of the shared push tables through the repository alone."""
    a, b = Store(tmp_path / "a", db_url), Store(tmp_path / "b", db_url)
    try:
        ra, rb = a.push_sessions, b.push_sessions
        assert isinstance(ra, PushSessionsRepo)
        ra.register("A", "127.0.0.1:1")
        rb.register("B", "127.0.0.1:2")
        rb.login(MAC, "B", "10.0.0.9:4000", {"project_key": KEY, "version": "2001.001.000"})
        rb.answer(MAC, "B", {"ack": "fota"})
        (s,) = ra.live(stale_s=60)
        assert (s.device_key, s.instance_id, s.peer, s.info["project_key"], s.last_answer) == (
            MAC, "B", "10.0.0.9:4000", KEY, {"ack": "fota"})
        # A push for MAC asked on A goes to B's outbox; only B can claim it, and only once.
        queued = ra.enqueue("A", [MAC, "NOBODY"], {"fota": "true"}, stale_s=60)
        assert list(queued) == [MAC]
        assert ra.claim_one("A") is None
        item = rb.claim_one("B")
        assert item is not None and item.device_key == MAC and json.loads(item.message) == {"fota": "true"}
        assert rb.claim_one("B") is None and ra.results([item.id]) == {}
        rb.finish(item.id, "sent")
        assert ra.results([item.id]) == {item.id: "sent"}
        # A row nobody claimed is withdrawn, never sent late.
        late = ra.enqueue("A", [MAC], {"fota": "late"}, stale_s=60)[MAC]
        ra.withdraw([late], "error: not picked up in time")
        assert rb.claim_one("B") is None and ra.results([late]) == {late: "error: not picked up in time"}
        # The heartbeat makes B's rows match its hub; a stale instance's sessions are not live.
        # A row the beat repairs carries the hub's login info (a beat racing the login's own
        # write must not leave a session that forgot the device's version).
        rb.heartbeat("B", {"C8C2C68CD7A2": ("10.0.0.7:4001", {"project_key": KEY, "version": "2001.001.003"})},
                     outbox_keep_s=3600)
        (repaired,) = ra.live(stale_s=60)
        assert (repaired.device_key, repaired.peer, repaired.info) == (
            "C8C2C68CD7A2", "10.0.0.7:4001", {"project_key": KEY, "version": "2001.001.003"})
        time.sleep(0.05)
        assert ra.live(stale_s=0.01) == []
        # Leaving: B's sessions go and what was still queued for it is answered "offline".
        pending = ra.enqueue("A", ["C8C2C68CD7A2"], {"fota": "x"}, stale_s=60)["C8C2C68CD7A2"]
        rb.unregister("B")
        assert ra.live(stale_s=60) == [] and ra.results([pending]) == {pending: "offline"}
    finally:
        a.close()
        b.close()


def test_push_sessions_on_sqlite(tmp_path: Path) -> None:
    _push_sessions_flow(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}")


def test_push_sessions_on_postgres(tmp_path: Path, pg_url: str) -> None:
    _push_sessions_flow(tmp_path, pg_url)


def test_device_from_a_row_in_any_column_order() -> None:
    """The fast path (the devices table's columns are the record's fields) and the general
    one (any row naming the columns) give the same record."""
    from collections import namedtuple

    from luatos_fota import schema

    names = [c.name for c in schema.devices.columns]
    assert names == DEVICE_KEYS  # the fast path's premise
    values = dict(zip(names, (7, MAC, "mac", 1, "2001.001.000", 1.0, 2.0, 3.0, "10.0.0.1", 4, 0, "", None, None,
                              True), strict=True))
    in_order = namedtuple("Row", names)(**values)  # type: ignore[misc]
    shuffled = namedtuple("Row", list(reversed(names)))(**values)  # type: ignore[misc]
    a, b = records.Device.from_row(in_order), records.Device.from_row(shuffled)
    assert a == b and a.id == 7 and a.device_key == MAC and a.registered is True
