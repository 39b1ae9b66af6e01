"""Tools for the attack tests: the real `luatos-fota serve` in a subprocess (so its CPU time,
memory and database can be measured apart from the attacker), raw sockets, and measurements.

Every loop here is bounded in count and in wall time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luatos_common.ports import free_port

TOKEN = "security-admin-token"
KEY = "SEC_KEY"
FW = "SEC_LuatOS-SoC_Air8101"
VICTIM = "C8C2C68CD602"
_TICK = os.sysconf("SC_CLK_TCK")


def _toml(cfg: dict[str, Any]) -> str:
    lines = []
    for k, v in cfg.items():
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, str):
            lines.append(f"{k} = {json.dumps(v)}")
        else:
            lines.append(f"{k} = {v}")
    return "\n".join(lines) + "\n"


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    push_port: int | None
    data: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def db_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.data.glob("fota.db*"))

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def healthz(self) -> dict[str, Any]:
        r = raw(self.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return json.loads(r.partition(b"\r\n\r\n")[2])


@contextlib.contextmanager
def served(tmp: Path, cfg: dict[str, Any] | None = None, *, push: bool = False,
           setup: Any = None) -> Iterator[Served]:
    """``luatos-fota serve --config FILE`` on loopback; ``setup(store)`` prepares the data first.
    On exit the server gets SIGTERM; its stderr must hold no traceback."""
    data = tmp / "data"
    if setup is not None:
        from luatos_fota.store import Store

        st = Store(data)
        try:
            setup(st)
        finally:
            st.close()
    port = free_port()
    push_port = free_port() if push else None
    conf = {"host": "127.0.0.1", "port": port, "device_rate": 0.0, **(cfg or {})}
    if push_port:
        conf["push_port"] = push_port
    cfile = tmp / "serve.toml"
    cfile.write_text(_toml(conf))
    err = tmp / "serve.stderr"
    env = {**os.environ, "LUATOS_FOTA_TOKEN": TOKEN}
    with open(err, "wb") as ef:
        proc = subprocess.Popen([sys.executable, "-m", "luatos_fota.cli", "serve", "--data", str(data),
                                 "--config", str(cfile)], stdout=subprocess.DEVNULL, stderr=ef, env=env)
    s = Served(proc, port, push_port, data, err)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                s.healthz()
                break
            except (OSError, ValueError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start:\n{s.stderr()}") from None
                time.sleep(0.05)
        yield s
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert "Traceback" not in s.stderr(), s.stderr()[-3000:]


def raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes, read until the server closes (bounded by ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = c.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
        return out


def status_of(resp: bytes) -> int:
    line = resp.split(b"\r\n", 1)[0].split(b" ")
    return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0


def check_target(version: str, mac: str = VICTIM) -> str:
    return f"/api/site/firmware_upgrade?mac={mac}&project_key={KEY}&firmware_name={FW}&version={version}"


def get(port: int, target: str, headers: str = "", method: str = "GET") -> bytes:
    return raw(port, f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n".encode())


def package(version: str = "001.000.002") -> bytes:
    """A package of this product that the publish checks accept (PROJECT and VERSION set)."""
    from luatos_fota.testing import script_package

    return script_package(FW, version, f"-- {version}\n" * 50)


def db_logical_bytes(data: Path) -> int:
    """The database's size once its WAL is folded in (the WAL file keeps its high-water size)."""
    import sqlite3

    con = sqlite3.connect(data / "fota.db", timeout=30)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * size)
    finally:
        con.close()


def _attacker(port: int, push_port: int | None, stop: float, counts: dict[str, int], seed: int) -> None:
    """One unauthenticated client's worst: random device ids, version flapping, garbage, pulls of
    private packages, and on the push channel answer floods, deep JSON and reconnect loops."""
    import random

    rnd = random.Random(seed)
    n = 0
    while time.monotonic() < stop:
        n += 1
        kind = n % 6
        try:
            if kind == 0:
                mac = f"{rnd.getrandbits(48):012X}"
                get(port, check_target("2001.001.000", mac=mac))
            elif kind == 1:
                get(port, check_target(f"2001.001.{n % 999:03d}", mac=VICTIM))
            elif kind == 2:
                raw(port, b"GET /" + bytes(rnd.getrandbits(8) % 90 + 33 for _ in range(40))
                    + b" HTTP/1.1\r\nConnection: close\r\nRange: bytes=" + b"9" * 300 + b"-\r\n\r\n")
            elif kind == 3:
                get(port, "/dl/artifact/1.bin", "Range: bytes=" + "1" * 3000 + "-\r\n")
            elif kind == 4 and push_port:
                with socket.create_connection(("127.0.0.1", push_port), timeout=5) as c:
                    c.sendall(b'{"login":{"device":"%012X","version":"2001.001.000"}}\n' % rnd.getrandbits(48))
                    pad = b"x" * 3900
                    for i in range(40):
                        c.sendall(b'{"fota_result":%d,"pad":"%s"}\n' % (i, pad))
                        c.sendall(b'{"heartbeat":%d}\n' % i + b"[" * 2000 + b"\n")
            else:
                get(port, check_target("2001.001.000", mac=f"{rnd.getrandbits(48):012X}"),
                    "Authorization: Bearer " + "0" * 64 + "\r\n")
            counts["attack"] = counts.get("attack", 0) + 1
        except OSError:
            counts["attack_errors"] = counts.get("attack_errors", 0) + 1


LEGIT = [f"C8C2C6{i:06X}" for i in range(200)]


def _legit(port: int, stop: float, macs: list[str], lat: list[float], bad: list[bytes]) -> None:
    i = 0
    while time.monotonic() < stop:
        mac = macs[i % len(macs)]
        i += 1
        t0 = time.perf_counter()
        r = get(port, check_target("2001.001.002", mac=mac))
        lat.append(time.perf_counter() - t0)
        if status_of(r) != 304:
            bad.append(r[:300])
        time.sleep(0.02)


def unauthenticated_flood(s: Served, seconds: float, attackers: int = 4, legit: int = 4) -> dict[str, float]:
    """Run one client's attack for ``seconds`` while ``legit`` devices check in; return growth and
    latency figures (DB bytes, RSS bytes, p99 of legitimate check-ins in ms)."""
    import threading

    macs = LEGIT  # registered before the server started (see register_fleet)
    for m in macs:
        get(s.port, check_target("2001.001.002", mac=m))
    # the same legitimate load without the attack: what this machine gives right now
    quiet: list[float] = []
    quiet_bad: list[bytes] = []
    qstop = time.monotonic() + 2.0
    qthreads = [threading.Thread(target=_legit, args=(s.port, qstop, macs[k::legit], quiet, quiet_bad), daemon=True)
                for k in range(legit)]
    for th in qthreads:
        th.start()
    for th in qthreads:
        th.join(30)
    quiet.sort()
    quiet_p99 = quiet[int(len(quiet) * 0.99) - 1] * 1000 if quiet else float("nan")
    time.sleep(1.0)
    db0, rss0 = db_logical_bytes(s.data), s.rss()
    stop = time.monotonic() + seconds
    counts: dict[str, int] = {}
    lat: list[float] = []
    bad: list[bytes] = []
    threads = [threading.Thread(target=_attacker, args=(s.port, s.push_port, stop, counts, k), daemon=True)
               for k in range(attackers)]
    threads += [threading.Thread(target=_legit, args=(s.port, stop, macs[k::legit], lat, bad), daemon=True)
                for k in range(legit)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(seconds + 30)
    time.sleep(1.5)  # let the batched writer flush
    lat.sort()
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan")
    return {"seconds": seconds, "attack_requests": counts.get("attack", 0),
            "db_growth_bytes": db_logical_bytes(s.data) - db0, "rss_growth_bytes": s.rss() - rss0,
            "legit_checkins": len(lat), "legit_p99_ms": p99, "quiet_p99_ms": quiet_p99, "legit_not_304": len(bad),
            "legit_not_304_sample": bad[:1]}  # type: ignore[dict-item]


def register_fleet(st: Any, product_id: int) -> None:
    for m in LEGIT:
        st.devices.register(m, product_id)
