"""Store: migrations, generation counter, shared state between instances (SQLite file and
PostgreSQL), and buffered audit rows surviving a clean shutdown."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from luatos_fota import schema
from luatos_fota.app import create_app
from luatos_fota.store import Store
from luatos_fota.testing import device_request, running_server, script_package

KEY = "k"
FW = "MULTI_LuatOS-SoC_Air8101"
MAC = "C8C2C68CD602"
CHECK = f"/api/site/firmware_upgrade?mac={MAC}&project_key={KEY}&firmware_name={FW}&version=2001.001.000"


def test_migrations_recorded_and_idempotent(tmp_path: Path):
    st = Store(tmp_path)
    with st.db.ro() as c:
        assert schema.current_version(c) == schema.LATEST
    gen = st.db.generation()
    st.close()
    st2 = Store(tmp_path)
    assert st2.db.generation() == gen  # reopening migrates nothing and bumps nothing
    with st2.db.tx() as c:
        c.execute(schema.schema_version.update().values(version=schema.LATEST + 1))
    st2.close()
    with pytest.raises(RuntimeError, match="newer than this server"):
        Store(tmp_path)


def test_generation_moves_on_every_decision_relevant_write(tmp_path: Path):
    st = Store(tmp_path)
    g0 = st.db.generation()
    p = st.products.add(KEY, FW)
    g1 = st.db.generation()
    st.releases.add(script_package(FW, "001.000.002", "-- x"), product_id=p.id, version="001.000.002")
    g2 = st.db.generation()
    st.releases.update(1, enabled=False)
    g3 = st.db.generation()
    assert g0 < g1 < g2 < g3
    st.close()


def test_firmware_name_with_space_refused(tmp_path: Path):
    st = Store(tmp_path)
    with pytest.raises(ValueError, match="whitespace"):
        st.products.add(KEY, "MY PROJ_LuatOS-SoC_Air8101")
    st.close()


def _two_instances(tmp_path: Path, db_url: str | None) -> None:
    """Two servers on one database: loop-guard counts and bans are shared."""
    common = {"db_url": db_url, "cache_ttl_s": 0, "admin_token": "t"}
    with running_server(tmp_path / "a", **common) as a, running_server(tmp_path / "b", **common) as b:
        if db_url is None:  # SQLite: both on the same file
            pass
        p = a.store.products.add(KEY, FW)
        data = script_package(FW, "001.000.002", "--m")
        a.store.releases.add(data, product_id=p.id, version="001.000.002")
        b.store.blobs.put(data)  # separate data dirs share the DB, not the blob dir
        statuses = [device_request((a if i % 2 else b).port, CHECK).status for i in range(6)]
        assert statuses == [200] * 6
        r = device_request(b.port, CHECK)
        assert r.status == 403 and r.json()["code"] == 40
        assert device_request(a.port, CHECK).json()["code"] == 40  # the ban written by b holds on a
        a.store.devices.unban(MAC)
        assert device_request(b.port, CHECK).status == 200


def test_two_instances_share_loop_guard_sqlite(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    _two_instances(tmp_path, url)


@pytest.mark.postgres
def test_two_instances_share_loop_guard_postgres(tmp_path: Path, pg_url: str):
    _two_instances(tmp_path, pg_url)


@pytest.mark.postgres
def test_postgres_full_flow(tmp_path: Path, pg_url: str):
    with running_server(tmp_path / "d", db_url=pg_url) as s:
        p = s.store.products.add(KEY, "温度_LuatOS-SoC_Air8101")
        s.store.releases.add(script_package("温度_LuatOS-SoC_Air8101", "001.000.002", "--pg"), product_id=p.id, version="001.000.002")
        t = CHECK.replace(FW, "温度_LuatOS-SoC_Air8101")
        assert device_request(s.port, t).status == 200
        assert device_request(s.port, t.replace("2001.001.000", "2001.001.002")).status == 304
        s.flush()
        st = s.store.releases.stats(1)[0]
        assert (st.served, st.confirmed) == (1, 1)
        assert s.store.devices.get(MAC).check_ins == 2


def test_buffered_audit_flushed_on_clean_shutdown(tmp_path: Path):
    d = tmp_path / "d"
    with running_server(d, flush_interval_s=3600) as s:  # no periodic flush during the test
        s.store.products.add(KEY, FW)
        for i in range(25):
            assert device_request(s.port, CHECK.replace(MAC, f"C8C2C68CD6{i:02X}")).status == 304
    st = Store(d)
    rows = st.audit.query(event_="checkin", limit=100)
    assert len(rows) == 25
    with st.db.ro() as c:
        assert c.execute(sa.select(sa.func.sum(schema.devices.c.check_ins))).scalar_one() == 25
    st.close()


def test_create_app_rejects_unknown_option(tmp_path: Path):
    with pytest.raises(TypeError, match="unknown server option"):
        create_app(tmp_path, loop_max=3)
