"""``luatos-pack``: build script images and upgrade packages from a project, and inspect them.

Sources are stored as ``.lua`` (the device searches ``.luac`` first, then ``.lua``, so this is
what runs); no bytecode is compiled because the vendor's 32-bit-size bytecode cannot be
produced faithfully on a 64-bit host.

Exit codes: 0 ok, 1 a package failed inspection, 2 usage or project error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from luatos_common import bkcrc
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
from luatos_common.project import ProjectError, check_image_names, scan_project
from luatos_tools.secretscan import secret_warnings

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
DEFAULT_CORE = "V2001"
DEFAULT_CHIP = "Air8101"
_KIND_NAMES = {**KIND_NAMES, "luadb": "LuaDB image", "luadb-bkcrc": "LuaDB image, BK CRC16 framed"}

_ASSIGN_RE = r"""^\s*{name}\s*=\s*(?P<q>["'])(?P<v>[^"'\r\n]*)(?P=q)"""


class UsageError(Exception):
    """A problem with the command line or the project; exit code 2."""


def read_project_identity(main_lua: bytes, where: str) -> tuple[str, str]:
    """``PROJECT`` and ``VERSION`` from main.lua, found by a plain text search (not Lua)."""
    text = main_lua.decode("utf-8", "replace")
    found = {}
    for key in ("PROJECT", "VERSION"):
        m = re.search(_ASSIGN_RE.format(name=key), text, re.MULTILINE)
        if not m or not m["v"].strip():
            raise UsageError(f"{where}: no {key} = \"...\" assignment found; add one or pass "
                             "-o FILE to name the output yourself")
        found[key] = m["v"].strip()
    return found["PROJECT"], found["VERSION"]


def load_project(root: str) -> dict[str, bytes]:
    """The project's files by flat device name, after the LuaDB name and count checks."""
    try:
        files = scan_project(root)
        check_image_names(list(files))
    except ProjectError as e:
        raise UsageError(str(e) if root in str(e) else f"{root}: {e}") from None
    if not files:
        raise UsageError(f"{root}: no files to pack")
    if not any(n in files for n in MAIN_NAMES):
        raise UsageError(f"{root}: no main.lua (or main.luac); the device would not boot it")
    return {name: pf.read() for name, pf in files.items()}


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


def cmd_build(args: argparse.Namespace, out: Console, err: Console) -> int:
    files = load_project(args.project)
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
    warnings = secret_warnings(files)
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


def build_parser() -> argparse.ArgumentParser:
    # --json is accepted before or after the subcommand; the subcommand's copy must not reset
    # a value given before it, hence SUPPRESS there.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print a JSON document on stdout")
    p = argparse.ArgumentParser(
        prog="luatos-pack",
        description="Build LuaDB script images and upgrade packages from a LuatOS project "
                    "directory (one flat namespace of basenames), and check packages.",
        epilog="Exit codes: 0 ok, 1 inspect found a bad field or checksum, 2 usage or project "
               "error. Without -o (or with -o DIR) the output is named "
               "PROJECT_core.x.z_LuatOS-SoC_CHIP.bin from main.lua's PROJECT and VERSION.")
    p.add_argument("--json", action="store_true", help="print a JSON document on stdout")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def build_cmd(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common], help=help_, description=help_)
        sp.add_argument("project", metavar="PROJECT", help="project directory")
        sp.add_argument("-o", "--output", metavar="FILE",
                        help="output file, or a directory for the vendor-named file")
        sp.add_argument("--chip", default=DEFAULT_CHIP,
                        help=f"chip for the output name (default {DEFAULT_CHIP})")
        return sp

    sp = build_cmd("image", "LuaDB v2 script image of the project (what /luadb holds)")
    sp.add_argument("--bk-crc", action="store_true",
                    help="add BK CRC16 framing (Air8101 script partition form)")
    sp.add_argument("--core", default=DEFAULT_CORE, help=f"core for the output name "
                    f"(default {DEFAULT_CORE})")
    sp = build_cmd("ota", "Air8101 script OTA package (1024 x 0xFF, 'TAUL', framed LuaDB)")
    sp.add_argument("--core", default=DEFAULT_CORE, help=f"core for the output name "
                    f"(default {DEFAULT_CORE})")
    sp = build_cmd("lfta", "LFTA script package (256-byte header, gzip of the LuaDB)")
    sp.add_argument("--core", default=DEFAULT_CORE, help=f"core for the output name "
                    f"(default {DEFAULT_CORE})")
    sp = build_cmd("full", "this project's full package (core version + script; emulator only)")
    sp.add_argument("--core", required=True, help="core version carried, e.g. V2002")

    sp = sub.add_parser("inspect", parents=[common], help="name a file's format, list its "
                        "files and check every field and checksum",
                        description="Name the format, list the files with sizes and check "
                        "every length, checksum and CRC. Exit 1 when one is wrong.")
    sp.add_argument("file", metavar="FILE")
    sp.add_argument("--strict", action="store_true",
                    help="also fail on warnings (e.g. LuaDB record sums that differ)")
    return p


_COMMANDS: dict[str, Callable[[argparse.Namespace, Console, Console], int]] = {
    "image": cmd_build, "ota": cmd_build, "lfta": cmd_build, "full": cmd_build,
    "inspect": cmd_inspect,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        return _COMMANDS[args.command](args, out, err)
    except UsageError as e:
        if args.json:
            _print_json(out, {"ok": False, "command": args.command, "error": str(e)})
        else:
            err.print(f"[red]error:[/] {escape(str(e))}")
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
