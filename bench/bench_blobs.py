#!/usr/bin/env python3
"""Benchmark the object-store package path: what the first download of a package costs on an
instance that has never fetched it, against one that has it on local disk.

Why: with packages in an S3-compatible bucket, the first device asking an instance for a new
release waits for the fetch into the local cache; every later download and Range request is
local. Goal: that first download adds < 100 ms for a 1 MB package on loopback.

What runs: moto's S3 server on loopback (the test suite's), three real servers in this process
sharing one SQLite database: A (bucket; uploads), B (bucket; separate cache directory, cold)
and C (local directory, the package copied in: today's first download from disk). Per trial a
new 1 MB release is uploaded through A, then fetched from B (cold, then again) and from C.

Prints a table; exit 1 when the goal is missed, 2 when the bench cannot run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

GOAL_EXTRA_MS = 100.0
ROOT = Path(__file__).resolve().parent.parent


def _s3_fixture():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("s3_fixture", ROOT / "tests" / "server" / "s3_fixture.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["s3_fixture"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def build_package(size: int, tag: int) -> bytes:
    from luatos_common.packages import build_air8101_ota

    payload = max(0, int(size / 1.0625) - 2000)  # framing adds 2 bytes per 32
    return build_air8101_ota({"main.lua": f'PROJECT="BENCH"\nVERSION="001.000.{tag:03d}"\n'.encode(),
                              "payload.bin": os.urandom(payload)})


def timed_download(port: int, path: str, size: int) -> float:
    from luatos_fota.testing import device_request

    t0 = time.perf_counter()
    res = device_request(port, path)
    dt = time.perf_counter() - t0
    if res.status != 200 or len(res.body) != size:
        raise RuntimeError(f"GET {path} on port {port}: {res.status}, {len(res.body)} bytes")
    return dt * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=9)
    parser.add_argument("--package-size", type=int, default=1_000_000)
    args = parser.parse_args()
    s3 = _s3_fixture()
    if not s3.available():
        print(f"cannot run: {s3.SETUP_HINT}", file=sys.stderr)
        return 2
    os.environ.update(s3.CREDENTIAL_ENV)
    from luatos_fota.blobs import BlobStore
    from luatos_fota.testing import running_server

    server = s3.start_server()
    work = Path(tempfile.mkdtemp(prefix="fota-bench-blobs-"))
    cold, warm, disk = [], [], []
    try:
        url = server.url(server.new_bucket())
        opts = {"db_url": f"sqlite:///{work / 'fota.db'}", "admin_token": "bench"}
        with (running_server(work / "a", blob_url=url, **opts) as a,
              running_server(work / "b", blob_url=url, **opts) as b,
              running_server(work / "c", **opts) as c):
            product = a.store.products.add("bench_key", "BENCH_LuatOS-SoC_Air8101")
            c_blobs = BlobStore(work / "c" / "blobs")
            for k in range(args.trials):
                data = build_package(args.package_size, k + 2)
                rel = a.store.releases.add(data, product_id=product.id, version=f"001.000.{k + 2:03d}")
                c_blobs.put(data)
                path = rel.download_path
                cold.append(timed_download(b.port, path, len(data)))
                warm.append(timed_download(b.port, path, len(data)))
                disk.append(timed_download(c.port, path, len(data)))
    finally:
        server.stop()
    med = {name: statistics.median(v) for name, v in (("cold", cold), ("warm", warm), ("disk", disk))}
    extra = med["cold"] - med["disk"]
    print(f"first download of a {args.package_size / 1e6:.1f} MB package, median of {args.trials} "
          "(loopback, moto S3 server)")
    print(f"  object store, cold cache (fetch + cache + serve): {med['cold']:7.1f} ms   "
          f"(max {max(cold):.1f})")
    print(f"  local directory, first read from disk:            {med['disk']:7.1f} ms")
    print(f"  object store, again (served from this instance):  {med['warm']:7.1f} ms")
    print(f"  extra for a cold cache: {extra:.1f} ms (goal < {GOAL_EXTRA_MS:g} ms); "
          f"cold/disk ratio {med['cold'] / med['disk']:.2f}x")
    return 0 if extra < GOAL_EXTRA_MS else 1


if __name__ == "__main__":
    sys.exit(main())
