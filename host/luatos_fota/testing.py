"""Run a real FOTA server in-process for tests (this project's and other helpers' e2e tests).

    from luatos_fota.testing import running_server

    with running_server(tmp_path) as srv:          # uvicorn on 127.0.0.1:<free port>, in a thread
        srv.base_url                               # "http://127.0.0.1:54321"
        srv.store.products.add("KEY", "DEMO_LuatOS-SoC_Air8101")
        srv.device_url                             # base_url + "/api/site/firmware_upgrade?"
        srv.admin_token                            # for Authorization: Bearer ...

``running_server`` yields a :class:`RunningServer`; ``str(srv)`` is the base URL, so code that
only wants the URL can use it as a string. Keyword arguments go to ``create_app``
(``db_url=``, ``admin_token=``, ``push_hub=`` and any ServerConfig field, e.g.
``loop_max_serves=3``, ``device_rate=0``). Rate limits are off by default here so tests that
poll do not trip them; pass ``device_rate=...`` to test limiting. On exit the server stops
cleanly (lifespan shutdown flushes buffered audit rows) and the store is closed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from .app import FotaApp, create_app
from .server import uvicorn_config
from .store import Store


@dataclass
class RunningServer:
    base_url: str
    host: str
    port: int
    app: FotaApp
    data_dir: Path

    @property
    def store(self) -> Store:
        return self.app.state.store

    @property
    def admin_token(self) -> str:
        return self.app.state.admin_token

    @property
    def device_url(self) -> str:
        """The libfota2 ``opts.url`` for this server (vendor path, with ``?``)."""
        return f"{self.base_url}/api/site/firmware_upgrade?"

    def flush(self) -> None:
        """Write buffered audit rows and last-seen times now."""
        self.app.fota.writer.flush()

    def __str__(self) -> str:
        return self.base_url


@contextlib.contextmanager
def running_server(data_dir: str | os.PathLike[str], host: str = "127.0.0.1",
                   **kwargs: Any) -> Iterator[RunningServer]:
    """Start uvicorn on a free loopback port in a daemon thread; stop it on exit."""
    kwargs.setdefault("device_rate", 0.0)
    kwargs.setdefault("ip_rate", 0.0)
    # Tests make thousands of devices and read every audit row from one loopback address; the
    # per-IP growth bounds are switched on explicitly by the tests that are about them.
    kwargs.setdefault("new_device_ip_rate", 0.0)
    kwargs.setdefault("new_device_product_rate", 0.0)
    kwargs.setdefault("audit_ip_rate", 0.0)
    data = Path(data_dir)
    app = create_app(data, **kwargs)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, host, port))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as e:  # surface startup failures to the caller
            errors.append(e)

    th = threading.Thread(target=run, name=f"fota-server-{port}", daemon=True)
    th.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if errors or not th.is_alive():
            sock.close()
            raise RuntimeError(f"FOTA server failed to start: {errors[0] if errors else 'thread exited'}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("FOTA server did not start within 30 s")
        time.sleep(0.01)
    try:
        yield RunningServer(f"http://{host}:{port}", host, port, app, data)
    finally:
        server.should_exit = True
        th.join(30)
        sock.close()
        app.state.store.close()


@dataclass
class RawResponse:
    """A response read off the socket as bytes: nothing normalised, so tests see what devices see."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes

    def header(self, name: str) -> str | None:
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return None

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def device_request(port: int, target: bytes | str, *, host: str = "127.0.0.1", method: bytes = b"GET",
                   extra_headers: bytes = b"", body: bytes = b"", timeout: float = 30.0) -> RawResponse:
    """Send exactly what LuatOS ``http.request`` sends (docs/behaviour.md §6) and read until close.

    ``GET <target> HTTP/1.1\\r\\nConnection: Close\\r\\nHost: 127.0.0.1:<port>\\r\\n<extra>\\r\\n``
    ``target`` is sent verbatim (str is UTF-8 encoded, never percent-encoded).
    """
    t = target.encode("utf-8") if isinstance(target, str) else target
    req = (method + b" " + t + b" HTTP/1.1\r\nConnection: Close\r\nHost: " + f"{host}:{port}".encode()
           + b"\r\n" + extra_headers + b"\r\n" + body)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(req)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = s.recv(1 << 16)
            if not c:
                break
            chunks.append(c)
    data = b"".join(chunks)
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError(f"no complete response head: {data[:200]!r}")
    lines = head.split(b"\r\n")
    _, code, reason = (lines[0].decode("latin-1").split(" ", 2) + [""])[:3]
    headers = []
    for ln in lines[1:]:
        k, _, v = ln.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    return RawResponse(int(code), reason, headers, rest, head)


def script_package(firmware_name: str, version: str, body: str = "", *,
                   files: dict[str, bytes] | None = None) -> bytes:
    """An Air8101 script package (TAUL) whose main.lua sets the ``PROJECT`` that
    ``firmware_name`` is for and ``VERSION = version``: what the server's publish checks
    accept for that product. ``body`` is appended to main.lua (so two packages of one version
    can differ); ``files`` adds other files."""
    from luatos_common.packages import build_air8101_ota

    from .uploads import firmware_project

    project = firmware_project(firmware_name) or firmware_name
    main = f'PROJECT = "{project}"\nVERSION = "{version}"\n{body}\n'.encode()
    return build_air8101_ota({**(files or {}), "main.lua": main})
