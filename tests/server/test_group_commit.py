"""Group commit of loop-guard serves: concurrent callers share transactions, and the count
stays exact, within one store, across two stores on one SQLite file, and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from luatos_fota.groupcommit import BatchBusy, GroupCommit
from luatos_fota.store import Store, StoreBusy
from luatos_fota.testing import script_package

LIMIT = 6


def test_concurrent_callers_share_batches_and_get_their_own_results() -> None:
    batches: list[list[int]] = []
    first = threading.Event()

    def run(items: list[int]) -> list[int]:
        if not batches:
            first.wait(5)  # hold the first batch so the others queue up behind it
        batches.append(items)
        return [i * 10 for i in items]

    gc: GroupCommit[int, int] = GroupCommit(run)
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(gc.submit, i, 10.0) for i in range(16)]
        deadline = time.monotonic() + 5
        while len(gc._queue) < 15 and time.monotonic() < deadline:
            time.sleep(0.005)
        first.set()
        results = [f.result(timeout=10) for f in futures]
    assert results == [i * 10 for i in range(16)]
    assert sorted(i for b in batches for i in b) == list(range(16))  # each item run exactly once
    assert len(batches) < 16 and max(len(b) for b in batches) >= 2
    assert (gc.batches, gc.items) == (len(batches), 16)


def test_a_caller_that_times_out_is_withdrawn_and_never_written() -> None:
    release = threading.Event()
    seen: list[str] = []

    def run(items: list[str]) -> list[str]:
        seen.extend(items)
        if "slow" in items:
            release.wait(5)
        return items

    gc: GroupCommit[str, str] = GroupCommit(run)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(gc.submit, "slow", 5.0)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.005)
        with pytest.raises(BatchBusy, match="no write turn within 0.1 s"):
            gc.submit("late", 0.1)
        release.set()
        assert slow.result(timeout=5) == "slow"
    assert gc.submit("after", 1.0) == "after"
    assert seen == ["slow", "after"]  # "late" never reached the database


def test_a_failed_batch_fails_its_callers_and_the_next_one_works() -> None:
    calls = 0

    def run(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk I/O error")
        return items

    gc: GroupCommit[int, int] = GroupCommit(run)
    with pytest.raises(OSError, match="disk I/O error"):
        gc.submit(1, 1.0)
    assert gc.submit(2, 1.0) == 2


def _fixture(st: Store) -> tuple[int, int]:
    p = st.products.add("gc_key", "GC_LuatOS-SoC_Air8101")
    rel = st.releases.add(script_package("GC_LuatOS-SoC_Air8101", "001.000.002", "--gc"), product_id=p.id, version="001.000.002")
    dev = st.devices.register("C8C2C68C0A01", p.id)
    return int(dev.id), int(rel.id)


def _hammer(stores: list[Store], device_id: int, release_id: int, calls: int) -> list[tuple[int, str | None]]:
    """`calls` concurrent full-serve attempts of one device, spread over `stores`."""
    start = threading.Barrier(calls)

    def one(i: int) -> tuple[int, str | None]:
        start.wait(10)
        return stores[i % len(stores)].serves.count_and_record(device_id, release_id, 0.0, LIMIT, "http", "x", "full")

    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(one, range(calls)))


def _assert_exact(results: list[tuple[int, str | None]], st: Store, device_id: int, release_id: int) -> None:
    recorded = [n for n, sn in results if sn is not None]
    assert sorted(recorded) == list(range(LIMIT))  # each count 0..5 given to exactly one serve
    assert all(n >= LIMIT for n, sn in results if sn is None)
    assert st.serves.count(device_id, release_id, 0.0) == LIMIT
    assert len({sn for _, sn in results if sn}) == LIMIT


def test_concurrent_serves_of_one_device_are_counted_exactly(tmp_path: Path) -> None:
    st = Store(tmp_path)
    device_id, release_id = _fixture(st)
    _assert_exact(_hammer([st], device_id, release_id, 24), st, device_id, release_id)
    st.close()


def test_serves_queued_behind_a_busy_database_share_one_transaction(tmp_path: Path) -> None:
    st = Store(tmp_path, hot_busy_timeout_s=10.0)
    device_id, release_id = _fixture(st)
    assert st.db.write_turn is not None
    with ThreadPoolExecutor(12) as pool:
        with st.db.write_turn:  # another write holds the database while the serves arrive
            futures = [pool.submit(st.serves.count_and_record, device_id, release_id, 0.0, 100, "http", "x", "full")
                       for _ in range(12)]
            deadline = time.monotonic() + 10
            while len(st.serves.batches._queue) < 11 and time.monotonic() < deadline:
                time.sleep(0.01)  # one leader waits for the database, eleven queue behind it
        counts = sorted(f.result(timeout=10)[0] for f in futures)
    assert counts == list(range(12))
    assert st.serves.batches.batches == 2  # the leader's own, then the eleven together
    st.close()


def test_two_stores_on_one_sqlite_file_count_exactly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = Store(tmp_path / "a", url), Store(tmp_path / "b", url)
    device_id, release_id = _fixture(a)
    _assert_exact(_hammer([a, b], device_id, release_id, 24), a, device_id, release_id)
    a.close()
    b.close()


@pytest.mark.postgres
def test_two_stores_on_postgres_count_exactly(tmp_path: Path, pg_url: str) -> None:
    a, b = Store(tmp_path / "a", pg_url), Store(tmp_path / "b", pg_url)
    device_id, release_id = _fixture(a)
    _assert_exact(_hammer([a, b], device_id, release_id, 24), a, device_id, release_id)
    a.close()
    b.close()


def test_write_turn_timeout_is_a_clear_busy_error(tmp_path: Path) -> None:
    st = Store(tmp_path, hot_busy_timeout_s=0.1)
    device_id, release_id = _fixture(st)
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with st.db.tx():
            held.set()
            done.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(5)
        with pytest.raises(StoreBusy, match="database busy"):
            st.serves.count_and_record(device_id, release_id, 0.0, LIMIT, "http", "x", "full")
    finally:
        done.set()
        t.join(5)
    assert st.serves.count(device_id, release_id, 0.0) == 0
    assert st.serves.count_and_record(device_id, release_id, 0.0, LIMIT, "http", "x", "full")[0] == 0
    st.close()


def test_each_caller_of_a_failed_batch_gets_its_own_error_object() -> None:
    """Review finding R1: one shared exception raised in many threads grows one traceback."""
    gate = threading.Event()
    calls = 0

    def run(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            gate.wait(5)  # the others queue behind this batch, then all fail together
            return items
        raise OSError("disk I/O error")

    gc: GroupCommit[int, int] = GroupCommit(run)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            gc.submit(i, 10.0)
        except OSError as e:
            errors.append(e)

    with ThreadPoolExecutor(9) as pool:
        futures = [pool.submit(one, i) for i in range(9)]
        deadline = time.monotonic() + 5
        while len(gc._queue) < 8 and time.monotonic() < deadline:
            time.sleep(0.005)
        gate.set()
        for f in futures:
            f.result(timeout=10)
    assert len(errors) == 8 and len({id(e) for e in errors}) == 8
    assert all(str(e) == "disk I/O error" and isinstance(e.__cause__, OSError) for e in errors)
