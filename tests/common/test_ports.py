"""free_port: loopback ports a child process can bind without losing a race to a client socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from luatos_common import ports
from luatos_common.ports import free_port


def _ephemeral() -> tuple[int, int]:
    low, high = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
    return int(low), int(high)


def test_ports_come_from_below_the_ephemeral_range_and_never_repeat() -> None:
    low, _ = _ephemeral()
    got = [free_port() for _ in range(200)]
    assert len(set(got)) == 200
    assert all(10_000 <= p < low for p in got)


def test_a_port_somebody_listens_on_is_skipped() -> None:
    taken = []
    try:
        for _ in range(3):  # hold the next few ports this process would hand out
            p = free_port()
            s = socket.socket()
            s.bind(("127.0.0.1", p + 1))
            s.listen()
            taken.append(s)
            assert free_port() != p + 1
    finally:
        for s in taken:
            s.close()


def test_no_outgoing_connection_takes_a_handed_out_port() -> None:
    """The race CI lost: clients bound to ephemeral ports while a server process was starting."""
    low, high = _ephemeral()
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(64)
        clients = [socket.create_connection(srv.getsockname()) for _ in range(50)]
        try:
            for c in clients:
                assert low <= c.getsockname()[1] <= high  # clients draw from the ephemeral range
            port = free_port()
            assert port < low
            with socket.socket() as child:  # what the child server does next
                child.bind(("127.0.0.1", port))
        finally:
            for c in clients:
                c.close()


def test_xdist_workers_draw_from_disjoint_slices() -> None:
    code = "from luatos_common.ports import free_port; print(*[free_port() for _ in range(300)])"
    seen: list[set[int]] = []
    for worker in ("gw0", "gw1", "gw2"):
        env = {**os.environ, "PYTEST_XDIST_WORKER": worker, "PYTEST_XDIST_WORKER_COUNT": "3"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        seen.append({int(p) for p in out.stdout.split()})
    assert all(len(s) == 300 for s in seen)
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2])
    assert max(seen[0]) < min(seen[1]) and max(seen[1]) < min(seen[2])


def test_without_a_safe_range_it_still_hands_out_a_bindable_port(monkeypatch) -> None:
    monkeypatch.setattr(ports, "_ephemeral_low", lambda: 10_010)
    monkeypatch.setattr(ports, "_turns", None)
    p = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", p))
