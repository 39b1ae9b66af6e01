"""Scenario 2 (tcp) end to end: the device's command channel against the server's push hub,
and against a hand-driven peer for input the hub would never send."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from luatos_fota.push import PushHub
from luatos_fota.testing import RunningServer, running_server
from luatos_testing.dut import SimDut

from .conftest import (
    E2E_AUTH_SECRET,
    NEW,
    OLD,
    PRODUCT_KEY,
    Fota,
    booted,
    firmware_name,
    package,
    project,
    result_codes,
    vm_exits,
)

WALL_WAIT_S = 10.0  # bound on waiting for a real socket on loopback


def wait_for(pred: Callable[[], Any], what: str) -> Any:
    """Wait (bounded, wall time) for something a host thread delivers."""
    deadline = time.monotonic() + WALL_WAIT_S
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[tuple[Fota, PushHub]]:
    """The real server with its push hub, wired as ``luatos-fota serve --push-port`` does."""
    hub = PushHub()
    with running_server(tmp_path / "server", push_hub=hub,
                        extra={"push_port": 0, "push_host": "127.0.0.1"}) as srv:
        assert hub.address is not None, "the app's lifespan did not start the push hub"
        product = srv.store.products.add(PRODUCT_KEY, firmware_name(), name="e2e tcp")
        product = srv.store.products.set_auth(product.id, "hmac", secret=E2E_AUTH_SECRET)
        yield Fota(srv, product), hub


def admin_push(srv: RunningServer, body: dict[str, Any]) -> dict[str, Any]:
    r = requests.post(f"{srv.base_url}/admin/api/push", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {srv.admin_token}"})
    assert r.status_code == 200, r.text
    return r.json()


def answers(hub: PushHub, device: str) -> list[dict[str, Any]]:
    return [a["message"] for a in hub.answers(device)]


def test_push_upgrade_over_the_hub(hub_server, make_device) -> None:
    fota, hub = hub_server
    rel = fota.release(package(NEW, "tcp"))
    dev = make_device(project(OLD, "tcp"), fota.srv, tcp=f"127.0.0.1:{hub.port}")
    mac = dev.profile.mac
    log = SimDut(dev)
    log.expect(r"^I/user\.tcp login sent ", "1m")
    online = wait_for(lambda: hub.online(), "the device's login at the hub")
    assert [o["device"] for o in online] == [mac]
    assert online[0]["project_key"] == PRODUCT_KEY and online[0]["core"] == "V2001"
    log.expect(r"^I/user\.tcp_cmd server reply, not answered", "1m")  # {"login":"ok"}

    out = admin_push(fota.srv, {"release_id": rel.id, "devices": [mac]})
    assert out["results"] == {mac: "sent"}
    url = out["message"]["url"]
    # The release's package, with the fota_sn of the serve the server counted for this push.
    assert url.startswith(f"###{fota.srv.base_url}/dl/{rel.sha256}.bin?fota_sn=")

    log.expect(r"^I/user\.tcp_cmd fota started ###http://", "1m")
    log.expect(r"^I/user\.fota_result 0 ", "5m")
    log.expect(booted(NEW), "1m")
    log.expect(r"^I/user\.tcp login sent ", "1m")
    wait_for(lambda: any(o["version"] == NEW for o in hub.online()), "the login of 001.000.001")

    reports = wait_for(lambda: [a for a in answers(hub, mac) if "fota_result" in a],
                       "the result report at the hub")
    acks = [a for a in answers(hub, mac) if a.get("ack") == "fota"]
    assert acks == [{"ack": "fota", "status": "started", "url": url}]
    assert len(reports) == 1
    assert reports[0]["fota_result"] == 0 and reports[0]["trigger"] == "tcp"
    assert reports[0]["version"] == OLD
    assert [b.reason for b in dev.boots] == ["power-on", "reboot"]
    assert len([e for e in dev.trace if e.kind == "fota_staged"]) == 1
    assert vm_exits(dev) == []
    rows = fota.audit(mac)
    events = {r.event for r in rows}
    assert {"push_login", "push_push", "push_answer"} <= events, events


def test_duplicate_command_while_downloading_is_answered_busy(hub_server, make_device) -> None:
    fota, hub = hub_server
    rel = fota.release(package(NEW, "tcp"))
    dev = make_device(project(OLD, "tcp"), fota.srv, tcp=f"127.0.0.1:{hub.port}")
    dev.net.bandwidth("5kB/s")  # the download lasts ~10 s of device time
    mac = dev.profile.mac
    log = SimDut(dev)
    log.expect(r"^I/user\.tcp login sent ", "1m")
    wait_for(lambda: hub.online(), "the login")
    body = {"release_id": rel.id, "devices": [mac]}
    assert admin_push(fota.srv, body)["results"] == {mac: "sent"}
    log.expect(r"^I/user\.tcp_cmd fota started ", "1m")
    dev.run_for("2s")
    assert dev.fota.in_progress
    assert admin_push(fota.srv, body)["results"] == {mac: "sent"}  # the same command again
    # The push crosses real TCP in wall time: step the device in short slices (2 s of device
    # time per wall second at most) so a loaded machine cannot let the download end first.
    deadline = time.monotonic() + 5
    while not any("tcp_cmd fota busy" in ln for ln in dev.lines()) and time.monotonic() < deadline:
        dev.run_for("20ms")
        time.sleep(0.01)
    log.expect(r"^W/user\.tcp_cmd fota busy", "1s")
    log.expect(r"^I/user\.fota_result 0 ", "5m")
    log.expect(booted(NEW), "1m")
    log.expect(r"^I/user\.tcp login sent ", "1m")
    wait_for(lambda: any("fota_result" in a for a in answers(hub, mac)), "the result report")
    acks = [a for a in answers(hub, mac) if a.get("ack") == "fota"]
    assert [a["status"] for a in acks] == ["started", "busy"]
    assert acks[1]["reason"] == "an upgrade is already running"
    assert len([e for e in dev.trace if e.kind == "fota_begin"]) == 1  # one download only
    assert result_codes(dev, 1) == [0]


def test_release_push_skips_a_device_already_on_it(hub_server, make_device) -> None:
    """A device that logged in at 001.000.001 is up to date for release 001.000.001: the
    server's release push must skip it, as a check-in would answer 304."""
    fota, hub = hub_server
    rel = fota.release(package(NEW, "tcp"))
    dev = make_device(project(NEW, "tcp"), fota.srv, tcp=f"127.0.0.1:{hub.port}")
    mac = dev.profile.mac
    log = SimDut(dev)
    log.expect(r"^I/user\.tcp login sent ", "1m")
    wait_for(lambda: hub.online(), "the login")
    out = admin_push(fota.srv, {"release_id": rel.id, "devices": [mac]})
    assert out["results"] == {} and mac in out["skipped"], out
    assert "2001.001.001" in out["skipped"][mac]  # VERSION + core read as libfota2 reports them
    dev.run_for("1m")
    assert not [e for e in dev.trace if e.kind == "fota_begin"]


# -- a hand-driven peer: what a buggy or hostile server might send ---------------------------


class Peer:
    """A one-connection TCP server on loopback: the test writes raw bytes, reads JSON lines."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.conns: list[socket.socket] = []
        self.lines: list[bytes] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            # Without NODELAY, Nagle holds a small write back until the device's delayed ACK
            # (~40 ms wall); the emulator, seeing nothing in its kernel buffer, lets virtual time
            # run on and the device would see the command late.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                with self.lock:
                    self.lines.append(line)

    def messages(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(x) for x in self.lines]

    def send(self, data: bytes) -> None:
        with self.lock:
            conn = self.conns[-1]
        conn.sendall(data)

    def close(self) -> None:
        self.listener.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.close()


MALFORMED: list[tuple[bytes, dict[str, Any] | None]] = [
    (b"hello world\n", {"ack": "error", "reason": "invalid JSON"}),
    (b"42\n", {"ack": "error", "reason": "expected a JSON object"}),
    (b"null\n", {"ack": "error", "reason": "expected a JSON object"}),
    (b"[1,2,3]\n", {"ack": "error", "reason": "expected a JSON object"}),
    (b'"fota"\n', {"ack": "error", "reason": "expected a JSON object"}),
    (b'{"fota":"yes"}\n', {"ack": "fota", "status": "error", "reason": 'fota must be "true"'}),
    (b'{"fota":false}\n', {"ack": "fota", "status": "error", "reason": 'fota must be "true"'}),
    (b'{"fota":"true","url":42}\n', {"ack": "fota", "status": "error", "reason":
        "url must be a string starting with http:// or https:// (optionally ###)"}),
    (b'{"fota":"true","url":"ftp://host/p.bin"}\n', {"ack": "fota", "status": "error", "reason":
        "url must be a string starting with http:// or https:// (optionally ###)"}),
    (b'{"reboot":true}\n', {"ack": "error", "reason": "unknown command"}),
    (b'{"ack":"fota","status":"started"}\n', None),  # looks like our own reply: not answered
    (b"x" * 5000 + b"\n", {"ack": "error", "reason": "line longer than 4096 bytes"}),
    (b'{"fota":"tr\xff\xfe"}\n', {"ack": "fota", "status": "error",
                                  "reason": 'fota must be "true"'}),
]


def test_malformed_commands_are_answered_and_never_fatal(fota: Fota, make_device, peer, raw_http
                                                         ) -> None:
    pkg_server = raw_http(200, package(NEW, "tcp"))
    dev = make_device(project(OLD, "tcp"), fota.srv, tcp=f"127.0.0.1:{peer.port}")
    log = SimDut(dev)
    log.expect(r"^I/user\.tcp login sent ", "1m")
    login = wait_for(lambda: peer.messages(), "the login line")[0]
    assert login["login"]["device"] == dev.profile.mac
    assert login["login"]["version"] == OLD and login["login"]["project"] == "FOTA_KIT_DEMO"

    # Every bad message, one at a time: each gets its answer (or, for a reply, none).
    answered = 1  # the login line
    for data, ack in MALFORMED:
        peer.send(data)
        if ack is None:
            log.expect(r"^I/user\.tcp_cmd server reply, not answered", "5s")
            dev.run_for("2s")
            assert len(peer.messages()) == answered
            continue
        log.expect(r"^I/user\.tcp tx \{", "5s")
        answered += 1
        got = wait_for(lambda n=answered: len(peer.messages()) >= n and peer.messages(),
                       f"the answer to {data[:40]!r}")
        assert got[answered - 1] == ack, data[:40]
    assert len(peer.messages()) == answered
    assert dev.boots[-1].number == 1 and dev.running and vm_exits(dev) == []
    assert [b.outcome for b in dev.boots] == ["running"]

    # fota as a JSON boolean and no url: a check of config.server_url (up to date: 4).
    peer.send(b'{"fota":true}\n')
    log.expect(r"^I/user\.tcp_cmd fota started http://192\.168\.1\.10:8000/", "10s")
    log.expect(r"^W/user\.fota_result 4 ", "1m")
    dev.run_for("5s")
    report = wait_for(lambda: [m for m in peer.messages() if "fota_result" in m], "result 4")
    assert report[0]["fota_result"] == 4 and report[0]["trigger"] == "tcp"

    # A command object with no newline at all still works: the upgrade runs.
    url = f"###http://{pkg_server.address}/pkg.bin"
    peer.send(json.dumps({"fota": "true", "url": url}).encode())
    log.expect(r"^I/user\.tcp_cmd fota started ###http://", "10s")
    log.expect(r"^I/user\.fota_result 0 ", "1m")
    log.expect(booted(NEW), "1m")
    assert pkg_server.requests == ["/pkg.bin"]
    reports = wait_for(lambda: [m for m in peer.messages() if m.get("fota_result") == 0],
                       "result 0 report before the reboot")
    assert reports[0]["version"] == OLD
    assert vm_exits(dev) == []
    assert [b.reason for b in dev.boots] == ["power-on", "reboot"]


def test_every_command_of_a_burst_is_answered(fota: Fota, make_device, peer) -> None:
    """device/README.md: several objects back to back are accepted and every command is
    answered. Twelve bad commands arrive in one TCP segment."""
    dev = make_device(project(OLD, "tcp"), fota.srv, tcp=f"127.0.0.1:{peer.port}")
    SimDut(dev).expect(r"^I/user\.tcp login sent ", "1m")
    wait_for(lambda: peer.messages(), "the login line")
    burst = [b'{"reboot":%d}\n' % i for i in range(12)]
    before = len(dev.lines())
    peer.send(b"".join(burst))
    dev.run_for("10s")
    after = dev.lines()[before:]
    rx = [line for line in after if line.startswith("I/user.tcp rx ")]
    tx = [line for line in after if line.startswith("I/user.tcp tx ")]
    assert len(rx) == len(burst) and len(tx) == len(burst)
    got = wait_for(lambda: len(peer.messages()) > len(burst) and peer.messages(),
                   f"{len(burst)} answers")
    assert got[1:] == [{"ack": "error", "reason": "unknown command"}] * len(burst)


def test_one_identity_on_a_cat1_model_with_wifi(hub_server, tmp_path) -> None:
    """Air8000 (Cat.1 plus Wi-Fi): libfota2 checks in with the IMEI, so device/ logs in to the
    push channel with the IMEI too (not the Wi-Fi MAC), and the server sees one device."""
    from luatos_sim import Device, DeviceOptions

    fota, hub = hub_server
    air8000 = fota.srv.store.products.add(PRODUCT_KEY, "FOTA_KIT_DEMO_LuatOS-SoC_Air8000", name="e2e 8000")
    fota.srv.store.products.set_auth(air8000.id, "hmac", secret=E2E_AUTH_SECRET)
    dev = Device(files=project(OLD, "tcp"), state_dir=tmp_path / "air8000", model="Air8000",
                 options=DeviceOptions(epoch_at_power_on=1_764_000_000))
    try:
        dev.net.map_address("192.168.1.10:8000", f"{fota.srv.host}:{fota.srv.port}")
        dev.net.map_address("192.168.1.10:9000", f"127.0.0.1:{hub.port}")
        imei, mac = dev.profile.imei, dev.profile.mac
        assert imei and mac and imei != mac
        log = SimDut(dev)
        log.expect(r"^I/user\.tcp login sent ", "2m")
        online = wait_for(lambda: hub.online(), "the Air8000's login at the hub")
        assert [o["device"] for o in online] == [imei]
        # ask it to check now: libfota2's check-in must name the same device
        out = admin_push(fota.srv, {"devices": [imei], "message": {"fota": "true"}})
        assert out["results"] == {imei: "sent"}
        log.expect(r"^[IW]/user\.fota_result 4 ", "5m")  # no release: up to date
        fota.srv.flush()
        row = fota.srv.store.devices.get(imei)
        assert row is not None and row.product_id == air8000.id
        assert fota.srv.store.devices.get(mac) is None
        assert not fota.srv.store.audit.query(event_="unauthorized", limit=5)
    finally:
        dev.close()
