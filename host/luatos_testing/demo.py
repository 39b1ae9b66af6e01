"""``make run``: scenario 1 end to end in a few seconds.

A real ``luatos-fota`` server starts on loopback with a fresh data directory; a ``001.000.001``
package is built from ``device/`` (the one VERSION line rewritten) and published; the emulated
Air8101 boots the unchanged project at ``001.000.000``, checks, downloads, reboots into
``001.000.001`` and checks again (the server now answers 304: up to date). The device's
``192.168.1.10:8000`` (from ``device/config.lua``) is mapped to the local server, so not one
line of the project is edited for the demo.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path

from luatos_common.logline import SIM, LogRecord
from luatos_common.packages import build_air8101_ota
from luatos_common.scriptcheck import stamp_version
from luatos_sim.cli import Printer
from luatos_sim.device import Device, DeviceOptions
from luatos_sim.scripts import load_project_files

PROJECT_RE = re.compile(rb'^PROJECT\s*=\s*"([^"]*)"', re.M)
CONFIG_SERVER_RE = re.compile(rb'server_url\s*=\s*"https?://([^/"]+)/')
CONFIG_KEY_RE = re.compile(rb'product_key\s*=\s*"([^"]*)"')


def with_version(files: dict[str, bytes], version: str) -> dict[str, bytes]:
    """The project with main.lua's VERSION line set to ``version``."""
    return {**files, "main.lua": stamp_version(files["main.lua"], version)}


def interesting(rec: LogRecord) -> bool:
    """The demo shows the story, not every boot line."""
    if rec.source == SIM:
        return True
    if rec.source == "c":
        return "LuatOS@" in rec.text or "VM exit" in rec.text or rec.tag == "fota" \
            or "boot up by" in rec.text
    return rec.tag not in ("fota.run",)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make run", description="FOTA scenario 1 end to end: server + emulated Air8101.")
    parser.add_argument("--project", default="device", help="LuatOS project (default: device/)")
    parser.add_argument("--data", default=".demo/fota-data",
                        help="server data directory, recreated each run (default: %(default)s)")
    parser.add_argument("--all", action="store_true", help="print every log line")
    args = parser.parse_args(argv)

    from luatos_fota.testing import running_server

    project = Path(args.project)
    files = load_project_files(project)
    project_name = PROJECT_RE.search(files["main.lua"])
    server = CONFIG_SERVER_RE.search(files.get("config.lua", b""))
    key = CONFIG_KEY_RE.search(files.get("config.lua", b""))
    if not (project_name and server and key):
        print("demo: device/ needs PROJECT in main.lua and server_url/product_key in config.lua",
              file=sys.stderr)
        return 2
    firmware_name = f"{project_name[1].decode()}_LuatOS-SoC_Air8101"
    data = Path(args.data)
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)

    out = sys.stdout
    colour = out.isatty()
    bold = (lambda s: f"\033[1m{s}\033[0m") if colour else (lambda s: s)
    t0 = time.perf_counter()
    with running_server(data) as srv:
        product = srv.store.products.add(key[1].decode(), firmware_name, name="FOTA kit demo")
        package = build_air8101_ota(with_version(files, "001.000.001"))
        release = srv.store.releases.add(package, product_id=product.id, version="001.000.001")
        print(bold(f"luatos-fota on {srv.base_url}: product {key[1].decode()} / {firmware_name}, "
                   f"release {release.id} = 001.000.001 ({len(package)} bytes, Air8101 TAUL; "
                   f"devices on core V2001 report it as 2001.001.001)"))
        print(bold(f"emulated Air8101 boots {project}/ at 001.000.000; "
                   f"{server[1].decode()} is mapped to {srv.host}:{srv.port}\n"))
        printer = Printer(out, "text", colour)
        with Device(files=with_version(files, "001.000.000"),
                    options=DeviceOptions()) as dev:
            dev.net.map_address(server[1].decode(), f"{srv.host}:{srv.port}")
            dev.add_listener(lambda r: printer(r) if args.all or interesting(r) else None)
            dev.run_until(r"^I/user\.main \S+ 001\.000\.001", within="1h")
            dev.run_until(r"^./user\.fota_result ", within="10m")
            wall = time.perf_counter() - t0
            srv.flush()
            audit = srv.store.audit.query(device_key=dev.profile.mac)
        print()
        print(bold(f"done: {len(dev.boots)} boots, {dev.current_ms() / 1000:.1f} s of device "
                   f"time in {wall:.2f} s of wall time"))
        for entry in sorted(audit, key=lambda e: (e.ts, e.id))[-6:]:
            detail = entry.detail or {}
            why = detail.get("reason") or detail.get("msg") or ""
            status = entry.status
            print(f"  server audit: {entry.event:<18} "
                  f"{'' if status is None else status:<4} {why}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
