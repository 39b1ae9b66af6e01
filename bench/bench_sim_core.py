"""Emulator core benchmark: timer events per second, sys.wait overhead, boot time, 30 days.

Prints a table; run with ``.venv/bin/python bench/bench_sim_core.py``. Wall times are medians
of a few runs (the machines here are shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from luatos_sim import Device, DeviceOptions

RUNS = 5


def project(src: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    (d / "main.lua").write_text(src)
    return d


def stamp_lines(dev: Device) -> dict[str, float]:
    marks: dict[str, float] = {}

    def listener(rec) -> None:  # type: ignore[no-untyped-def]
        if rec.line.startswith("I/user.mark "):
            marks[rec.line.split(" ", 2)[1]] = time.perf_counter()
    dev.add_listener(listener)
    return marks


def timer_events_per_second() -> tuple[float, int]:
    """Virtual timer events handled per wall second (10 tasks each waiting 10 ms)."""
    src = """
    for i = 1, 10 do
      sys.taskInit(function() while true do sys.wait(10) end end)
    end
    sys.run()
    """
    rates = []
    events = 10 * (600_000 // 10)
    for _ in range(RUNS):
        with Device(project(src)) as dev:
            dev.run_for("1s")
            t = time.perf_counter()
            dev.run_for("10m")
            rates.append(events / (time.perf_counter() - t))
    return statistics.median(rates), events


def wait_vs_raw_ratio() -> tuple[float, float, float]:
    n = 200_000
    src = f"""
    log.info("mark", "raw0")
    local co = coroutine.create(function() while true do coroutine.yield() end end)
    for i = 1, {n} do coroutine.resume(co) end
    log.info("mark", "raw1")
    sys.taskInit(function()
      log.info("mark", "wait0")
      for i = 1, {n} do sys.wait(1) end
      log.info("mark", "wait1")
    end)
    sys.run()
    """
    ratios, raw_us, wait_us = [], [], []
    for _ in range(RUNS):
        with Device(project(src)) as dev:
            marks = stamp_lines(dev)
            # Lua has a virtual cost, so the loop takes longer than n ms of virtual time
            dev.run_until("I/user.mark wait1", within="1h")
            raw = marks["raw1"] - marks["raw0"]
            wait = marks["wait1"] - marks["wait0"]
            ratios.append(wait / raw)
            raw_us.append(raw / n * 1e6)
            wait_us.append(wait / n * 1e6)
    return statistics.median(ratios), statistics.median(raw_us), statistics.median(wait_us)


def boot_time_ms() -> float:
    src = 'log.info("mark", "up")\nsys.run()\n'
    proj = project(src)
    times = []
    for _ in range(RUNS * 4):
        t = time.perf_counter()
        with Device(proj) as dev:
            dev.run_until("I/user.mark up", within="5s")
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def thirty_days_seconds() -> float:
    src = """
    local n = 0
    sys.timerLoopStart(function() n = n + 1; log.info("check", n) end, 4 * 3600 * 1000)
    sys.run()
    """
    times = []
    for _ in range(RUNS):
        with Device(project(src), options=DeviceOptions()) as dev:
            t = time.perf_counter()
            dev.run_for("30d")
            times.append(time.perf_counter() - t)
            assert sum(1 for r in dev.log if r.line.startswith("I/user.check")) == 179
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    global RUNS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=RUNS, help="repetitions (median shown)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    RUNS = max(1, args.runs)
    rate, events = timer_events_per_second()
    ratio, raw_us, wait_us = wait_vs_raw_ratio()
    boot_ms = boot_time_ms()
    days = thirty_days_seconds()
    if args.json:
        print(json.dumps({"timer_events_per_s": rate, "wait_vs_raw": ratio,
                          "wait_us": wait_us, "raw_us": raw_us, "boot_ms": boot_ms,
                          "thirty_days_ms": days * 1000}))
        return 0
    rows = [
        ("virtual timer events / wall s", f"{rate:,.0f}", ">= 200,000",
         "ok" if rate >= 200_000 else "MISSED"),
        ("sys.wait loop vs raw resume/yield", f"{ratio:.1f}x ({wait_us:.2f} vs {raw_us:.2f} us)",
         "<= 3x", "ok" if ratio <= 3 else "MISSED"),
        ("boot to first main line", f"{boot_ms:.1f} ms", "< 20 ms", "ok" if boot_ms < 20 else "MISSED"),
        ("30 virtual days, 4-hour timerLoopStart", f"{days * 1000:.1f} ms", "< 1 s",
         "ok" if days < 1 else "MISSED"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'result':<28} {'goal':<12} status")
    for name, result, goal, status in rows:
        print(f"{name:<{w}}  {result:<28} {goal:<12} {status}")
    print(f"(median of {RUNS} runs; {events:,} timer events per rate run; python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
