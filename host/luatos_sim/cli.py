"""``luatos-sim``: run a LuatOS project on the laptop and print its log in virtual time.

Exit codes: 0 when ``--for`` ended or ``--until`` matched; 1 when ``--until`` never matched;
2 for a usage or project error (missing main.lua, duplicate file names, unknown model).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, TextIO

from luatos_common.logline import SIM, C, LogRecord

from .device import Device, DeviceOptions, RebootLoopError, UntilTimeout
from .duration import format_ms, parse_duration
from .profiles import PROFILES
from .scripts import ScriptError

EXIT_OK, EXIT_NO_MATCH, EXIT_USAGE = 0, 1, 2

_COLOURS = {"E": "\033[31m", "W": "\033[33m", "I": "\033[32m", "D": "\033[2m"}
_RESET = "\033[0m"


def device_line(rec: LogRecord) -> str:
    """A record as the device prints it (C lines as ``D/tag text``)."""
    if rec.source == C:
        return f"{rec.level}/{rec.tag} {rec.text}"
    if rec.source == SIM:
        return f"[luatos-sim] {rec.text}"
    return rec.line


class Printer:
    def __init__(self, out: TextIO, mode: str, colour: bool) -> None:
        self.out = out
        self.mode = mode
        self.colour = colour

    def __call__(self, rec: LogRecord) -> None:
        if self.mode == "json":
            d = json.loads(rec.to_json())
            d["time"] = format_ms(rec.device_ms or 0)
            self.out.write(json.dumps(d, ensure_ascii=False) + "\n")
            return
        if self.mode == "raw":
            text = rec.uart()
        else:
            text = f"[{format_ms(rec.device_ms or 0):>14}] {device_line(rec)}"
        if self.colour and rec.level in _COLOURS:
            text = _COLOURS[rec.level] + text + _RESET
        self.out.write(text + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="luatos-sim",
        description="Run a LuatOS project (unchanged Lua scripts) on an emulated module in "
                    "virtual time: a 4-hour timer takes microseconds.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="boot a project and print its log",
        description="Boot PROJECT (a directory of .lua files, flattened by basename like the "
                    "device's /luadb) and print every log line with its virtual time.")
    run.add_argument("project", help="project directory holding main.lua, or a script image / "
                     "upgrade package file (luatos-pack image/ota output)")
    run.add_argument("--lib-dir", action="append", default=[], metavar="DIR",
                     help="LuatOS script libraries (e.g. a LuatOS checkout's script/libs) ahead "
                          "of the built-in stand-ins; repeatable; also $LUATOS_SIM_LIB_DIRS")
    run.add_argument("--model", default="Air8101", choices=sorted(PROFILES),
                     help="module profile (default: %(default)s)")
    run.add_argument("--for", dest="duration", default=None, metavar="DURATION",
                     help="virtual time to run, e.g. 500ms, 10s, 10m, 4h, 30d "
                          "(default: 1m, or 24h with --until)")
    run.add_argument("--until", default=None, metavar="REGEX",
                     help="stop when a log line matches (it may match on a later boot); "
                          "exit 1 if it never does")
    run.add_argument("--state", default=None, metavar="DIR",
                     help="keep the device's flash (files, fskv, staged FOTA) in DIR across runs")
    fmt = run.add_mutually_exclusive_group()
    fmt.add_argument("--raw", action="store_true",
                     help="print the Air8101 UART form (luat:U(<ms>):...)")
    fmt.add_argument("--json", action="store_true", help="one JSON record per line")
    run.add_argument("--exit-reboot-delay", default="15s", metavar="DURATION",
                     help="delay between a Lua VM exit and the reboot (default: %(default)s)")
    run.add_argument("--no-colour", "--no-color", dest="colour", action="store_false",
                     default=None, help="never colour the output")
    try:
        from .network_args import add_network_arguments
    except ImportError:
        pass
    else:
        add_network_arguments(run)
    sub.add_parser("models", help="list the module profiles")
    return parser


def _run(args: argparse.Namespace, out: TextIO) -> int:
    try:
        duration = args.duration or ("24h" if args.until else "1m")
        parse_duration(duration)  # refused here, as a usage error, rather than mid-run
        delay = parse_duration(args.exit_reboot_delay)
        pattern = re.compile(args.until) if args.until else None
    except (ValueError, re.error) as e:
        print(f"luatos-sim: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        dev = Device(args.project, model=args.model, lib_dirs=args.lib_dir,
                     state_dir=args.state, options=DeviceOptions(exit_reboot_delay_ms=delay))
    except (ScriptError, OSError, ValueError) as e:
        print(f"luatos-sim: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not {"main.lua", "main.luac"} & set(dev.image_files()):
        print(f"luatos-sim: {args.project}: no main.lua (the device boots main.lua or main.luac)",
              file=sys.stderr)
        dev.close()
        return EXIT_USAGE
    colour = args.colour if args.colour is not None else out.isatty()
    mode = "json" if args.json else ("raw" if args.raw else "text")
    dev.add_listener(Printer(out, mode, colour))
    try:
        from .network_args import apply_network_arguments
    except ImportError:
        pass
    else:
        try:
            apply_network_arguments(dev, args)
        except ValueError as e:
            print(f"luatos-sim: {e}", file=sys.stderr)
            dev.close()
            return EXIT_USAGE
    try:
        if pattern is None:
            dev.run_for(duration)
            return EXIT_OK
        try:
            dev.run_until(pattern, within=duration, stop_on_reboot_loop=False)
            return EXIT_OK
        except (UntilTimeout, RebootLoopError) as e:
            print(f"luatos-sim: {str(e).splitlines()[0]}", file=sys.stderr)
            return EXIT_NO_MATCH
    finally:
        dev.close()


def main(argv: list[str] | None = None, out: Any = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    stream = out or sys.stdout
    if args.command == "models":
        for name, p in sorted(PROFILES.items()):
            mods = ", ".join(sorted(p.modules))
            stream.write(f"{name}: core {p.core}, bsp {p.bsp}, chip {p.chip}, "
                         f"Lua heap {p.lua_heap} B; modules: {mods}\n")
        return EXIT_OK
    try:
        return _run(args, stream)
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
