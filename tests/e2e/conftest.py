"""End-to-end fixtures: the reference project in device/ on the emulator, the real server.

Every test boots the unchanged ``device/`` project (only ``VERSION`` in main.lua and, where a
scenario is chosen, the ``scenario = "..."`` line of config.lua are rewritten, the same edit a
user makes) on an emulated Air8101 whose ``192.168.1.10:8000`` is mapped to a real
``luatos-fota`` server on a free loopback port. Nothing is mocked between the device's Lua code
and the server's HTTP answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from luatos_common.loopback_http import start_loopback_http, stop_loopback_http
from luatos_common.packages import build_air8101_ota
from luatos_fota.records import AuditRecord, Product, Release
from luatos_fota.testing import RunningServer, running_server
from luatos_sim import Device, DeviceOptions
from luatos_sim.scripts import load_project_files
from luatos_testing.demo import PROJECT_RE, with_version

REPO = Path(__file__).resolve().parents[2]
DEVICE_DIR = REPO / "device"
# What device/config.lua points at (the device's view of the server).
DEVICE_HTTP = "192.168.1.10:8000"
DEVICE_TCP = "192.168.1.10:9000"
PRODUCT_KEY = "DEMO_PRODUCT_KEY"
OLD, NEW = "001.000.000", "001.000.001"
SCENARIO_RE = re.compile(rb'^(\s*scenario\s*=\s*)"[^"]*"', re.M)
# The e2e runs with device authentication on (issue 13): the product is in hmac mode and the
# project's config.lua carries the product secret, as a user sets it up.
E2E_AUTH_SECRET = "e2e-product-secret-0123456789abcdef"

# Log lines the tests wait for (fixed prefixes from device/README.md).
RESULT = r"^[IWE]/user\.fota_result (\d+) "
BOOTED = r"^I/user\.main FOTA_KIT_DEMO {v} "


def booted(version: str) -> str:
    return BOOTED.format(v=re.escape(version))


def with_scenario(files: dict[str, bytes], scenario: str) -> dict[str, bytes]:
    """The project with config.lua's ``scenario = "..."`` line set (the one place to choose it)."""
    cfg = files["config.lua"]
    new, n = SCENARIO_RE.subn(rb'\g<1>"' + scenario.encode() + rb'"', cfg, count=1)
    assert n == 1, "device/config.lua has no scenario = \"...\" line"
    return {**files, "config.lua": new}


def with_auth(files: dict[str, bytes], secret: str = E2E_AUTH_SECRET) -> dict[str, bytes]:
    """config.lua with ``auth_mode = "hmac"`` and the product secret (what `luatos-fota product
    auth hmac` tells the user to put there)."""
    cfg = files["config.lua"]
    assert b'auth_mode = "none"' in cfg and b'auth_secret = ""' in cfg
    cfg = cfg.replace(b'auth_mode = "none"', b'auth_mode = "hmac"', 1)
    cfg = cfg.replace(b'auth_secret = ""', b'auth_secret = "' + secret.encode() + b'"', 1)
    return {**files, "config.lua": cfg}


def project(version: str = OLD, scenario: str = "periodic",
            patch: Callable[[dict[str, bytes]], dict[str, bytes]] | None = None) -> dict[str, bytes]:
    files = with_auth(with_scenario(with_version(load_project_files(DEVICE_DIR), version), scenario))
    return patch(files) if patch else files


def package(version: str = NEW, scenario: str = "periodic",
            patch: Callable[[dict[str, bytes]], dict[str, bytes]] | None = None) -> bytes:
    """An Air8101 TAUL upgrade package of device/ declaring ``version``."""
    return build_air8101_ota(project(version, scenario, patch))


def firmware_name() -> str:
    m = PROJECT_RE.search(load_project_files(DEVICE_DIR)["main.lua"])
    assert m, "device/main.lua has no PROJECT line"
    return f"{m[1].decode()}_LuatOS-SoC_Air8101"


def result_codes(dev: Device, boot: int | None = None) -> list[int]:
    """Every fota_result code the device logged (optionally of one boot), in order."""
    rx = re.compile(RESULT)
    out = []
    for line in dev.lines(boot):
        m = rx.match(line)
        if m:
            out.append(int(m[1]))
    return out


def count_lines(dev: Device, pattern: str) -> int:
    rx = re.compile(pattern)
    return sum(1 for line in dev.lines() if rx.search(line))


def vm_exits(dev: Device) -> list[str]:
    return [line for line in dev.lines() if "VM exit" in line]


@dataclass
class Fota:
    """The real server, its product and what the test published."""

    srv: RunningServer
    product: Product
    releases: list[Release] = field(default_factory=list)

    def release(self, data: bytes, version: str = NEW, **kw: Any) -> Release:
        rel = self.srv.store.releases.add(data, product_id=self.product.id, version=version, **kw)
        self.releases.append(rel)
        return rel

    def audit(self, device: str, event: str | None = None) -> list[AuditRecord]:
        """Audit rows of a device, oldest first (buffered rows flushed first)."""
        self.srv.flush()
        rows = self.srv.store.audit.query(device_key=device, event_=event, limit=10000)
        return sorted(rows, key=lambda r: r.id)

    def serves(self, device: str) -> list[AuditRecord]:
        return [r for r in self.audit(device) if r.event == "serve"]


@pytest.fixture
def fota(tmp_path: Path) -> Iterator[Fota]:
    """A real luatos-fota server with the device/ product registered."""
    with running_server(tmp_path / "server") as srv:
        product = srv.store.products.add(PRODUCT_KEY, firmware_name(), name="e2e")
        product = srv.store.products.set_auth(product.id, "hmac", secret=E2E_AUTH_SECRET)
        yield Fota(srv, product)


@pytest.fixture
def make_device(tmp_path: Path) -> Iterator[Callable[..., Device]]:
    """make_device(files, server=..., tcp=...) -> an emulated Air8101 with device/ flashed."""
    made: list[Device] = []

    def make(files: dict[str, bytes], server: RunningServer | str | None = None,
             tcp: str | None = None, fskv: dict[str, Any] | None = None) -> Device:
        state = tmp_path / f"device{len(made)}"
        dev = Device(files=files, state_dir=state,
                     options=DeviceOptions(epoch_at_power_on=1_764_000_000))
        made.append(dev)
        for key, value in (fskv or {}).items():
            # What fskv.set(key, "<string>") leaves in the emulated flash (tagged JSON).
            dev.fskv.set(key, {"s": value if isinstance(value, str) else json.dumps(value)})
        if isinstance(server, RunningServer):
            dev.net.map_address(DEVICE_HTTP, f"{server.host}:{server.port}")
        elif server is not None:
            dev.net.map_address(DEVICE_HTTP, server)
        if tcp is not None:
            dev.net.map_address(DEVICE_TCP, tcp)
        return dev

    yield make
    for d in made:
        d.close()


# -- tiny loopback servers for answers the real server never gives ----------------------------


@dataclass
class RawHttp:
    """A loopback HTTP server answering every GET with a fixed status and body."""

    host: str
    port: int
    requests: list[str]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@pytest.fixture
def raw_http() -> Iterator[Callable[[int, bytes], RawHttp]]:
    servers: list[ThreadingHTTPServer] = []

    def start(status: int, body: bytes) -> RawHttp:
        seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                seen.append(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        srv = start_loopback_http(Handler)
        servers.append(srv)
        return RawHttp("127.0.0.1", int(srv.server_address[1]), seen)

    yield start
    for s in servers:
        stop_loopback_http(s)
