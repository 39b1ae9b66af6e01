"""How fast luatos-pack builds and checks a ~1 MB project (prints a table; asserts nothing).

Runs the CLI in-process (``luatos_tools.pack_cli.main``) so that interpreter start-up does not
hide the packing cost; a last row times one end-to-end ``luatos-pack ota`` subprocess.
"""

from __future__ import annotations

import contextlib
import io
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from luatos_common.packages import StreamValidator
from luatos_tools.pack_cli import main as pack_main

RUNS = 5
TARGET_BYTES = 1 << 20


def make_project(root: Path, target: int = TARGET_BYTES, seed: int = 1) -> int:
    """Lua-looking sources spread over sub-directories; returns the total source size."""
    rng = random.Random(seed)
    words = ["local", "function", "end", "return", "sys.wait", "log.info", "if", "then",
             "http.request", "json.encode", "for", "do", "nil", "true", "false", "=", "..",
             "(", ")", "{", "}", "\n"]
    (root / "main.lua").write_text('PROJECT = "benchproj"\nVERSION = "001.000.007"\n'
                                   'sys.run()\n')
    total = (root / "main.lua").stat().st_size
    i = 0
    while total < target:
        d = root / f"dir{i % 8}"
        d.mkdir(exist_ok=True)
        size = rng.randint(1000, 12000)
        text = " ".join(rng.choice(words) + (str(rng.randint(0, 999)) if rng.random() < .2
                                             else "") for _ in range(size // 5))[:size]
        (d / f"mod{i:03d}.lua").write_text(text)
        total += len(text)
        i += 1
    return total


def timed(argv: list[str]) -> float:
    runs = []
    for _ in range(RUNS):
        sink = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            code = pack_main(argv)
        runs.append(time.perf_counter() - t0)
        if code != 0:
            raise SystemExit(f"luatos-pack {' '.join(argv)} exited {code}: {sink.getvalue()}")
    return statistics.median(runs)


def timed_stream(data: bytes, chunk: int = 4096) -> float:
    """The emulator's fota path: feed 4 KiB chunks, then finish (full validation)."""
    runs = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        v = StreamValidator()
        for i in range(0, len(data), chunk):
            v.feed(data[i:i + chunk])
        v.finish()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "proj"
        root.mkdir()
        src = make_project(root)
        nfiles = sum(1 for _ in root.rglob("*.lua"))
        img, ota = Path(tmp) / "img.bin", Path(tmp) / "ota.bin"
        rows = [
            ("image --bk-crc", timed(["image", str(root), "--bk-crc", "-o", str(img)]), src),
            ("ota", timed(["ota", str(root), "-o", str(ota)]), src),
        ]
        rows.append(("inspect (ota file)", timed(["inspect", str(ota)]), ota.stat().st_size))
        rows.append(("stream-validate ota", timed_stream(ota.read_bytes()), ota.stat().st_size))
        exe = Path(sys.executable).parent / "luatos-pack"
        t0 = time.perf_counter()
        subprocess.run([str(exe), "ota", str(root), "-o", str(ota)], check=True,
                       capture_output=True)
        rows.append(("ota, whole process", time.perf_counter() - t0, src))
        print(f"project: {nfiles} files, {src / 1e6:.2f} MB of sources; "
              f"ota package {ota.stat().st_size / 1e6:.2f} MB; median of {RUNS} runs")
        print(f"{'step':<22}{'seconds':>10}{'MB/s':>10}")
        for name, secs, nbytes in rows:
            print(f"{name:<22}{secs:>10.3f}{nbytes / 1e6 / secs:>10.1f}")


if __name__ == "__main__":
    main()
