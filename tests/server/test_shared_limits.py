"""The new-device rates hold across instances that share one database (SQLite file or PostgreSQL).

Two instances answer random new device ids at the same time; together they may create no more
devices than the product's burst, which per-process buckets alone would let through twice.
The product rate is set so slow (one token per ~17 minutes) that nothing refills during a test.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from luatos_fota.config import ServerConfig
from luatos_fota.maintenance import Maintenance
from luatos_fota.store import RateLimited, SharedRate, Store
from luatos_fota.testing import RawResponse, RunningServer, device_request, running_server

KEY = "shared_limit_key"
FW = "SHARED_LuatOS-SoC_Air8101"
BURST = 12
PER_INSTANCE = 20  # each instance alone would allow BURST of these


def check_in(port: int, mac: str) -> RawResponse:
    return device_request(port, f"/api/site/firmware_upgrade?mac={mac}&project_key={KEY}"
                                f"&firmware_name={FW}&version=2001.001.000")


def flood_both(ports: list[int]) -> list[int]:
    """New ids through every instance at once; the HTTP status of each answer."""
    statuses: list[int] = []
    lock = threading.Lock()

    def run(n: int, port: int) -> None:
        for i in range(PER_INSTANCE):
            got = check_in(port, f"C8C2C6{n:02X}{i:04X}")
            with lock:
                statuses.append(got.status)

    threads = [threading.Thread(target=run, args=(n, p)) for n, p in enumerate(ports)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads), "check-ins did not finish in 60 s"
    return statuses


@contextlib.contextmanager
def two_instances(tmp_path: Path, db_url: str | None) -> Iterator[list[RunningServer]]:
    opts: dict[str, Any] = {"new_device_product_rate": 0.001, "new_device_product_burst": BURST}
    if db_url:
        opts["db_url"] = db_url
        dirs = [tmp_path / "a", tmp_path / "b"]
    else:
        dirs = [tmp_path / "shared", tmp_path / "shared"]  # one SQLite file, as two processes would
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(running_server(d, **opts)) for d in dirs]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_new_devices_through_two_instances_never_exceed_the_product_burst(
        tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    db_url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    with two_instances(tmp_path, db_url) as (a, b):
        a.store.products.add(KEY, FW)
        for s in (a, b):
            s.app.fota.invalidate()
        statuses = flood_both([a.port, b.port])
        assert sorted(set(statuses)) == [304, 503], statuses
        assert statuses.count(304) == BURST  # exactly the burst, not BURST per instance
        assert len(a.store.devices.all()) == BURST
        tokens = a.store.rates.get(f"product:{a.store.products.find(KEY, FW).id}")
        assert tokens is not None and tokens[0] < 1.0
        # A device that exists is never refused by the new-device rate.
        known = a.store.devices.all()[0].device_key
        assert check_in(b.port, known).status == 304


def test_refused_new_device_answer_is_a_retry(tmp_path: Path) -> None:
    with two_instances(tmp_path, None) as (a, b):
        a.store.products.add(KEY, FW)
        for i in range(BURST):
            assert check_in((a, b)[i % 2].port, f"C8C2C6AA{i:04X}").status == 304
        got = check_in(b.port, "C8C2C6AAFFFF")
        assert got.status == 503 and got.json()["code"] == 43


def test_shared_bucket_refills_at_its_rate_and_rolls_back_with_the_insert(tmp_path: Path) -> None:
    st = Store(tmp_path)
    try:
        p = st.products.add(KEY, FW)
        lim = [SharedRate("product:x", 10.0, 3)]
        for i in range(3):
            st.devices.create(f"D{i}", "mac", p.id, "", "", limits=lim)
        with pytest.raises(RateLimited) as e:
            st.devices.create("D9", "mac", p.id, "", "", limits=lim)
        assert 0 < e.value.wait_s <= 0.1
        assert st.devices.get("D9") is None  # refused: no row
        time.sleep(0.15)  # 10 tokens/s: one is back
        st.devices.create("D9", "mac", p.id, "", "", limits=lim)
        # An id that exists already costs no token (the transaction rolls back).
        before = st.rates.get("product:x")
        assert before is not None
        st.devices.create("D9", "mac", p.id, "", "", limits=lim)
        after = st.rates.get("product:x")
        assert after == before
        # Refilled buckets are dropped by the retention step; fresh ones are kept.
        m = Maintenance(st, ServerConfig(new_device_ip_rate=0, new_device_product_rate=10.0,
                                         new_device_product_burst=3))
        assert m.rate_bucket_idle_s() == pytest.approx(60.3)
        assert st.rates.prune(3600) == 0 and st.rates.get("product:x") is not None
        assert st.rates.prune(-1) == 1 and st.rates.get("product:x") is None
    finally:
        st.close()


def test_per_ip_new_device_rate_is_shared_too(tmp_path: Path) -> None:
    """Two services (as two instances) on one SQLite file: one address gets its burst in total."""
    from luatos_fota.service import FotaService, Query

    conf = ServerConfig(new_device_ip_rate=0.001, new_device_ip_burst=5, new_device_product_rate=0)
    st = [Store(tmp_path), Store(tmp_path)]
    svcs = [FotaService(s, conf) for s in st]
    try:
        st[0].products.add(KEY, FW)

        def new(n: int, ip: str) -> int:
            q = Query("v1", "mac", f"C8C2C6BB{n:04X}", KEY, FW, "2001.001.000", ip)
            return svcs[n % 2].decide(q, count_serve=False).code

        codes = [new(n, "10.0.0.1") for n in range(10)]
        assert codes.count(43) == 5 and len(st[0].devices.all()) == 5
        assert new(100, "10.0.0.2") != 43  # another address has its own bucket
    finally:
        for s in svcs:
            s.close()
        for x in st:
            x.close()
