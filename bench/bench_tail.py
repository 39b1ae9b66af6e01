"""Lines per second through luatos-tail's pipeline (prints a table; asserts nothing).

200k synthetic device lines (Lua prints and log.* lines, C lines, SDK lines, tracebacks, some
Chinese) go through decode -> parse -> filter -> render, fed four ways:

* direct: the bytes handed to ``LogDecoder.feed`` in 4 KiB chunks (parser cost only);
* direct + filter + render: the same, plus ``--level W`` filtering and the text rendering
  of every record (what the tail prints when nothing is filtered out, then with a filter);
* binary: the same number of 0xA5 frames (printf format + args);
* loop:// and pty: a writer thread pushes the bytes through pyserial (``loop://``) or a
  pseudo-terminal while :class:`PortFollower` reads them, as the CLI does.

An Air8101 at 921600 baud can send at most ~92 KB/s, i.e. roughly 1500-2000 lines/s; the
figures say how much headroom the host has. No board is involved.
"""

from __future__ import annotations

import os
import random
import re
import sys
import threading
import time
import tty

from luatos_tools.serial_log import (
    LogDecoder,
    PortFollower,
    RecordFilter,
    encode_binary_log,
    format_record,
)

N_LINES = int(os.environ.get("BENCH_TAIL_LINES", "200000"))
WIRE_BAUD = 921600


def synthetic_lines(n: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    out: list[bytes] = []
    ms = 0
    while len(out) < n:
        ms += rng.randint(1, 40)
        r = rng.random()
        if r < 0.45:
            out.append(f"luat:U({ms}):I/user.main tick {rng.randint(0, 10**6)} heap "
                       f"{rng.randint(10**5, 10**6)}\r\n".encode())
        elif r < 0.60:
            out.append(f"luat:U({ms}):plain print {rng.random():.3f} nil true\r\n".encode())
        elif r < 0.78:
            lvl = rng.choice("DIWE")
            out.append(f"luat:{lvl}({ms}):fota:升级包类型: type=1, expected_len="
                       f"{rng.randint(1000, 99999)}\r\n".encode())
        elif r < 0.92:
            out.append(f"ap0:wifi:I({ms}):rssi -{rng.randint(30, 90)} ch {rng.randint(1, 13)}"
                       "\r\n".encode())
        else:
            out.append(f"luat:E({ms}):main:main.lua:{rng.randint(1, 300)}: attempt to index "
                       "a nil value\r\n".encode())
            out.append(b"stack traceback:\r\n")
            out.append(b"\t[C]: in function 'error'\r\n")
            out.append(b"\tmain.lua:12: in function <main.lua:10>\r\n")
    return out[:n]


def synthetic_frames(n: int, seed: int = 8) -> bytes:
    rng = random.Random(seed)
    parts = []
    for i in range(n):
        parts.append(encode_binary_log(i * 3, rng.choice("DIWE"), "net",
                                       "rssi %d dBm ch %u ssid %s", -rng.randint(30, 90),
                                       rng.randint(1, 13), "home-ap"))
    return b"".join(parts)


def chunks(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def run_direct(data: bytes, *, keep: RecordFilter | None, render: bool) -> tuple[float, int]:
    dec = LogDecoder()
    shown = 0
    t = time.perf_counter()
    for c in chunks(data):
        for rec in dec.feed(c, 0.0):
            if keep is not None and not keep(rec):
                continue
            if render:
                format_record(rec, show_time=True)
            shown += 1
    shown += len(dec.flush(0.0))
    return time.perf_counter() - t, dec.lines + dec.frames


def run_port(data: bytes, url: str, writer) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    follower = PortFollower(url, WIRE_BAUD, retries=0, read_timeout=0.05,
                            notice=lambda m: None)
    follower.open()
    dec = LogDecoder()
    keep = RecordFilter()
    got = 0
    t = time.perf_counter()
    th = threading.Thread(target=writer, args=(follower,), daemon=True)
    th.start()
    idle = 0
    while idle < 20:  # bounded: stop after ~1 s of silence once the writer is done
        d = follower.read()
        if d:
            idle = 0
            got += len(d)
            for rec in dec.feed(d, 0.0):
                if keep(rec):
                    format_record(rec)
        elif not th.is_alive():
            idle += 1
        if got >= len(data):
            break
    dec.flush(0.0)
    elapsed = time.perf_counter() - t
    follower.close()
    return elapsed, dec.lines


def run_loop(data: bytes) -> tuple[float, int]:
    def writer(f: PortFollower) -> None:
        for c in chunks(data, 16384):
            f.ser.write(c)  # type: ignore[union-attr]
    return run_port(data, "loop://", writer)


def run_pty(data: bytes) -> tuple[float, int]:
    master, slave = os.openpty()
    tty.setraw(slave)
    name = os.ttyname(slave)
    try:
        def writer(_f: PortFollower) -> None:
            for c in chunks(data, 4096):
                view = memoryview(c)
                while view:
                    n = os.write(master, view)
                    view = view[n:]
        return run_port(data, name, writer)
    finally:
        os.close(master)
        os.close(slave)


def main() -> int:
    lines = synthetic_lines(N_LINES)
    text = b"".join(lines)
    frames = synthetic_frames(N_LINES // 4)
    warn = RecordFilter(level="W")
    grep = RecordFilter(pattern=re.compile(r"expected_len=9\d{4}"))
    rows: list[tuple[str, int, int, float]] = []

    def add(name: str, nbytes: int, result: tuple[float, int]) -> None:
        secs, count = result
        rows.append((name, count, nbytes, secs))

    add("direct: decode+parse", len(text), run_direct(text, keep=None, render=False))
    add("direct: + render all", len(text), run_direct(text, keep=None, render=True))
    add("direct: + --level W + render", len(text), run_direct(text, keep=warn, render=True))
    add("direct: + --grep + render", len(text), run_direct(text, keep=grep, render=True))
    add(f"binary 0xA5 frames ({N_LINES // 4})", len(frames),
        run_direct(frames, keep=None, render=True))
    add("loop:// (pyserial: 1 byte/queue op)", len(text), run_loop(text))
    add("pty via pyserial", len(text), run_pty(text))

    print(f"luatos-tail pipeline, {N_LINES} synthetic lines ({len(text) / 1e6:.1f} MB), "
          f"python {sys.version.split()[0]}")
    print(f"{'path':<38}{'lines':>9}{'seconds':>9}{'lines/s':>11}{'MB/s':>8}{'x 921600':>10}")
    wire_bps = WIRE_BAUD / 10
    for name, count, nbytes, secs in rows:
        rate = count / secs if secs else float("inf")
        mbps = nbytes / secs / 1e6 if secs else float("inf")
        print(f"{name:<38}{count:>9}{secs:>9.2f}{rate:>11,.0f}{mbps:>8.1f}"
              f"{nbytes / secs / wire_bps:>9.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
