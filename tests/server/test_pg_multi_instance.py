"""The server on a real PostgreSQL, alone and as two instances sharing one database.

Two instances share the database and either the data directory (blobs on disk, e.g. a shared
volume) or, with separate data directories, an S3-compatible bucket (a real loopback server,
see s3_fixture.py): every multi-instance test runs in both layouts. Each instance keeps its own in-memory catalogue, refreshed through the DB generation counter,
so a change made through one is seen by the other within ``cache_ttl_s``. Cross-instance checks
poll with a bounded loop instead of sleeping a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from luatos_fota.testing import (
    RawResponse,
    RunningServer,
    device_request,
    running_server,
    script_package,
)

pytestmark = pytest.mark.postgres

KEY = "pg_project_key"
FW = "PGDEMO_LuatOS-SoC_Air8101"
MAC = "C8C2C68CD602"
TOKEN = "pg-test-token"
CONVERGE_S = 15.0  # generous bound for a change to reach the other instance (cache_ttl_s is 1 s)


def check_in(srv: RunningServer, version: str, mac: str = MAC) -> RawResponse:
    return device_request(
        srv.port,
        f"/api/site/firmware_upgrade?mac={mac}&project_key={KEY}&firmware_name={FW}&version={version}",
    )


def package(tag: str) -> bytes:
    return script_package(FW, tag)


def admin(srv: RunningServer, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{srv.base_url}/admin/api{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def upload(srv: RunningServer, product_id: int, version: str, data: bytes) -> Any:
    boundary = "----pgtestboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="product_id"\r\n\r\n{product_id}\r\n',
        f'--{boundary}\r\nContent-Disposition: form-data; name="version"\r\n\r\n{version}\r\n',
        f'--{boundary}\r\nContent-Disposition: form-data; name="skip_preflight"\r\n\r\ntrue\r\n',
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="pkg.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n",
    ]
    body = "".join(parts).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        f"{srv.base_url}/admin/api/releases",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201
        return json.loads(resp.read())


def eventually(probe: Callable[[], Any], accept: Callable[[Any], bool], what: str) -> Any:
    """Poll probe() until accept(result); bounded by CONVERGE_S."""
    deadline = time.monotonic() + CONVERGE_S
    while True:
        result = probe()
        if accept(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {result!r} after {CONVERGE_S:g} s")
        time.sleep(0.05)


@pytest.fixture
def one(tmp_path: Path, pg_url: str) -> Iterator[RunningServer]:
    with running_server(tmp_path / "data", db_url=pg_url, admin_token=TOKEN) as srv:
        yield srv


Layout = Callable[[str], tuple[Path, dict[str, Any]]]


@pytest.fixture(params=["shared-dir", "object-store"])
def layout(request: pytest.FixtureRequest, tmp_path: Path) -> Layout:
    """Instance name -> (its data directory, extra create_app options)."""
    if request.param == "shared-dir":
        return lambda name: (tmp_path / "data", {})
    url = request.getfixturevalue("s3_url")
    return lambda name: (tmp_path / name, {"blob_url": url})


@pytest.fixture
def pair(layout: Layout, pg_url: str) -> Iterator[tuple[RunningServer, RunningServer]]:
    # Polling check-ins are serves: keep the loop guard out of the way of these tests.
    opts = {"db_url": pg_url, "admin_token": TOKEN, "loop_max_serves": 10_000}
    with contextlib.ExitStack() as stack:
        a_dir, a_opts = layout("a")
        b_dir, b_opts = layout("b")
        a = stack.enter_context(running_server(a_dir, **opts, **a_opts))
        b = stack.enter_context(running_server(b_dir, **opts, **b_opts))
        yield a, b


def test_store_really_is_postgres(one: RunningServer, pg_url: str) -> None:
    import sqlalchemy as sa

    one.store.products.add(KEY, FW)
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT project_key, firmware_name FROM products")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [(KEY, FW)]
    assert not list((one.data_dir).glob("*.db")), "a SQLite file was created despite db_url"


def test_check_in_and_upgrade_download_on_postgres(one: RunningServer) -> None:
    product = one.store.products.add(KEY, FW)
    assert check_in(one, "2001.001.000").status == 304  # no release yet
    data = package("001.000.002")
    rel = upload(one, product.id, "001.000.002", data)
    assert check_in(one, "2001.001.002").status == 304  # already at the release
    served = check_in(one, "2001.001.000")
    assert served.status == 200 and served.body == data
    assert served.header("X-Fota-Version") == "2001.001.002"
    assert served.header("Content-Length") == str(len(data))
    # The download URL, resumed with a Range request.
    part = device_request(one.port, rel["download_path"],
                          extra_headers=f"Authorization: Bearer {TOKEN}\r\nRange: bytes=1000-\r\n".encode())
    assert part.status == 206 and part.body == data[1000:]
    one.flush()
    device = one.store.devices.get(MAC)
    assert device.reported_version == "2001.001.000" and device.check_ins >= 3
    events = [a.event for a in one.store.audit.query(device_key=MAC)]
    assert "serve" in events and "checkin" in events


def test_loop_ban_on_postgres(tmp_path: Path, pg_url: str) -> None:
    with running_server(
        tmp_path / "data", db_url=pg_url, admin_token=TOKEN, loop_max_serves=3
    ) as srv:
        product = srv.store.products.add(KEY, FW)
        upload(srv, product.id, "001.000.002", package("001.000.002"))
        statuses = [check_in(srv, "2001.001.000").status for _ in range(4)]
        assert statuses == [200, 200, 200, 403]
        refused = check_in(srv, "2001.001.000")
        assert refused.status == 403 and refused.json()["code"] == 40
        assert srv.store.devices.get(MAC).ban_code == 40
        admin(srv, "POST", f"/devices/{MAC}/unban")
        assert check_in(srv, "2001.001.000").status == 200


def test_two_instances_ban_on_a_holds_on_b(pair: tuple[RunningServer, RunningServer]) -> None:
    a, b = pair
    product = a.store.products.add(KEY, FW)
    upload(a, product.id, "001.000.002", package("001.000.002"))
    assert eventually(lambda: check_in(b, "2001.001.000").status, lambda s: s == 200, "B serving")
    admin(a, "POST", f"/devices/{MAC}/ban", {"reason": "returned for repair"})
    refused = eventually(
        lambda: check_in(b, "2001.001.000"), lambda r: r.status != 200, "ban reaching B"
    )
    assert refused.status == 403 and refused.json()["code"] == 21
    assert admin(b, "GET", f"/devices/{MAC}")["ban_code"] == 21
    admin(b, "POST", f"/devices/{MAC}/unban")
    eventually(lambda: check_in(a, "2001.001.000").status, lambda s: s == 200, "unban reaching A")


def test_two_instances_release_added_on_a_is_served_by_b(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    product = admin(a, "POST", "/products", {"project_key": KEY, "firmware_name": FW})
    assert check_in(b, "2001.001.000").status == 304  # B has loaded its catalogue: nothing to serve
    data = package("001.000.003")
    rel = upload(a, product["id"], "001.000.003", data)
    served = eventually(
        lambda: check_in(b, "2001.001.000"), lambda r: r.status == 200, "release on B"
    )
    assert served.body == data and served.header("X-Fota-Release") == str(rel["id"])
    # Pausing on B stops A from serving it.
    admin(b, "POST", f"/releases/{rel['id']}/pause")
    eventually(
        lambda: check_in(a, "2001.001.000", mac="C8C2C68C0001").status,
        lambda s: s == 304,
        "pause on A",
    )
    assert [r["id"] for r in admin(b, "GET", "/releases")["releases"]] == [rel["id"]]


def test_two_instances_count_serves_together_for_the_loop_ban(layout: Layout, pg_url: str) -> None:
    opts = {"db_url": pg_url, "admin_token": TOKEN, "loop_max_serves": 4}
    (a_dir, a_opts), (b_dir, b_opts) = layout("a"), layout("b")
    with (
        running_server(a_dir, **opts, **a_opts) as a,
        running_server(b_dir, **opts, **b_opts) as b,
    ):
        product = a.store.products.add(KEY, FW)
        upload(a, product.id, "001.000.002", package("001.000.002"))
        eventually(lambda: b.app.fota.catalog().releases, bool, "release in B's catalogue")
        statuses = [check_in(srv, "2001.001.000").status for srv in (a, b, a, b, a)]
        assert statuses == [200, 200, 200, 200, 403]
        assert eventually(
            lambda: check_in(b, "2001.001.000").json()["code"], lambda c: c == 40, "loop ban on B"
        )
