"""luatos-tail: follow a LuatOS module's serial log.

Exit codes: 0 done (``--until`` matched, or ``--timeout`` ran out without ``--until``),
1 ``--timeout`` ran out before ``--until`` matched, 2 bad arguments, 3 port gone (could not be
(re)opened within ``--retries``), 130 interrupted.

Tested against ptys and pyserial URL handlers only; no board was attached while writing it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable
from typing import TextIO

from luatos_common.logline import LogRecord

from .serial_log import (
    LogDecoder,
    PortFollower,
    PortGone,
    RecordFilter,
    format_record,
    is_url,
    probe_baud,
)

EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, EXIT_PORT_GONE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
URL_DEFAULT_RETRIES = 10


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="luatos-tail",
        description="Follow a LuatOS module's serial log: parse, filter, colour, save. "
                    "Survives the port vanishing while the module reboots.",
        epilog="PORT is a device (/dev/ttyUSB0, COM5) or any pyserial URL (socket://host:port, "
               "loop://). Examples: luatos-tail /dev/ttyUSB0 --level W; "
               "luatos-tail /dev/ttyUSB0 --until 'fota.*done' --timeout 600")
    p.add_argument("port", help="serial device or pyserial URL")
    p.add_argument("--baud", type=int, default=921600, help="baud rate (default 921600)")
    p.add_argument("--probe-baud", action="store_true",
                   help="try 921600 then 2000000 (2 s each) looking for 'luat:' or 'ap0:'")
    p.add_argument("--level", choices=["D", "I", "W", "E", "d", "i", "w", "e"],
                   help="show this level and above (W shows W and E; plain prints count as I)")
    p.add_argument("--tag", action="append", default=[],
                   help="show only this tag (shell pattern, repeatable), e.g. --tag fota")
    p.add_argument("--grep", "-g", metavar="REGEX", help="show only records matching REGEX")
    p.add_argument("--json", action="store_true", help="one JSON record per line on stdout")
    p.add_argument("--output", "-o", metavar="FILE",
                   help="append every received line (unfiltered) to FILE")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="colour by level (auto: only on a terminal, and not with NO_COLOR)")
    p.add_argument("--no-time", action="store_true", help="do not prefix the host time")
    p.add_argument("--until", metavar="REGEX",
                   help="exit 0 as soon as a received line matches REGEX")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="stop after SECONDS; exit 1 if --until has not matched")
    p.add_argument("--retries", type=int, default=None,
                   help="consecutive failed reopen attempts before giving up "
                        f"(default: forever on a device, {URL_DEFAULT_RETRIES} on a URL; -1 = forever)")
    p.add_argument("--reconnect-delay", type=float, default=0.2, metavar="SECONDS",
                   help="first backoff delay when reopening (doubles up to 3 s)")
    p.add_argument("--binary", choices=["auto", "never", "always"], default="auto",
                   help="0xA5 binary log frames: auto-detect (default), never, always")
    p.add_argument("--probe-window", type=float, default=2.0, help=argparse.SUPPRESS)
    return p


def _use_color(choice: str, stream: TextIO) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None, monotonic: Callable[[], float] = time.monotonic) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        grep = re.compile(args.grep) if args.grep else None
        until = re.compile(args.until) if args.until else None
    except re.error as e:
        parser.error(f"bad regular expression: {e}")
    retries = args.retries
    if retries is None:
        retries = URL_DEFAULT_RETRIES if is_url(args.port) else -1
    color = _use_color(args.color, out) and not args.json
    keep = RecordFilter(args.level.upper() if args.level else None, tuple(args.tag), grep)

    def notice(msg: str) -> None:
        print(f"luatos-tail: {msg}", file=err, flush=True)

    matched = False
    out_file = open(args.output, "a", encoding="utf-8") if args.output else None  # noqa: SIM115

    def on_line(line: str) -> None:
        nonlocal matched
        if out_file is not None:
            out_file.write(line + "\n")
        if until is not None and not matched and until.search(line):
            matched = True

    decoder = LogDecoder(on_line=on_line, binary=args.binary)
    follower = PortFollower(args.port, args.baud, retries=None if retries < 0 else retries,
                            delay=args.reconnect_delay, notice=notice,
                            on_reconnect=lambda: show(decoder.flush(time.time())))

    def show(records: list[LogRecord]) -> None:
        for rec in records:
            if not keep(rec):
                continue
            if args.json:
                out.write(rec.to_json() + "\n")
            else:
                out.write(format_record(rec, color=color, show_time=not args.no_time) + "\n")
        if records:
            out.flush()
        if out_file is not None:
            out_file.flush()

    deadline = monotonic() + args.timeout if args.timeout is not None else None
    code = EXIT_OK
    try:
        follower.open()
        if args.probe_baud:
            baud, first = probe_baud(follower, window=args.probe_window, monotonic=monotonic)
            if baud is None:
                notice(f"no 'luat:' or 'ap0:' at 921600 or 2000000; using {args.baud}")
                follower.set_baud(args.baud)
            else:
                notice(f"log baud is {baud}")
                show(decoder.feed(first, time.time()))
        while not matched:
            if deadline is not None and monotonic() >= deadline:
                code = EXIT_TIMEOUT if until is not None else EXIT_OK
                break
            data = follower.read()
            now = time.time()
            show(decoder.feed(data, now) if data else decoder.idle(now))
        show(decoder.flush(time.time()))
    except PortGone as e:
        show(decoder.flush(time.time()))
        notice(str(e))
        code = EXIT_PORT_GONE
    except KeyboardInterrupt:
        show(decoder.flush(time.time()))
        code = EXIT_INTERRUPTED
    finally:
        follower.close()
        if out_file is not None:
            out_file.close()
    if decoder.bad_frames:
        notice(f"{decoder.bad_frames} damaged binary frame(s) skipped")
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
