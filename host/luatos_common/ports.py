"""Loopback ports for servers that a test or a benchmark starts in another process.

The usual trick (bind port 0, read the port, release it, hand it to the child) draws from the
kernel's ephemeral range, which every outgoing connection on the machine draws from too: between
the release and the child's bind, a client socket can take the port, and the child dies with
``address already in use`` (CI saw exactly that). The ports here come from below that range,
where ``connect()`` never picks a local port, from a slice of its own for each pytest-xdist
worker, handed out in turn, so that one process never hands the same port out twice and two
workers never hand out the same one.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

_FLOOR = 10_000  # below this live well-known services; stay out of their way
_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_lock = threading.Lock()
_turns: Iterator[int] | None = None


def _ephemeral_low() -> int:
    try:
        return int(_PORT_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default lower bound; other systems start higher still


def _worker_slice(low: int, high: int) -> range:
    """This process's share of [low, high): its xdist worker's slice, or all of it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    if count <= 1 or index >= count:
        return range(low, high)
    size = (high - low) // count
    return range(low + index * size, low + (index + 1) * size)


def _candidates() -> Iterator[int]:
    share = _worker_slice(_FLOOR, _ephemeral_low())
    if len(share) < 64:  # a machine whose ephemeral range starts very low: no safe range
        return iter(())
    # A random start, so that two test runs at once (or a benchmark beside them) rarely meet.
    start = random.randrange(len(share))
    return (share[(start + i) % len(share)] for i in itertools.count())


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nobody listens on now and that no outgoing connection will take."""
    global _turns
    with _lock:
        if _turns is None:
            _turns = _candidates()
        for port in itertools.islice(_turns, 4096):
            if _bindable(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # no safe range: the usual trick
        s.bind((host, 0))
        return int(s.getsockname()[1])
