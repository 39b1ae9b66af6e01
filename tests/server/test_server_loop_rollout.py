"""Loop protection (ban after 6 serves, unban, lift on version change) and staged rollout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from luatos_fota.catalog import rollout_bucket
from luatos_fota.config import ServerConfig
from luatos_fota.service import FotaService, Query
from luatos_fota.store import Store
from luatos_fota.testing import RunningServer, device_request, running_server, script_package

KEY = "k"
FW = "LOOP_LuatOS-SoC_Air8101"
MAC = "C8C2C68CD602"


def check(version: str, mac: str = MAC) -> str:
    return f"/api/site/firmware_upgrademac={mac}&project_key={KEY}&firmware_name={FW}&version={version}"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "d") as s:
        p = s.store.products.add(KEY, FW)
        s.store.releases.add(script_package(FW, "001.000.002", "--2"), product_id=p.id, version="001.000.002")
        yield s


def test_loop_ban_after_six_serves_then_operator_unban(srv):
    for i in range(6):
        assert device_request(srv.port, check("2001.001.000")).status == 200, i
    r = device_request(srv.port, check("2001.001.000"))
    assert r.status == 403 and r.json()["code"] == 40
    assert device_request(srv.port, check("2001.001.000")).json()["code"] == 40  # stays banned
    d = srv.store.devices.get(MAC)
    assert d.ban_code == 40 and "6 times" in d.ban_reason
    bans = srv.store.audit.query(device_key=MAC, event_="loop_ban")
    assert len(bans) == 1 and bans[0].detail["serves"] == 6
    srv.store.devices.unban(MAC, actor="test")
    srv.app.fota.invalidate()
    assert device_request(srv.port, check("2001.001.000")).status == 200
    unb = srv.store.audit.query(device_key=MAC, event_="unbanned")
    assert unb and unb[0].actor == "test"


def test_version_change_lifts_a_loop_ban(srv):
    for _ in range(7):
        device_request(srv.port, check("2001.001.000"))
    assert srv.store.devices.get(MAC).ban_code == 40
    # the device managed to move (e.g. a manual flash to another version): ban lifted, counting restarts
    assert device_request(srv.port, check("2001.001.001")).status == 200
    assert srv.store.devices.get(MAC).ban_code == 0


def test_loop_guard_counts_per_device(srv):
    for _ in range(6):
        device_request(srv.port, check("2001.001.000"))
    assert device_request(srv.port, check("2001.001.000", "C8C2C68CD603")).status == 200


def test_loop_guard_configurable(tmp_path):
    with running_server(tmp_path / "d", loop_max_serves=2, loop_window_s=3600) as s:
        p = s.store.products.add(KEY, FW)
        s.store.releases.add(script_package(FW, "001.000.002", "--2"), product_id=p.id, version="001.000.002")
        assert [device_request(s.port, check("2001.001.000")).status for _ in range(3)] == [200, 200, 403]


def test_loop_guard_window_slides(tmp_path):
    import time

    from luatos_fota import schema

    with running_server(tmp_path / "d", loop_max_serves=2, loop_window_s=3600) as s:
        p = s.store.products.add(KEY, FW)
        rel = s.store.releases.add(script_package(FW, "001.000.002", "--2"), product_id=p.id, version="001.000.002")
        assert device_request(s.port, check("2001.001.000"), method=b"HEAD").status == 200  # known, not served
        dev = s.store.devices.get(MAC)
        now = time.time()
        with s.store.db.tx() as c:  # history: one serve 2 h ago (outside the window), one 30 min ago (inside)
            c.execute(schema.devices.update().where(schema.devices.c.id == dev.id)
                      .values(version_changed_at=now - 5 * 3600))
            for i, age in enumerate((7200, 1800)):
                c.execute(schema.serves.insert().values(fota_sn=f"old{i}", device_id=dev.id, release_id=rel.id,
                                                        channel="v1", from_version="2001.001.000",
                                                        served_at=now - age))
            s.store.db.bump(c, devices_only=True)
        assert device_request(s.port, check("2001.001.000")).status == 200  # 1 in the window: still allowed
        r = device_request(s.port, check("2001.001.000"))  # 2 in the window now
        assert r.status == 403 and r.json()["code"] == 40


def _selected(tmp: Path, percent: float, n: int) -> set[str]:
    st = Store(tmp)
    p = st.products.add(KEY, FW)
    st.releases.add(script_package(FW, "001.000.002", "--2"), product_id=p.id, version="001.000.002",
                   percent=percent)
    svc = FotaService(st, ServerConfig(new_device_ip_rate=0))  # 2000 new devices from one address
    chosen = set()
    for i in range(n):
        mac = f"{0xC8C2C6000000 + i:012X}"
        out = svc.decide(Query("v1", "mac", mac, KEY, FW, "2001.001.000", "10.0.0.1"), count_serve=False)
        if out.serve:
            chosen.add(mac)
    svc.close()
    st.close()
    return chosen


def test_staged_rollout_ten_percent_is_deterministic(tmp_path):
    a = _selected(tmp_path / "a", 10, 2000)
    assert 150 <= len(a) <= 250  # 10 % of 2000 = 200; binomial sd ~13
    b = _selected(tmp_path / "b", 10, 2000)
    assert a == b  # same ids, same release id -> same devices, run after run
    wider = _selected(tmp_path / "c", 30, 2000)
    assert a <= wider  # raising the percentage only adds devices


def test_buckets_differ_between_releases():
    ids = [f"{0xC8C2C6000000 + i:012X}" for i in range(2000)]
    first = {d for d in ids if rollout_bucket(d, 1) < 1000}
    second = {d for d in ids if rollout_bucket(d, 2) < 1000}
    assert first != second and len(first & second) < 100


def test_percent_via_http_and_stats(srv):
    srv.store.releases.set_target(1, "percent", percent=50)
    srv.app.fota.invalidate()
    statuses = [device_request(srv.port, check("2001.001.000", f"{0xC8C2C6000000 + i:012X}")).status
                for i in range(40)]
    assert set(statuses) == {200, 304}
    st = srv.store.releases.stats(1)[0]
    assert st.targeted == statuses.count(200) == st.served
