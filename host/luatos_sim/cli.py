"""``luatos-sim``: run a LuatOS project on the laptop and print its log in virtual time.

Exit codes: 0 when ``--for`` ended or ``--until`` matched; 1 when ``--until`` never matched;
2 for a usage or project error (missing main.lua, duplicate file names, unknown model); 3 when
the device crashed (Lua error, VM exit, watchdog reset) or fell into a reboot loop, which also
stops the run unless ``--keep-going`` (see luatos_sim.crashes).
"""

from __future__ import annotations

import json
import re
import sys
from types import SimpleNamespace
from typing import Any, TextIO

import click

from luatos_common.cliconv import CONTEXT_SETTINGS, honour_no_color, use_colour, version_option
from luatos_common.logline import SIM, C, LogRecord

from .crashes import crashes
from .device import Device, DeviceOptions, RebootLoopError, UntilTimeout
from .duration import format_ms, parse_duration
from .network_args import network_options
from .profiles import PROFILES
from .scripts import ScriptError

EXIT_OK, EXIT_NO_MATCH, EXIT_USAGE, EXIT_CRASH = 0, 1, 2, 3

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


@click.group(context_settings=CONTEXT_SETTINGS,
             epilog="Exit codes: 0 --for ended or --until matched, 1 --until never matched, "
                    "2 usage or project error, 3 the device crashed (Lua error, VM exit, watchdog) or "
                    "fell into a reboot loop.")
@version_option("luatos-sim")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run a LuatOS project (unchanged Lua scripts) on an emulated module in virtual time: a
    4-hour timer takes microseconds."""
    honour_no_color(ctx)


@cli.command("run")
@click.argument("project", required=False)
@click.option("--lib-dir", multiple=True, metavar="DIR", envvar="LUATOS_SIM_LIB_DIRS",
              help="LuatOS script libraries (e.g. a LuatOS checkout's script/libs) ahead of the "
                   "built-in stand-ins; repeatable; also $LUATOS_SIM_LIB_DIRS.")
@click.option("--model", default="Air8101", show_default=True, type=click.Choice(sorted(PROFILES)),
              help="Module profile.")
@click.option("--for", "duration", default=None, metavar="DURATION",
              help="Virtual time to run, e.g. 500ms, 10s, 10m, 4h, 30d (default: 1m, or 24h "
                   "with --until).")
@click.option("--until", default=None, metavar="REGEX",
              help="Stop when a log line matches (it may match on a later boot); exit 1 if it "
                   "never does, printing the last lines.")
@click.option("--keep-going", is_flag=True,
              help="Run on through a detected reboot loop (the exit code is still 3).")
@click.option("--state", default=None, metavar="DIR",
              help="Keep the device's flash (scripts, files, fskv, FOTA area) in DIR across runs. "
                   "Without PROJECT the device boots what DIR holds, as after a power cycle "
                   "(scripts an upgrade installed included); with PROJECT, PROJECT is flashed "
                   "first.")
@click.option("--raw", is_flag=True, help="Print the Air8101 UART form (luat:U(<ms>):...).")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line.")
@click.option("--exit-reboot-delay", default="15s", show_default=True, metavar="DURATION",
              help="Delay between a Lua VM exit and the reboot.")
@click.option("--colour/--no-colour", "--color/--no-color", "colour", default=None,
              help="Colour the output (default: on a terminal, unless NO_COLOR is set).")
@network_options
@click.pass_context
def run_cmd(ctx: click.Context, **opts: Any) -> int:
    """Boot PROJECT (a directory of .lua files, flattened by basename like the device's /luadb,
    or a script image / upgrade package file) and print every log line with its virtual time.

    Without PROJECT, boot the device kept in --state DIR as it is."""
    if opts["project"] is None and opts["state"] is None:
        raise click.UsageError("give PROJECT (a directory or a package to flash), or --state DIR "
                               "holding a device flashed by an earlier run")
    if opts["raw"] and opts["as_json"]:
        raise click.UsageError("--raw and --json exclude each other")
    args = SimpleNamespace(**opts)
    args.json = args.as_json
    args.lib_dir = list(args.lib_dir)
    return _run(args, ctx.obj)


@cli.command("models")
@click.pass_context
def models_cmd(ctx: click.Context) -> int:
    """List the module profiles (core, bsp, chip, heap, firmware modules)."""
    stream: TextIO = ctx.obj
    for name, p in sorted(PROFILES.items()):
        mods = ", ".join(sorted(p.modules))
        stream.write(f"{name}: core {p.core}, bsp {p.bsp}, chip {p.chip}, "
                     f"Lua heap {p.lua_heap} B; modules: {mods}\n")
    return EXIT_OK


def _run(args: Any, out: TextIO) -> int:
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
        print(f"luatos-sim: {args.project or args.state}: no main.lua (the device boots main.lua "
              "or main.luac)",
              file=sys.stderr)
        dev.close()
        return EXIT_USAGE
    colour = use_colour(out, args.colour)
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
        matched, note = _run_device(dev, pattern, duration, stop_at_loop=not args.keep_going)
        if matched:
            return EXIT_OK
        found = crashes(dev)
        if found:
            print(f"luatos-sim: the device crashed: {found[-1]}", file=sys.stderr)
            if len(found) > 1:
                print(f"luatos-sim: {len(found)} crashes in all; the first: {found[0]}",
                      file=sys.stderr)
            print(f"luatos-sim: the last lines that led there:\n{found[-1].excerpt}", file=sys.stderr)
            return EXIT_CRASH
        if note:
            print(f"luatos-sim: {note}", file=sys.stderr)
            return EXIT_NO_MATCH
        return EXIT_OK
    finally:
        dev.close()


def _run_device(dev: Device, pattern: re.Pattern[str] | None, duration: str,
                stop_at_loop: bool) -> tuple[bool, str]:
    """Run for ``duration`` or until ``pattern``; (matched, why not when --until failed)."""
    want = pattern if pattern is not None else (lambda rec: False)
    try:
        dev.run_until(want, within=duration, stop_on_reboot_loop=stop_at_loop)
        return True, ""
    except RebootLoopError as e:
        return False, str(e)  # with the last lines it promises
    except UntilTimeout as e:
        return False, str(e) if pattern is not None else ""


def main(argv: list[str] | None = None, out: Any = None) -> int:
    stream = out or sys.stdout
    try:
        code = cli.main(args=argv, prog_name="luatos-sim", standalone_mode=False, obj=stream)
    except click.ClickException as e:
        e.show()
        return EXIT_USAGE
    except click.exceptions.Abort:
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
