"""luatos-tail: follow a LuatOS module's serial log.

Exit codes: 0 done (``--until`` matched, or ``--timeout`` ran out without ``--until``),
1 ``--timeout`` ran out before ``--until`` matched, 2 bad arguments, 3 port gone (could not be
(re)opened within ``--retries``), 130 interrupted.

Tested against ptys and pyserial URL handlers only; no board was attached while writing it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple, TextIO

import click

from luatos_common.cliconv import CONTEXT_SETTINGS, honour_no_color, use_colour, version_option
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


_LEVELS = click.Choice(["D", "I", "W", "E"], case_sensitive=False)


@click.command(context_settings=CONTEXT_SETTINGS, epilog=(
    "PORT is a device (/dev/ttyUSB0, COM5) or any pyserial URL (socket://host:port, loop://). "
    "Examples: luatos-tail --list; luatos-tail /dev/ttyUSB0 --level W; "
    "luatos-tail /dev/ttyUSB0 --until 'fota.*done' --timeout 600. Exit codes: 0 done, "
    "1 --timeout before --until matched, 2 usage, 3 port missing or gone, 130 interrupted."))
@version_option("luatos-tail")
@click.argument("port", required=False)
@click.option("--list", "list_ports", is_flag=True,
              help="List the serial ports on this machine and exit.")
@click.option("--baud", type=int, default=921600, show_default=True, help="Baud rate.")
@click.option("--probe-baud", is_flag=True,
              help="Try 921600 then 2000000 (2 s each) looking for 'luat:' or 'ap0:'.")
@click.option("--level", type=_LEVELS, default=None,
              help="Show this level and above (W shows W and E; plain prints count as I).")
@click.option("--tag", multiple=True,
              help="Show only this tag (shell pattern, repeatable), e.g. --tag fota.")
@click.option("--grep", "-g", metavar="REGEX", help="Show only records matching REGEX.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line on stdout.")
@click.option("--output", "-o", metavar="FILE",
              help="Append every received line (unfiltered) to FILE.")
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True,
              help="Colour by level (auto: only on a terminal, and not with NO_COLOR).")
@click.option("--no-time", is_flag=True, help="Do not prefix the host time.")
@click.option("--until", metavar="REGEX", help="Exit 0 as soon as a received line matches REGEX.")
@click.option("--timeout", type=float, metavar="SECONDS",
              help="Stop after SECONDS; exit 1 if --until has not matched.")
@click.option("--retries", type=int, default=None,
              help="Consecutive failed reopen attempts before giving up (default: forever on a "
                   f"device, {URL_DEFAULT_RETRIES} on a URL; -1 = forever).")
@click.option("--reconnect-delay", type=float, default=0.2, metavar="SECONDS", show_default=True,
              help="First backoff delay when reopening (doubles up to 3 s).")
@click.option("--binary", type=click.Choice(["auto", "never", "always"]), default="auto",
              show_default=True, help="0xA5 binary log frames: auto-detect, never, always.")
@click.option("--probe-window", type=float, default=2.0, hidden=True)
@click.pass_context
def cli(ctx: click.Context, **opts: Any) -> int:
    """Follow a LuatOS module's serial log: parse, filter, colour, save. Survives the port
    vanishing while the module reboots."""
    honour_no_color(ctx)
    io: _Io = ctx.obj
    args = SimpleNamespace(**opts)
    if args.list_ports:
        return _list_ports(io.out, args.as_json)
    if not args.port:
        raise click.UsageError("give the PORT to follow (luatos-tail --list shows the ports)")
    for name in ("grep", "until"):
        try:
            setattr(args, name, re.compile(getattr(args, name)) if getattr(args, name) else None)
        except re.error as e:
            raise click.BadParameter(f"bad regular expression: {e}",
                                     param_hint=f"--{name}") from None
    return _follow(args, io)


class _Io(NamedTuple):
    out: TextIO
    err: TextIO
    monotonic: Callable[[], float]


def serial_ports() -> list[Any]:
    """The serial ports pyserial finds on this machine, by device name."""
    from serial.tools import list_ports

    return sorted(list_ports.comports(), key=lambda p: p.device)


def _list_ports(out: TextIO, as_json: bool) -> int:
    ports = serial_ports()
    if as_json:
        out.write(json.dumps([{"device": p.device, "description": p.description,
                               "hwid": p.hwid} for p in ports]) + "\n")
        return EXIT_OK
    if not ports:
        out.write("no serial ports found on this machine (is the board plugged in, and does "
                  "your user have access to it?)\n")
        return EXIT_OK
    width = max(len(p.device) for p in ports)
    for p in ports:
        desc = "" if p.description in (None, "", "n/a") else p.description
        out.write(f"{p.device:<{width}}  {desc}".rstrip() + "\n")
    return EXIT_OK


def missing_port_message(port: str) -> str:
    """``port`` does not exist: say so, and name the ports that do."""
    existing = [p.device for p in serial_ports()]
    there = f"serial ports on this machine: {', '.join(existing)}" if existing else \
        "this machine has no serial ports right now (is the board plugged in?)"
    return f"{port} does not exist; {there}"


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None, monotonic: Callable[[], float] = time.monotonic) -> int:
    io = _Io(stdout or sys.stdout, stderr or sys.stderr, monotonic)
    try:
        code = cli.main(args=argv, prog_name="luatos-tail", standalone_mode=False, obj=io)
    except click.ClickException as e:
        e.show(file=io.err)
        raise SystemExit(e.exit_code) from None
    except click.exceptions.Abort:
        return EXIT_INTERRUPTED
    return int(code or 0)


def _follow(args: Any, io: _Io) -> int:
    out, err, monotonic = io
    grep, until = args.grep, args.until
    if not is_url(args.port) and not os.path.exists(args.port):
        print(f"luatos-tail: {missing_port_message(args.port)}", file=err, flush=True)
        return EXIT_PORT_GONE
    retries = args.retries
    if retries is None:
        retries = URL_DEFAULT_RETRIES if is_url(args.port) else -1
    color = use_colour(out, {"always": True, "never": False}.get(args.color)) \
        and not args.as_json
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
            if args.as_json:
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
