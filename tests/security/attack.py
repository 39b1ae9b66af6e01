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

TOKEN = "security-admin-token"
KEY = "SEC_KEY"
FW = "SEC_LuatOS-SoC_Air8101"
VICTIM = "C8C2C68CD602"
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    from luatos_common.packages import build_air8101_ota

    return build_air8101_ota({"main.lua": f"-- {version}\n".encode() * 50})
