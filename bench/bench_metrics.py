#!/usr/bin/env python3
"""Benchmark a ``/metrics`` scrape on a server that knows 10,000 devices.

Why: Prometheus scrapes every instance every 15-60 s; a scrape must stay cheap however large
the fleet is (goal: < 10 ms), which holds only while no metric grows with the device count.

What runs: a real server in this process (SQLite), 10,000 distinct devices checking in over
loopback (so every counter and histogram has been touched), then timed scrapes over HTTP (a
keep-alive client), of the exposition alone, and of ``/healthz`` on the same connection (the
round trip with nothing to render: on a busy machine most of a scrape's time is this). Prints a
table; exit 1 when the median HTTP scrape misses the goal.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

GOAL_MS = 10.0


def hook_cost_us(n: int = 100_000) -> tuple[float, float]:
    """CPU per check-in of what the edge adds for metrics (response wrapper, latency histogram,
    outcome counter), against the same two ASGI messages unwrapped: (hooked, bare) in µs."""
    import asyncio

    from luatos_fota import metrics

    async def send(message: dict) -> None:
        return None

    start = {"type": "http.response.start", "status": 304, "headers": []}
    body = {"type": "http.response.body", "body": b"", "more_body": False}

    async def run(hooked: bool) -> float:
        t = time.perf_counter()
        for _ in range(n):
            s = metrics.observe_response("/api/site/firmware_upgrade", send) if hooked else send
            await s(start)
            await s(body)
            if hooked:
                metrics.checkin("v1", 27)
        return (time.perf_counter() - t) / n * 1e6

    async def both() -> tuple[float, float]:
        await run(True)  # warm up
        return min([await run(True) for _ in range(3)]), min([await run(False) for _ in range(3)])
    return asyncio.run(both())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    import requests

    from luatos_fota import metrics
    from luatos_fota.testing import device_request, running_server

    work = Path(tempfile.mkdtemp(prefix="fota-bench-metrics-"))
    with running_server(work / "data") as srv:
        srv.store.products.add("bench_key", "BENCH_LuatOS-SoC_Air8101")

        def check_in(i: int) -> int:
            return device_request(srv.port, f"/api/site/firmware_upgrade?mac={0xC8C2C6000000 + i:012X}"
                                  "&project_key=bench_key&firmware_name=BENCH_LuatOS-SoC_Air8101"
                                  "&version=2001.001.000").status

        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(check_in, range(args.devices)))
        fill_s = time.perf_counter() - t0
        srv.flush()
        known = len(srv.store.devices.all(limit=args.devices + 10))
        if known < args.devices or set(statuses) != {304}:
            print(f"setup failed: {known} devices known, statuses {sorted(set(statuses))}", file=sys.stderr)
            return 2
        http = requests.Session()
        http_ms, gen_ms, base_ms = [], [], []
        size = 0
        for _ in range(args.scrapes):
            t = time.perf_counter()
            r = http.get(f"{srv.base_url}/metrics", timeout=30)
            http_ms.append((time.perf_counter() - t) * 1000)
            size = len(r.content)
            t = time.perf_counter()
            http.get(f"{srv.base_url}/healthz", timeout=30)  # same round trip, nothing to render
            base_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            metrics.exposition()
            gen_ms.append((time.perf_counter() - t) * 1000)
    http_ms.sort()
    med = statistics.median(http_ms)
    print(f"{known} devices known ({args.devices} check-ins in {fill_s:.1f} s); /metrics is {size} bytes")
    print(f"  HTTP scrape:     median {med:.2f} ms, p95 {http_ms[int(len(http_ms) * 0.95)]:.2f} ms "
          f"(goal < {GOAL_MS:g} ms)")
    print(f"  exposition only: median {statistics.median(gen_ms):.2f} ms")
    print(f"  /healthz on the same connection (the round trip alone): median {statistics.median(base_ms):.2f} ms")
    hooked, bare = hook_cost_us()
    print(f"metrics hooks on the device path: {hooked - bare:.1f} µs per check-in "
          f"({hooked:.1f} µs hooked vs {bare:.1f} µs bare, best of 3 x 100k)")
    return 0 if med < GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
