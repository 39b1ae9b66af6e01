"""The loop guard without gaps: continuations add up, oscillating versions are banned, and a
serve whose client hung up is not counted as delivered.

Each test reproduces a gap the issue found (issue 12, "Loop-guard gaps") over real HTTP on
loopback, shaped like the device's requests.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from luatos_fota.repo_devices import version_oscillation
from luatos_fota.repo_serves import _decide_serves, _ServeItem, serves_worth
from luatos_fota.testing import RunningServer, device_request, running_server, script_package

KEY = "gapkey"
FW = "GAP_LuatOS-SoC_Air8101"
MAC = "C8C2C68C0A0B"


def check(version: str, mac: str = MAC) -> str:
    return f"/api/site/firmware_upgrade?mac={mac}&project_key={KEY}&firmware_name={FW}&version={version}"


@pytest.fixture(params=["database", "memory"])
def srv(request, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "d", serve_counts=request.param) as s:
        p = s.store.products.add(KEY, FW)
        s.store.releases.add(script_package(FW, "001.000.002", "-- " + "x" * 4000), product_id=p.id,
                            version="001.000.002")
        yield s


def test_range_from_byte_1_again_and_again_is_banned(srv: RunningServer) -> None:
    """The issue's reproduction: 20 downloads continued with ``Range: bytes=1-`` were never
    counted. Each sends size-1 bytes; six packages' worth is the limit."""
    statuses = [device_request(srv.port, check("2001.001.000"), extra_headers=b"Range: bytes=1-\r\n").status
                for _ in range(20)]
    # n packages' worth before request k is (k * (size-1)) // size = k - 1 for k >= 1: the
    # 8th request (k=7 before it: 6 worth) is refused
    assert statuses[:7] == [206] * 7
    assert statuses[7:] == [403] * 13
    dev = srv.store.devices.get(MAC)
    assert dev is not None and dev.ban_code == 40 and "served 6 times" in dev.ban_reason


def test_fresh_range_from_0_is_a_whole_serve_each_time(srv: RunningServer) -> None:
    """Mutation audit: a fresh ``Range: bytes=0-`` treated as a continuation let the device get
    the package 9 times with 1 serve counted. Each one is a download of the whole package."""
    statuses = [device_request(srv.port, check("2001.001.000"), extra_headers=b"Range: bytes=0-\r\n").status
                for _ in range(9)]
    assert statuses == [206] * 6 + [403] * 3
    srv.flush()
    serves = srv.store.audit.query(device_key=MAC, event_="serve", limit=100)
    assert len(serves) == 6 and all(s.detail["mode"] == "full" for s in serves)


def half_closed_get(port: int, target: bytes) -> int:
    """GET ``target`` and half-close at once (a client that hangs up): the body bytes it got."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nConnection: Close\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    return len(got.partition(b"\r\n\r\n")[2])


def aborted_serves(srv: RunningServer, expected: int) -> list[Any]:
    """The device's ``serve_aborted`` rows once there are ``expected`` (the server finishes a
    request after its client saw the close), or what there is after 30 s."""
    deadline = time.monotonic() + 30
    while True:
        srv.flush()
        aborted = srv.store.audit.query(device_key=MAC, event_="serve_aborted", limit=100)
        if len(aborted) >= expected or time.monotonic() > deadline:
            return aborted
        time.sleep(0.05)


def test_half_closed_client_is_not_a_delivered_serve(srv: RunningServer) -> None:
    """A client that sends its request and half-closes its socket gets 0 bytes: the serve is
    audited as not delivered (``serve_aborted``), and it does not count for the loop guard."""
    target = check("2001.001.000").encode()
    received = [half_closed_get(srv.port, target) for _ in range(5)]  # below the loop limit
    aborted = aborted_serves(srv, received.count(0))
    serves = srv.store.audit.query(device_key=MAC, event_="serve", limit=100)
    # what the audit says matches what each client got: 0 bytes is never "delivered"
    assert len(aborted) == received.count(0) >= 1
    assert all(a.detail["bytes_sent"] == 0 for a in aborted)
    assert sum(1 for s in serves if s.detail["delivered"]) == sum(1 for n in received if n > 4000)
    # hardly anything was delivered, so the device is not banned: a real download still works
    dev = srv.store.devices.get(MAC)
    assert dev is not None and dev.ban_code == 0
    r = device_request(srv.port, check("2001.001.000"))
    assert r.status == 200 and len(r.body) > 4000
    srv.flush()
    assert srv.store.audit.query(device_key=MAC, event_="serve", limit=1)[0].detail["delivered"] is True


@pytest.fixture(params=["database", "memory"])
def public_srv(request, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "d", serve_counts=request.param, private_downloads=False) as s:
        p = s.store.products.add(KEY, FW)
        s.store.releases.add(script_package(FW, "001.000.002", "-- " + "x" * 4000), product_id=p.id,
                            version="001.000.002")
        yield s


def test_half_closed_download_by_a_named_device_is_not_delivered_either(public_srv: RunningServer) -> None:
    """``/dl/<sha>.bin?mac=`` of a known device is a counted serve, sent through the same package
    answer as a check-in: a client that hangs up before any byte leaves ``serve_aborted``."""
    srv = public_srv
    assert device_request(srv.port, check("2001.002.000")).status == 304  # known, up to date
    sha = srv.store.releases.all()[0].sha256
    target = f"/dl/{sha}.bin?mac={MAC}".encode()
    received: list[int] = []
    for _ in range(20):  # bounded; on a loaded machine the server may send it all before it sees the hangup
        received.append(half_closed_get(srv.port, target))
        if len(received) >= 3 and 0 in received:
            break
    aborted = aborted_serves(srv, received.count(0))
    assert len(aborted) == received.count(0) >= 1
    assert all(a.detail["bytes_sent"] == 0 for a in aborted)
    # an anonymous download counts nothing, so nothing is aborted for it
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /dl/" + sha.encode() + b".bin HTTP/1.1\r\nConnection: Close\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    time.sleep(0.3)
    srv.flush()
    assert len(srv.store.audit.query(event_="serve_aborted", limit=100)) == len(aborted)


def test_oscillating_versions_are_banned(srv: RunningServer) -> None:
    """old -> new -> old -> new: the package installs, the device falls back, downloads again.
    Each rise restarts the serve count, so only the version path shows the loop."""
    old, new = "2001.001.000", "2001.001.002"
    assert device_request(srv.port, check(old)).status == 200  # served
    assert device_request(srv.port, check(new)).status == 304  # came up on it
    assert device_request(srv.port, check(old)).status == 200  # fell back; served again
    dev = srv.store.devices.get(MAC)
    assert dev is not None and dev.ban_code == 0  # one fall back is not yet a loop
    r = device_request(srv.port, check(new))  # up again: old -> new -> old -> new
    assert r.status == 403 and r.json()["code"] == 40
    dev = srv.store.devices.get(MAC)
    assert dev.ban_code == 40 and f"{old} -> {new} -> {old} -> {new}" in dev.ban_reason
    r = device_request(srv.port, check(old))
    assert r.status == 403 and r.json()["code"] == 40  # stays banned when it falls back again
    srv.flush()
    (ban,) = srv.store.audit.query(device_key=MAC, event_="loop_ban", limit=10)
    assert ban.detail["reason"] == "oscillation"


def test_steady_progress_is_not_oscillation(srv: RunningServer) -> None:
    for v in ("2001.001.000", "2001.001.001", "2001.001.002", "2001.001.001"):
        device_request(srv.port, check(v, mac="C8C2C68C0A0C"))
    dev = srv.store.devices.get("C8C2C68C0A0C")
    assert dev is not None and dev.ban_code == 0


# ---------------------------------------------------------------- the rules as pure functions

def test_serves_worth_adds_bytes_up() -> None:
    assert serves_worth(0, 0, 1000) == 0
    assert serves_worth(0, 999, 1000) == 0
    assert serves_worth(0, 1000, 1000) == 1
    assert serves_worth(2, 2500, 1000) == 4  # rows without bytes (older rows) count one each
    assert serves_worth(3, 5000, 0) == 3  # size unknown: rows only


def test_decide_serves_counts_what_the_batch_granted() -> None:
    loads = {(1, 1): (0, 0)}
    items = [_ServeItem(1, 1, 0.0, 2, "v1", "x", "continuation", size=100, nbytes=99) for _ in range(5)]
    out, rows = _decide_serves(items, lambda it: loads[(it.device_id, it.release_id)])
    # worth before each: 0, 0 (99), 1 (198), 2 (297) -> refused, refused
    assert [n for n, _ in out] == [0, 0, 1, 2, 2]
    assert [sn is not None for _, sn in out] == [True, True, True, False, False]
    assert [r[-1] for r in rows] == [99, 99, 99]
    head = _ServeItem(1, 1, 0.0, 2, "v1", "x", "head", size=100)
    out, rows = _decide_serves([head], lambda it: (0, 0))
    assert out == [(0, None)] and rows == []


@pytest.mark.parametrize(("path", "banned"), [
    (["1.1.0", "1.1.1"], False),
    (["1.1.0", "1.1.1", "1.1.0"], False),
    (["1.1.0", "1.1.1", "1.1.0", "1.1.1"], True),
    (["1.1.0", "1.1.1", "1.1.2", "1.1.1"], False),  # a rollback of the newest only
    (["1.1.0", "1.1.2", "1.1.1", "1.1.2"], True),
    (["1.1.2", "1.1.1", "1.1.2"], False),  # flashed back by hand, then upgraded: one rise
    (["1.1.0", "1.1.1", "1.1.2", "1.1.3"], False),
])
def test_version_oscillation(path: list[str], banned: bool) -> None:
    changes = list(zip(path, path[1:], strict=False))
    assert (version_oscillation(changes) is not None) is banned
