#!/usr/bin/env python3
"""A GPS tracker for an hour of virtual time: how fast the emulator runs it.

The bench receiver sends a burst of NMEA every virtual second and libgnss parses each one on
the bound UART, so a tracker costs more than an idle script. Prints the virtual seconds per
wall second with the receiver attached and fixed, and the same script with nothing attached
(the ratio is what the receiver and the parser cost).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))

from luatos_sim import Device, DeviceOptions  # noqa: E402
from luatos_sim.duration import parse_duration  # noqa: E402
from luatos_sim.platform.gnss import Fix  # noqa: E402

TRACKER = b"""
sys = require("sys")
sys.taskInit(function()
    uart.setup(2, 115200)
    libgnss.bind(2)
    while true do
        sys.waitUntil("GNSS_STATE", 60000)
        sys.wait(10000)
        local lat, lng = libgnss.getIntLocation()
        log.info("loc", lat, lng, libgnss.isFix())
    end
end)
sys.run()
"""


def run(virtual: str, attach: bool) -> float:
    with tempfile.TemporaryDirectory() as d:
        dev = Device(files={"main.lua": TRACKER}, model="Air780E", state_dir=d,
                     options=DeviceOptions(epoch_at_power_on=1_700_000_000))
        try:
            if attach:
                dev.gnss.attach(uart=2).set(Fix(23.4067, 113.2311, speed_kmh=40, course=30))
            start = time.perf_counter()
            dev.run_for(virtual)
            return time.perf_counter() - start
        finally:
            dev.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--virtual", default="1h", help="virtual time to run (default 1h)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with_rx = run(args.virtual, True)
    without = run(args.virtual, False)
    seconds = parse_duration(args.virtual) / 1000
    out = {"virtual_s": seconds, "wall_s_with_receiver": round(with_rx, 3),
           "wall_s_without": round(without, 3),
           "virtual_per_wall_with_receiver": round(seconds / with_rx, 1),
           "receiver_cost_ratio": round(with_rx / max(without, 1e-9), 1)}
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
