"""``luatos-pack``: build script images and upgrade packages from a project, and inspect them.

Sources are stored as ``.lua`` (the device searches ``.luac`` first, then ``.lua``, so this is
what runs); no bytecode is compiled because the vendor's 32-bit-size bytecode cannot be
produced faithfully on a 64-bit host.

Before anything is packed the project must be able to run: every ``.lua`` compiles under Lua
5.3, and main.lua sets ``PROJECT`` and ``VERSION = "xxx.yyy.zzz"`` (see
luatos_common.scriptcheck). Only device files go in (luatos_common.project: no tests, docs,
dotfiles, Python, nor what ``.luatosignore`` names). Calls into firmware the target model's
core lacks are warnings (luatos_common.apilint).

Exit codes: 0 ok, 1 a package failed inspection, 2 usage or project error (a syntax error,
a missing or ill-formed PROJECT/VERSION included).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from luatos_common import bkcrc
from luatos_common.apilint import lint_calls, load_surface
from luatos_common.cliconv import CONTEXT_SETTINGS, honour_no_color, version_option
from luatos_common.luadb import build_luadb
from luatos_common.packages import (
    AIR8101_SCRIPT_PARTITION,
    KIND_NAMES,
    MAIN_NAMES,
    Inspection,
    PackageError,
    build_air8101_ota,
    build_full,
    build_lfta,
    inspect_image,
    inspect_package,
    looks_like_image,
    vendor_filename,
)
from luatos_common.project import Excluded, ProjectError, check_image_names, classify_project
from luatos_common.scriptcheck import ScriptCheckError, read_identity, stamp_version, syntax_errors
from luatos_tools.secretscan import secret_warnings

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
DEFAULT_CORE = "V2001"
DEFAULT_CHIP = "Air8101"
_KIND_NAMES = {**KIND_NAMES, "luadb": "LuaDB image", "luadb-bkcrc": "LuaDB image, BK CRC16 framed"}


class UsageError(Exception):
    """A problem with the command line or the project; exit code 2."""


@dataclass
class LoadedProject:
    """The device files of a project (flat name -> bytes), where each came from, and what
    was left out."""

    files: dict[str, bytes]
    paths: dict[str, str]  # flat name -> path relative to the project
    excluded: list[Excluded]


def load_project(root: str) -> LoadedProject:
    """The project's device files by flat device name, after the LuaDB name and count checks."""
    try:
        found, excluded = classify_project(root)
        check_image_names(list(found))
    except ProjectError as e:
        raise UsageError(str(e) if root in str(e) else f"{root}: {e}") from None
    if not found:
        raise UsageError(f"{root}: no files to pack")
    if not any(n in found for n in MAIN_NAMES):
        raise UsageError(f"{root}: no main.lua (or main.luac); the device would not boot it")
    base = Path(root)
    return LoadedProject({name: pf.read() for name, pf in found.items()},
                         {name: pf.path.relative_to(base).as_posix() for name, pf in found.items()},
                         excluded)


def check_runnable(root: str, proj: LoadedProject, version: str | None) -> None:
    """Refuse a project a device could not run or report right (UsageError naming file:line);
    stamp ``version`` into main.lua first when given."""
    errors = syntax_errors(proj.files, proj.paths)
    if errors:
        raise UsageError("\n".join(f"{root}/{e}" for e in errors)
                         + f"\n{len(errors)} file(s) would not compile on the device (Lua 5.3)")
    main = proj.files.get("main.lua")
    if main is None:  # bytecode only: nothing to read; the device reads its own globals
        return
    where = f"{root}/{proj.paths.get('main.lua', 'main.lua')}"
    try:
        if version is not None:
            main = stamp_version(main, version, where)
            proj.files["main.lua"] = main
        read_identity(main, where)
    except ScriptCheckError as e:
        raise UsageError(str(e)) from None


def api_warnings(root: str, proj: LoadedProject, chip: str) -> list[str]:
    """Firmware calls the target model's core lacks ("needs a newer core"), as warnings."""
    surface = load_surface(chip)
    if surface is None:
        return [f"no firmware API list for {chip!r} (the emulator's profiles know Air8101, "
                "Air780E, Air8000); firmware calls not checked"]
    return [f"{root}/{f}" for f in lint_calls(proj.files, surface, proj.paths)]


def read_project_identity(main_lua: bytes, where: str) -> tuple[str, str]:
    """``PROJECT`` and ``VERSION`` from main.lua (UsageError when missing or ill-formed)."""
    try:
        ident = read_identity(main_lua, where)
    except ScriptCheckError as e:
        raise UsageError(str(e)) from None
    return ident.project, ident.version


def output_path(args: argparse.Namespace, files: dict[str, bytes]) -> Path:
    """``-o`` as given, or the vendor file name (in ``-o`` when it is a directory)."""
    out = Path(args.output) if args.output else None
    if out is not None and not out.is_dir():
        return out
    main = files.get("main.lua")
    if main is None:
        raise UsageError(f"{args.project}: naming the output needs main.lua (source) for "
                         "PROJECT and VERSION; pass -o FILE")
    project, version = read_project_identity(main, f"{args.project}/main.lua")
    try:
        name = vendor_filename(project, args.core or DEFAULT_CORE, version, args.chip)
    except ValueError as e:
        raise UsageError(f"{args.project}/main.lua: cannot name the output: {e}") from None
    return (out or Path.cwd()) / name


def _build(args: argparse.Namespace, files: dict[str, bytes]) -> tuple[bytes, str]:
    try:
        if args.command == "image":
            data = build_luadb(files)
            if args.bk_crc:
                return bkcrc.frame(data), "luadb-bkcrc"
            return data, "luadb"
        if args.command == "ota":
            return build_air8101_ota(files), "air8101-script"
        if args.command == "lfta":
            return build_lfta(files), "lfta"
        return build_full(args.core, files), "luatos-full"
    except (PackageError, ValueError) as e:
        raise UsageError(f"{args.project}: {e}") from None


def cmd_list(args: argparse.Namespace, proj: LoadedProject, out: Console) -> int:
    """``--list``: what would go into the package and what stays out, without building."""
    if args.json:
        _print_json(out, {"ok": True, "command": args.command, "project": args.project,
                          "files": [{"name": n, "path": proj.paths[n], "size": len(d)}
                                    for n, d in proj.files.items()],
                          "excluded": [{"path": e.relpath, "reason": e.reason}
                                       for e in proj.excluded]})
        return EXIT_OK
    width = max(len(n) for n in proj.files)
    out.print(f"packed ({len(proj.files)} files):", highlight=False)
    for n, d in proj.files.items():
        src = f"  ({escape(proj.paths[n])})" if proj.paths[n] != n else ""
        out.print(f"  {escape(n):<{width}}  {len(d):>8}{src}", highlight=False)
    if proj.excluded:
        out.print(f"left out ({len(proj.excluded)}):", highlight=False)
        for e in proj.excluded:
            out.print(f"  {escape(e.relpath)}  \\[{escape(e.reason)}]", highlight=False)
    return EXIT_OK


def cmd_build(args: argparse.Namespace, out: Console, err: Console) -> int:
    proj = load_project(args.project)
    if args.list:
        return cmd_list(args, proj, out)
    check_runnable(args.project, proj, args.version)
    files = proj.files
    api = api_warnings(args.project, proj, args.chip)
    data, kind = _build(args, files)
    path = output_path(args, files)
    try:
        path.write_bytes(data)
    except OSError as e:
        raise UsageError(f"{path}: cannot write: {e.strerror or e}") from None
    rep = inspect_image(data) if kind.startswith("luadb") else inspect_package(data)
    if not rep.ok:  # would be a bug in the builder; say so rather than ship it
        err.print(f"[red]internal error:[/] built package failed its own check: "
                  f"{escape(rep.failures[0].detail)}")
        return EXIT_INVALID
    warnings = [*api, *secret_warnings(files)]
    framed_len = len(data) - 1032 if kind == "air8101-script" else len(data)
    if kind in ("air8101-script", "luadb-bkcrc") and framed_len > AIR8101_SCRIPT_PARTITION:
        warnings.append(f"framed script is {framed_len} bytes; the Air8101 script partition "
                        f"holds {AIR8101_SCRIPT_PARTITION}")
    if args.json:
        _print_json(out, {"ok": True, "command": args.command, "output": str(path),
                          "format": kind, "size": len(data), "sha256": rep.sha256,
                          "files": [{"name": n, "size": s} for n, s in rep.files],
                          "warnings": warnings})
    else:
        total = sum(len(d) for d in files.values())
        out.print(f"wrote {escape(str(path))}: {_KIND_NAMES[kind]}, {len(data)} bytes, "
                  f"{len(files)} files ({total} bytes of sources)", highlight=False)
        for w in warnings:
            err.print(f"[yellow]warning:[/] {escape(w)}")
    return EXIT_OK


def _inspect_data(data: bytes) -> Inspection:
    if looks_like_image(data):
        return inspect_image(data)
    return inspect_package(data)


def inspection_json(path: str, rep: Inspection) -> dict[str, Any]:
    pkg = rep.package
    return {
        "file": path,
        "ok": rep.ok,
        "format": rep.kind,
        "format_name": _KIND_NAMES.get(rep.kind or "", "unknown"),
        "size": rep.size,
        "sha256": rep.sha256,
        "core_version": pkg.core_version if pkg else None,
        "files": [{"name": n, "size": s} for n, s in rep.files],
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in rep.checks],
        "warnings": rep.warnings,
        "details": rep.details,
    }


def cmd_inspect(args: argparse.Namespace, out: Console, err: Console) -> int:
    try:
        data = Path(args.file).read_bytes()
    except OSError as e:
        raise UsageError(f"{args.file}: {e.strerror or e}") from None
    rep = _inspect_data(data)
    failed = not rep.ok or (args.strict and rep.warnings)
    if args.json:
        doc = inspection_json(args.file, rep)
        doc["ok"] = not failed
        _print_json(out, doc)
        return EXIT_INVALID if failed else EXIT_OK
    name = _KIND_NAMES.get(rep.kind or "", "unknown format")
    out.print(f"[bold]{escape(args.file)}[/]: {name}, {rep.size} bytes", highlight=False)
    out.print(f"  sha256 {rep.sha256}", highlight=False)
    if rep.package and rep.package.core_version:
        out.print(f"  core version {rep.package.core_version}", highlight=False)
    for c in rep.checks:
        mark = "[green]ok  [/]" if c.ok else "[red]FAIL[/]"
        out.print(f"  {mark} {escape(c.name)}: {escape(c.detail)}", highlight=False)
    if rep.files:
        width = max(len(n) for n, _ in rep.files)
        out.print(f"  files ({len(rep.files)}):", highlight=False)
        for n, s in rep.files:
            out.print(f"    {escape(n):<{width}}  {s:>8}", highlight=False)
    for w in rep.warnings:
        out.print(f"  [yellow]warning:[/] {escape(w)}", highlight=False)
    if failed:
        bad = [c.name for c in rep.failures] or ["warnings (--strict)"]
        out.print(f"[red]INVALID[/]: {len(bad)} check(s) failed: {escape(', '.join(bad))}",
                  highlight=False)
        return EXIT_INVALID
    out.print("[green]OK[/]", highlight=False)
    return EXIT_OK


def _print_json(out: Console, doc: dict[str, Any]) -> None:
    out.file.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


_EPILOG = ("Before packing, every .lua must compile (Lua 5.3) and main.lua must set PROJECT and "
           "VERSION = \"xxx.yyy.zzz\"; calls into firmware the --chip's core lacks are warnings. "
           "Exit codes: 0 ok, 1 inspect found a bad field or checksum, 2 usage or project error "
           "(syntax error, bad PROJECT/VERSION included). Without -o (or with -o DIR) the output is "
           "named PROJECT_core.x.z_LuatOS-SoC_CHIP.bin from main.lua's PROJECT and VERSION.")
_JSON_HELP = "Print a JSON document on stdout."


@click.group(context_settings=CONTEXT_SETTINGS, epilog=_EPILOG)
@version_option("luatos-pack")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_context
def cli(ctx: click.Context, as_json: bool) -> None:
    """Build LuaDB script images and upgrade packages from a LuatOS project directory (one
    flat namespace of basenames), and check packages."""
    honour_no_color(ctx)
    ctx.obj["json"] = as_json


def _build_command(name: str, help_: str, core_required: bool = False,
                   bk_crc: bool = False) -> None:
    def callback(**opts: Any) -> int:
        ctx = click.get_current_context()
        args = argparse.Namespace(command=name, **{"bk_crc": False, **opts})
        args.json = opts["json"] or ctx.obj["json"]
        ctx.obj["args"] = args
        return cmd_build(args, *ctx.obj["consoles"])

    params: list[click.Parameter] = [
        click.Argument(["project"], metavar="PROJECT"),
        click.Option(["-o", "--output"], metavar="FILE",
                     help="Output file, or a directory for the vendor-named file."),
        click.Option(["--chip"], default=DEFAULT_CHIP, show_default=True,
                     help="Chip for the output name and the firmware API check."),
        click.Option(["--version"], metavar="XXX.YYY.ZZZ", default=None,
                     help="Stamp this VERSION into the packed main.lua (the project on disk is "
                          "not changed); the output name follows it."),
        click.Option(["--core"], required=True, help="Core version carried, e.g. V2002.")
        if core_required else
        click.Option(["--core"], default=DEFAULT_CORE, show_default=True,
                     help="Core for the output name."),
        click.Option(["--list"], is_flag=True,
                     help="Show which files would be packed and which stay out (tests, docs, "
                          "dotfiles, Python, .luatosignore patterns), then exit."),
        click.Option(["--json"], is_flag=True, help=_JSON_HELP),
    ]
    if bk_crc:
        params.append(click.Option(["--bk-crc"], is_flag=True,
                                   help="Add BK CRC16 framing (Air8101 script partition form)."))
    cli.add_command(click.Command(name, callback=callback, params=params, help=help_,
                                  context_settings=CONTEXT_SETTINGS))


_build_command("image", "LuaDB v2 script image of the project (what /luadb holds).", bk_crc=True)
_build_command("ota", "Air8101 script OTA package (1024 x 0xFF, 'TAUL', framed LuaDB).")
_build_command("lfta", "LFTA script package (256-byte header, gzip of the LuaDB).")
_build_command("full", "This project's full package (core version + script; emulator only).",
               core_required=True)


@cli.command("inspect", context_settings=CONTEXT_SETTINGS)
@click.argument("file", metavar="FILE")
@click.option("--strict", is_flag=True,
              help="Also fail on warnings (e.g. LuaDB record sums that differ).")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_context
def inspect_cmd(ctx: click.Context, file: str, strict: bool, as_json: bool) -> int:
    """Name a file's format, list its files with sizes and check every length, checksum and
    CRC. Exit 1 when one is wrong."""
    args = argparse.Namespace(command="inspect", file=file, strict=strict,
                              json=as_json or ctx.obj["json"])
    ctx.obj["args"] = args
    return cmd_inspect(args, *ctx.obj["consoles"])


def main(argv: Sequence[str] | None = None) -> int:
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    obj: dict[str, Any] = {"consoles": (out, err), "json": False, "args": None}
    try:
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="luatos-pack",
                        standalone_mode=False, obj=obj)
    except click.ClickException as e:
        e.show()
        raise SystemExit(e.exit_code) from None
    except click.exceptions.Abort:
        return EXIT_USAGE
    except UsageError as e:
        args = obj["args"]
        if args is not None and args.json:
            _print_json(out, {"ok": False, "command": args.command, "error": str(e)})
        else:
            err.print(f"[red]error:[/] {escape(str(e))}")
        return EXIT_USAGE
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
