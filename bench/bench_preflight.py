"""Wall time of the publish safety gate (prints a table; asserts nothing).

1. Preflight of device/ (cold boot + upgrade path, 10 virtual minutes each) in its worker
   process, as `luatos-fota release add` runs it: goal < 5 s.
2. The whole publish of a 1 MB package (device/ plus a 1 MB asset file): the package checks,
   the durable store, and the preflight: goal < 10 s.

Medians of --runs runs (default 3).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from luatos_common.packages import build_air8101_ota
from luatos_fota.preflight import PreflightRunner
from luatos_fota.records import Release
from luatos_fota.store import Store
from luatos_sim.scripts import load_project_files
from luatos_testing.demo import PROJECT_RE, with_version

DEVICE = Path(__file__).resolve().parents[1] / "device"
KEY = "DEMO_PRODUCT_KEY"


def publish_once(files: dict[str, bytes], fw: str) -> tuple[float, float, Release]:
    """(whole publish wall s, preflight worker wall s, release) on a fresh data dir."""
    old = build_air8101_ota(with_version(files, "001.000.000"))
    new = build_air8101_ota(with_version(files, "001.000.001"))
    with tempfile.TemporaryDirectory() as d:
        st = Store(d)
        pid = st.products.add(KEY, fw).id
        st.releases.add(old, product_id=pid, version="001.000.000")
        t0 = time.perf_counter()
        rel = st.releases.add(new, product_id=pid, version="001.000.001", preflight="pending")
        t1 = time.perf_counter()
        done = PreflightRunner(st).run(rel.id)
        total = time.perf_counter() - t0
        st.close()
    assert done is not None
    res = done.preflight_result or {}
    return total, float(res.get("process_wall_s", time.perf_counter() - t1)), done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    files = load_project_files(DEVICE)
    m = PROJECT_RE.search(files["main.lua"])
    assert m
    fw = f"{m[1].decode()}_LuatOS-SoC_Air8101"
    big = {**files, "assets.bin": os.urandom(1 << 20)}
    rows = []
    for label, proj, goal in (("device/ (52 KB)", files, 5.0), ("device/ + 1 MB asset", big, 10.0)):
        totals, preflights = [], []
        status = ""
        for _ in range(args.runs):
            total, pre, rel = publish_once(proj, fw)
            totals.append(total)
            preflights.append(pre)
            status = f"{rel.preflight_status} ({rel.size} bytes)"
        rows.append((label, statistics.median(preflights), statistics.median(totals), goal, status))
    print(f"{'package':<24} {'preflight':>10} {'publish':>9}  goal       result")
    for label, pre, total, goal, status in rows:
        what = pre if goal == 5.0 else total
        print(f"{label:<24} {pre:>9.2f}s {total:>8.2f}s  < {goal:g} s: {what / goal:.2f}x  {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
