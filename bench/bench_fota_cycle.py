"""Wall time of emulated FOTA work (prints a table; asserts nothing).

1. One full upgrade cycle: boot, WiFi up, libfota2 check against a real loopback HTTP server,
   download of a ~1 MB Air8101 package into the FOTA area, reboot, apply, new version boots.
2. Thirty days of a PSM device that wakes every 4 hours (180 boots), checks (a 404 from the
   same server), arms its dtimer and sleeps again; and the same month without the network.

Goal for both: under 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from luatos_common.loopback_http import start_loopback_http, stop_loopback_http
from luatos_common.packages import build_air8101_ota
from luatos_sim import Device, DeviceOptions

MAIN = """
PROJECT = "BENCH"
VERSION = "001.000.000"
PRODUCT_KEY = "K"
libfota2 = require "libfota2"
sys.taskInit(function()
  wlan.init()
  wlan.connect("ap", "pw")
  sys.waitUntil("IP_READY", 30000)
  libfota2.request(function(ret)
    log.info("fota_cb", ret)
    if ret == 0 then rtos.reboot() end
  end, {url = "http://ota.example.com/upgrade?"})
end)
sys.run()
"""

NEW_MAIN = 'VERSION = "001.000.001"\nlog.info("main", "new", VERSION)\nsys.run()\n'

PSM_MAIN = """
PROJECT = "BENCH"
VERSION = "001.000.000"
libfota2 = require "libfota2"
sys.taskInit(function()
  wlan.init()
  wlan.connect("ap", "pw")
  sys.waitUntil("IP_READY", 30000)
  libfota2.request(function(ret) sys.publish("FOTA_END", ret) end,
                   {url = "###http://ota.example.com/none.bin"})
  sys.waitUntil("FOTA_END", 15000)
  wlan.disconnect()
  pm.dtimerStart(2, 14400000)
  pm.power(pm.WORK_MODE, 3)
  sys.wait(15000)
  rtos.reboot()
end)
sys.run()
"""


WAKE_ONLY_MAIN = """
log.info("wake", pm.lastReson())
sys.taskInit(function()
  sys.wait(200)
  pm.dtimerStart(2, 14400000)
  pm.power(pm.WORK_MODE, 3)
  sys.wait(15000)
  rtos.reboot()
end)
sys.run()
"""


class Server:
    def __init__(self, package: bytes) -> None:
        pkg = package

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith("/upgrade"):
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(pkg)))
                    self.end_headers()
                    self.wfile.write(pkg)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = start_loopback_http(Handler)
        self.port = self.httpd.server_address[1]

    def close(self) -> None:
        stop_loopback_http(self.httpd)


def one_megabyte_package() -> bytes:
    blob = os.urandom(700 * 1024).hex().encode()[:1_000_000]
    return build_air8101_ota({"main.lua": NEW_MAIN.encode(), "blob.bin": blob})


def upgrade_cycle(port: int, root: Path) -> tuple[float, float]:
    (root / "main.lua").write_text(MAIN)
    t0 = time.perf_counter()
    with Device(root, options=DeviceOptions(io_grace_ms=2000)) as dev:
        dev.net.map_address("ota.example.com", f"127.0.0.1:{port}")
        dev.run_until("I/user.main new 001.000.001", within="10m")
        wall = time.perf_counter() - t0
        vm = dev.wall_in_vm
    return wall, vm


def psm_month(port: int, root: Path, main: str = PSM_MAIN) -> tuple[float, int]:
    (root / "main.lua").write_text(main)
    t0 = time.perf_counter()
    with Device(root, options=DeviceOptions(io_grace_ms=2000)) as dev:
        dev.net.map_address("ota.example.com", f"127.0.0.1:{port}")
        dev.run_for("30d")
        boots = len(dev.boots)
    return time.perf_counter() - t0, boots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="repetitions (median shown)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    pkg = one_megabyte_package()
    srv = Server(pkg)
    try:
        cycles, vms, months, quiet, boots = [], [], [], [], 0
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                wall, vm = upgrade_cycle(srv.port, Path(tmp))
            cycles.append(wall)
            vms.append(vm)
        for _ in range(max(1, args.runs // 2)):
            with tempfile.TemporaryDirectory() as tmp:
                wall, boots = psm_month(srv.port, Path(tmp))
            months.append(wall)
            with tempfile.TemporaryDirectory() as tmp:
                wall, _ = psm_month(srv.port, Path(tmp), WAKE_ONLY_MAIN)
            quiet.append(wall)
    finally:
        srv.close()
    rows = [
        ("upgrade cycle, 1 MB package", len(pkg), statistics.median(cycles),
         f"Lua {statistics.median(vms) * 1000:.0f} ms"),
        ("30 days PSM, 4 h wake + HTTP check", boots, statistics.median(months),
         f"{statistics.median(months) / max(boots, 1) * 1000:.2f} ms/boot"),
        ("30 days PSM, 4 h wake, no network", boots, statistics.median(quiet),
         f"{statistics.median(quiet) / max(boots, 1) * 1000:.2f} ms/boot"),
    ]
    if args.json:
        print(json.dumps([{"case": r[0], "size": r[1], "seconds": round(r[2], 4),
                           "note": r[3]} for r in rows]))
        return 0
    print(f"{'case':36} {'bytes/boots':>12} {'median s':>9}  {'goal':>6}  note")
    for i, (name, size, secs, note) in enumerate(rows):
        # The issue sets a goal (< 0.5 s) for the upgrade cycle only; PSM is reported as measured.
        verdict = ("ok" if secs < 0.5 else "MISSED") if i == 0 else "-"
        print(f"{name:36} {size:>12} {secs:>9.3f}  {verdict:>6}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
