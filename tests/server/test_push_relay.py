"""The push channel across two server instances on one database: an operator asks instance A,
the device's socket is on instance B. Real servers, real sockets, one SQLite file (and the
same on PostgreSQL)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from luatos_fota.push import PushHub
from luatos_fota.pushrelay import OUTBOX_KEEP_S
from luatos_fota.testing import RunningServer, running_server, script_package

TOKEN = "relay-token"
KEY = "relay_key"
FW = "RELAY_LuatOS-SoC_Air8101"
MAC = "C8C2C68CD6A1"
FAST = {"poll_s": 0.05, "heartbeat_s": 0.2, "stale_s": 3.0, "wait_s": 5.0}


def api(srv: RunningServer, method: str, path: str, **kw: Any) -> requests.Response:
    kw.setdefault("headers", {})["Authorization"] = f"Bearer {TOKEN}"
    return requests.request(method, srv.base_url + "/admin/api" + path, timeout=30, **kw)


def eventually(fn: Callable[[], Any], ok: Callable[[Any], bool], what: str, within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    value = fn()
    while not ok(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {within:g} s")
        time.sleep(0.05)
        value = fn()
    return value


@contextlib.contextmanager
def pair(tmp_path: Path, db_url: str) -> Iterator[tuple[RunningServer, RunningServer]]:
    def one(name: str) -> contextlib.AbstractContextManager[RunningServer]:
        return running_server(tmp_path / name, db_url=db_url, admin_token=TOKEN, push_hub=PushHub(min_gap=0),
                              cache_ttl_s=0,
                              extra={"push_port": 0, "push_host": "127.0.0.1", "push_relay": FAST})
    with one("a") as a, one("b") as b:
        yield a, b


def login(srv: RunningServer, mac: str, version: str = "2001.001.000") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.app.state.push_hub.port), timeout=10)
    line = {"login": {"device": mac, "version": version, "core": "V2001", "project_key": KEY}}
    sock.sendall(json.dumps(line).encode() + b"\n")
    assert sock.makefile("rb").readline() == b'{"login":"ok"}\n'
    return sock


def read_line(sock: socket.socket) -> dict[str, Any]:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, "push connection closed"
        buf += chunk
    return dict(json.loads(buf))


def online(srv: RunningServer) -> dict[str, dict[str, Any]]:
    return {o["device"]: o for o in api(srv, "GET", "/push/online").json()["online"]}


def _relay_flow(tmp_path: Path, db_url: str) -> None:
    with pair(tmp_path, db_url) as (a, b):
        sock = login(b, MAC)
        try:
            seen = eventually(lambda: online(a), lambda o: MAC in o, "device on B listed by A")
            assert seen[MAC]["here"] is False
            assert seen[MAC]["instance"] == b.app.state.push_relay.instance_id
            assert seen[MAC]["project_key"] == KEY
            assert online(b)[MAC]["here"] is True

            # An operator's own command, asked of A, arrives on B's socket; A reports B's result.
            r = api(a, "POST", "/push", json={"devices": [MAC], "url": "http://10.0.0.1/p.bin"})
            assert r.status_code == 200, r.text
            assert r.json()["results"] == {MAC: "sent"}
            assert read_line(sock) == {"fota": "true", "url": "###http://10.0.0.1/p.bin"}

            # A release push from A goes through A's decision (a counted serve) and out via B.
            product = a.store.products.add(KEY, FW)
            rel = a.store.releases.add(script_package(FW, "001.000.002", "--relay"), product_id=product.id,
                                      version="001.000.002")
            r = api(a, "POST", "/push", json={"release_id": rel.id})
            assert r.json()["results"] == {MAC: "sent"}, r.text
            cmd = read_line(sock)
            assert cmd["url"].startswith(f"###{a.base_url}/dl/{rel.sha256}.bin?fota_sn=")
            a.flush()
            assert a.store.releases.stats(rel.id)[0].serves == 1

            # The device's answer on B shows on A.
            sock.sendall(b'{"fota_result":0}\n')
            eventually(lambda: online(a)[MAC]["last_answer"], lambda v: v == {"fota_result": 0},
                       "answer seen from A")
        finally:
            sock.close()
        # Gone from B: gone from A, and a push from A says offline without waiting.
        eventually(lambda: online(a), lambda o: MAC not in o, "device gone from A's list")
        t0 = time.monotonic()
        r = api(a, "POST", "/push", json={"devices": [MAC], "url": "http://10.0.0.1/p.bin"})
        assert r.json()["results"] == {MAC: "offline"}
        assert time.monotonic() - t0 < 2.0


def test_push_from_one_instance_reaches_a_device_on_another(tmp_path: Path) -> None:
    _relay_flow(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}")


@pytest.mark.postgres
def test_push_relay_on_postgres(tmp_path: Path, pg_url: str) -> None:
    _relay_flow(tmp_path, pg_url)


@contextlib.contextmanager
def device_on_b_with_b_relay_stopped(tmp_path: Path) -> Iterator[tuple[RunningServer, RunningServer, socket.socket]]:
    """A device logged in to B and seen by A; then B's relay loop stops (no polling, no
    heartbeat: a hung instance) while its session row stays."""
    with pair(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}") as (a, b):
        sock = login(b, MAC)
        try:
            eventually(lambda: online(a), lambda o: MAC in o, "device on B listed by A")
            task = b.app.state.push_relay._task
            task.get_loop().call_soon_threadsafe(task.cancel)
            eventually(task.done, bool, "B's relay loop stopped")
            yield a, b, sock
        finally:
            sock.close()


def test_a_dead_instances_devices_are_not_online(tmp_path: Path) -> None:
    with device_on_b_with_b_relay_stopped(tmp_path) as (a, _b, _sock):
        eventually(lambda: online(a), lambda o: MAC not in o, "stale instance's device dropped", within=15)
        r = api(a, "POST", "/push", json={"devices": [MAC], "url": "http://10.0.0.1/p.bin"})
        assert r.json()["results"] == {MAC: "offline"}


def test_a_push_nobody_picks_up_is_withdrawn_not_sent_late(tmp_path: Path) -> None:
    with device_on_b_with_b_relay_stopped(tmp_path) as (a, b, sock):
        relay_b = b.app.state.push_relay
        relay_b.sessions.heartbeat(relay_b.instance_id, {MAC: ("", {})}, OUTBOX_KEEP_S)  # B still looks alive for stale_s, but does not poll its outbox
        a.app.state.push_relay.stale_s = 60.0  # however slow this machine, A sees B alive
        a.app.state.push_relay.wait_s = 0.5
        r = api(a, "POST", "/push", json={"devices": [MAC], "url": "http://10.0.0.1/late.bin"})
        result = r.json()["results"][MAC]
        assert result.startswith("error:") and "did not send it within 0.5 s" in result
        assert relay_b.sessions.claim_one(relay_b.instance_id) is None  # B looking now finds nothing to send
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(4096)


def test_a_reconnect_that_replaces_the_old_socket_keeps_the_device_visible(tmp_path: Path) -> None:
    """The old connection's disconnect can be reported after the new login: it must not
    remove the new session (review finding B1)."""
    with pair(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}") as (a, b):
        socks = [login(b, MAC)]
        try:
            for _ in range(5):
                socks.append(login(b, MAC))  # replaces the previous connection of MAC
                time.sleep(0.3)  # let both events be applied
                assert MAC in online(a), "device vanished for the other instance after a reconnect"
            r = api(a, "POST", "/push", json={"devices": [MAC], "url": "http://10.0.0.1/p.bin"})
            assert r.json()["results"] == {MAC: "sent"}
            assert read_line(socks[-1]) == {"fota": "true", "url": "###http://10.0.0.1/p.bin"}
        finally:
            for sock in socks:
                sock.close()


def test_heartbeat_repairs_a_lost_session_row(tmp_path: Path) -> None:
    from luatos_fota import schema

    with pair(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}") as (a, b):
        sock = login(b, MAC)
        try:
            eventually(lambda: online(a), lambda o: MAC in o, "device on B listed by A")
            with b.store.db.tx() as c:  # as if the login's write had been lost in an outage
                c.execute(schema.push_sessions.delete())
            eventually(lambda: online(a), lambda o: MAC in o, "row put back by B's heartbeat")
        finally:
            sock.close()
        eventually(lambda: online(a), lambda o: MAC not in o, "row removed after the disconnect")


def test_a_relay_failure_still_reports_the_local_sends(tmp_path: Path) -> None:
    local_mac = "C8C2C68CD6A2"
    with pair(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}") as (a, b):
        remote_sock, local_sock = login(b, MAC), login(a, local_mac)
        try:
            eventually(lambda: online(a), lambda o: MAC in o, "device on B listed by A")

            def outage(*_: Any) -> None:
                raise OSError("database unreachable")

            a.app.state.push_relay.sessions.enqueue = outage
            r = api(a, "POST", "/push", json={"devices": [local_mac, MAC], "url": "http://10.0.0.1/p.bin"})
            assert r.status_code == 200
            results = r.json()["results"]
            assert results[local_mac] == "sent"
            assert results[MAC].startswith("error: push relay unavailable")
            assert read_line(local_sock)["url"] == "###http://10.0.0.1/p.bin"
        finally:
            remote_sock.close()
            local_sock.close()
