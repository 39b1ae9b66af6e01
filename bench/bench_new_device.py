#!/usr/bin/env python3
"""Benchmark the cost of the shared new-device rates on a device's first check-in.

Why: the per-product and per-IP new-device buckets live in the database so that instances
sharing it hold one limit together (docs/deploy.md); each new device row then also updates two
bucket rows in its transaction. This measures ``store.devices.create`` on SQLite with and
without those buckets, in one process, and prints the ratio. Existing devices never pay it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from luatos_fota.store import SharedRate, Store


def per_device_ms(data: Path, n: int, shared: bool) -> float:
    st = Store(data)
    try:
        p = st.products.add("bench_key", "BENCH_LuatOS-SoC_Air8101")
        limits = [SharedRate(f"product:{p.id}", 1e6, 1e9), SharedRate("ip:10.0.0.1", 1e6, 1e9)] if shared else []
        t0 = time.perf_counter()
        for i in range(n):
            st.devices.create(f"{0xC8C2C6000000 + i:012X}", "mac", p.id, "2001.001.000", "10.0.0.1",
                             limits=limits)
        return (time.perf_counter() - t0) * 1000 / n
    finally:
        st.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2000, help="new devices per run (default 2000)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each kind; the best counts")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fota-newdev-") as tmp:
        plain = min(per_device_ms(Path(tmp) / f"p{r}", args.devices, False) for r in range(args.rounds))
        shared = min(per_device_ms(Path(tmp) / f"s{r}", args.devices, True) for r in range(args.rounds))
    print(f"new device row, no shared limits      {plain:.3f} ms")
    print(f"new device row, 2 shared buckets       {shared:.3f} ms")
    print(f"ratio with/without shared buckets      {shared / plain:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
