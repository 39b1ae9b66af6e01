"""luatos-flash: write a LuatOS script image to an Air8101 (BK7258) through its ROM bootloader.

SOURCE is a project directory (built into a LuaDB image and BK CRC16-framed), an image file
(framed or not, detected; an Air8101 OTA package's payload is extracted), or a ``.soc`` whose
``info.json`` supplies the address, partition size, framing and baud rates (its script.bin is
flashed unless a project or ``--image`` is also given).

Exit codes: 0 done; 2 bad input; 3 no answer from the bootloader; 4 wrong chip / unknown
flash; 5 erase (or unprotect) failure; 6 write failure; 7 CRC verify failure; 8 image larger
than the script partition; 9 ``--verify-boot`` saw no boot banner; 10 serial port error;
11 baud switch refused.

No board was attached while writing this: flashing is tested against the fake bootloader
(``fakebk://`` URLs, :mod:`luatos_tools.fake_bk_rom`) only.
"""

from __future__ import annotations

import json
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple, TextIO

import click
import serial

from luatos_common.bkcrc import PackageError, bad_blocks, frame, unframe
from luatos_common.cliconv import CONTEXT_SETTINGS, honour_no_color, version_option
from luatos_common.luadb import build_luadb, looks_like_luadb
from luatos_common.project import ProjectError, scan_project

from .bk_isp import (
    BkIsp,
    BootNotSeenError,
    FlashError,
    FlashResult,
    ImageTooLargeError,
    IspTimings,
    PortError,
    flash_image,
)
from .soc import SocError, SocInfo, is_soc, parse_number, read_soc

EXIT_USAGE = 2
BOOT_MARKERS = (b"luat:", b"ap0:", b"ap1:", b"LuatOS", b"EasyFlash")
TAUL_PREFIX = 1024


class InputError(FlashError):
    exit_code, kind = EXIT_USAGE, "input"


@dataclass
class PreparedImage:
    data: bytes  # exactly what goes to flash
    origin: str  # human description
    framed: bool
    notes: tuple[str, ...] = ()


def prepare_image(raw: bytes, *, bkcrc: bool, name: str) -> PreparedImage:
    """Decide what ``raw`` is and return the bytes to flash (framed when ``bkcrc``)."""
    notes: list[str] = []
    if not raw:
        raise InputError(f"{name}: empty file")
    if (len(raw) >= TAUL_PREFIX + 8 and raw[:TAUL_PREFIX] == b"\xff" * TAUL_PREFIX
            and raw[TAUL_PREFIX:TAUL_PREFIX + 4] == b"TAUL"):
        length = struct.unpack("<I", raw[TAUL_PREFIX + 4:TAUL_PREFIX + 8])[0]
        if TAUL_PREFIX + 8 + length != len(raw):
            raise InputError(f"{name}: OTA package length field at offset 1028 says {length}, "
                             f"but {len(raw) - TAUL_PREFIX - 8} bytes follow")
        raw = raw[TAUL_PREFIX + 8:]
        notes.append("took the framed image out of an Air8101 OTA (TAUL) package")
    framed_ok = len(raw) % 34 == 0 and not bad_blocks(raw)
    if framed_ok:
        inner = unframe(raw)
        if not looks_like_luadb(inner):
            notes.append("framed image does not start with a LuaDB header")
        if bkcrc:
            return PreparedImage(raw, f"{name} (already BK CRC16-framed)", True, tuple(notes))
        return PreparedImage(inner, f"{name} (framing removed: partition is not bkcrc)", False,
                             tuple(notes))
    if looks_like_luadb(raw):
        if bkcrc:
            return PreparedImage(frame(raw), f"{name} (LuaDB, framed here)", True, tuple(notes))
        return PreparedImage(raw, f"{name} (LuaDB)", False, tuple(notes))
    why = ""
    if len(raw) % 34:
        why = f"length {len(raw)} is not a multiple of 34"
    else:
        i, off, stored, computed = bad_blocks(raw)[0]
        why = (f"framed block {i} at offset {off} has CRC 0x{stored:04X}, "
               f"computed 0x{computed:04X}")
    raise InputError(f"{name}: not a script image: no LuaDB header (01 04 5A A5 5A A5) at "
                     f"offset 0, and not BK CRC16-framed ({why})")


def build_project_image(path: Path, *, bkcrc: bool) -> PreparedImage:
    try:
        files = scan_project(path)
        luadb = build_luadb([(name, pf.read()) for name, pf in files.items()])
    except (ProjectError, PackageError, OSError) as e:
        raise InputError(f"{path}: {e}") from e
    if "main.lua" not in files and "main.luac" not in files:
        raise InputError(f"{path}: no main.lua; the device would have nothing to run")
    data = frame(luadb) if bkcrc else luadb
    return PreparedImage(data, f"project {path} ({len(files)} files, LuaDB {len(luadb)} B)",
                         bkcrc)


# --- reporting ----------------------------------------------------------------------------------


class Reporter:
    """Progress and messages: rich bar on a TTY, JSON lines with --json, plain text otherwise."""

    def __init__(self, *, json_mode: bool, out: TextIO, err: TextIO) -> None:
        self.json_mode = json_mode
        self.out = out
        self.err = err
        self._rich: Any = None
        self._task: Any = None
        self._phase = ""
        self._last_plain = ("", -1)
        if not json_mode and getattr(err, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            self._rich = Progress(TextColumn("{task.description:<8}"), BarColumn(),
                                  TextColumn("{task.completed}/{task.total}"),
                                  TimeElapsedColumn(), console=Console(file=err))

    def __enter__(self) -> Reporter:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()

    def emit(self, obj: dict[str, object]) -> None:
        self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.out.flush()

    def log(self, msg: str) -> None:
        if self.json_mode:
            self.emit({"event": "log", "message": msg})
        elif self._rich is not None:
            self._rich.console.print(msg, highlight=False, markup=False)
        else:
            print(msg, file=self.err, flush=True)

    def progress(self, phase: str, done: int, total: int) -> None:
        if self.json_mode:
            if phase != "connect" or done in (0, total):
                self.emit({"event": "progress", "phase": phase, "done": done, "total": total})
            return
        if self._rich is not None:
            if phase != self._phase or self._task is None:
                self._phase = phase
                self._task = self._rich.add_task(phase, total=total)
            self._rich.update(self._task, completed=done, total=total)
            return
        if done == total and (phase, done) != self._last_plain:
            self._last_plain = (phase, done)
            print(f"{phase}: done ({total})", file=self.err, flush=True)


# --- CLI ----------------------------------------------------------------------------------------


@click.command(context_settings=CONTEXT_SETTINGS, epilog=(
    "Exit codes: 0 ok, 2 bad input, 3 no bootloader answer, 4 wrong chip/flash, 5 erase failed, "
    "6 write failed, 7 verify failed, 8 image too large, 9 no boot banner (--verify-boot), "
    "10 serial port error, 11 baud switch refused. Try it without a board: --port fakebk://demo."))
@version_option("luatos-flash")
@click.argument("source", required=False)
@click.option("--port", "-p", required=True, help="Serial device or pyserial URL (luatos-tail "
              "--list shows the ports).")
@click.option("--image", metavar="FILE", help="An already-built image (framed or not).")
@click.option("--soc", metavar="FILE", help="Take address, sizes, framing and bauds from this .soc.")
@click.option("--addr", help="Script partition address (default: info.json or 0x200000).")
@click.option("--partition-size", help="Script partition size (default 512K).")
@click.option("--force-br", help="Baud for flashing (default: info.json or 2000000).")
@click.option("--log-br", help="Log baud for --verify-boot (default: info.json or 921600).")
@click.option("--bk-crc/--no-bk-crc", "bkcrc", default=None,
              help="BK CRC16-frame the image (Air8101 default), or flash the LuaDB unframed.")
@click.option("--verify-boot", is_flag=True,
              help="Afterwards reopen at the log baud and wait up to 20 s for a boot banner.")
@click.option("--boot-timeout", type=float, default=20.0, hidden=True)
@click.option("--reboot-cmd", is_flag=True,
              help="Also send the ROM Reboot command before leaving (optional).")
@click.option("--stay-rom", is_flag=True,
              help="Send STAY_ROM (AA 55) after LinkCheck (third-party source; optional).")
@click.option("--no-unprotect", is_flag=True, hidden=True)
@click.option("--link-rounds", type=int, default=30, show_default=True,
              help="Reset pulses before giving up.")
@click.option("--link-burst", type=int, default=200, show_default=True,
              help="LinkChecks after each reset pulse.")
@click.option("--json", "as_json", is_flag=True, help="JSON progress/result lines on stdout.")
@click.option("--dry-run", is_flag=True,
              help="Build and check the image, print the plan, do not touch the port.")
@click.pass_context
def cli(ctx: click.Context, **opts: Any) -> int:
    """Flash a LuatOS script image to an Air8101 (BK7258) over its serial bootloader (script
    partition only). SOURCE is a project directory, an image file, or a .soc (defaults from
    its info.json)."""
    honour_no_color(ctx)
    args = SimpleNamespace(**opts)
    args.json = args.as_json
    return _flash(args, ctx.obj)


def _settings(args: Any) -> tuple[SocInfo, bytes | None, str | None]:
    """Parameters (soc + overrides) and a .soc's script.bin if it is the image source."""
    soc_path = args.soc
    if soc_path is None and args.source and Path(args.source).is_file() and (
            args.source.lower().endswith(".soc") or is_soc(args.source)):
        soc_path = args.source
    info = SocInfo()
    soc_script: bytes | None = None
    if soc_path:
        bundle = read_soc(soc_path)
        info = bundle.info
        soc_script = bundle.script_bin
    over: dict[str, object] = {}
    if args.addr:
        over["script_addr"] = parse_number(args.addr, key="--addr", source="command line")
    if args.partition_size:
        over["script_size"] = parse_number(args.partition_size, key="--partition-size",
                                           source="command line")
    if args.force_br:
        over["force_br"] = parse_number(args.force_br, key="--force-br", baud=True,
                                        source="command line")
    if args.log_br:
        over["log_br"] = parse_number(args.log_br, key="--log-br", baud=True,
                                      source="command line")
    if args.bkcrc is not None:
        over["bkcrc"] = args.bkcrc
    return replace(info, **over), soc_script, soc_path  # type: ignore[arg-type]


def load_image(args: Any, info: SocInfo, soc_script: bytes | None,
               soc_path: str | None) -> PreparedImage:
    if args.image:
        try:
            raw = Path(args.image).read_bytes()
        except OSError as e:
            raise InputError(f"{args.image}: {e}") from e
        return prepare_image(raw, bkcrc=info.bkcrc, name=args.image)
    src = args.source
    if src and Path(src).is_dir():
        return build_project_image(Path(src), bkcrc=info.bkcrc)
    if src and soc_path and Path(src) == Path(soc_path):
        if soc_script is None:
            raise InputError(f"{src}: the .soc holds no script.bin; give a project or --image")
        return prepare_image(soc_script, bkcrc=info.bkcrc, name=f"{src}!script.bin")
    if src:
        try:
            raw = Path(src).read_bytes()
        except OSError as e:
            raise InputError(f"{src}: {e}") from e
        return prepare_image(raw, bkcrc=info.bkcrc, name=src)
    if soc_script is not None:
        return prepare_image(soc_script, bkcrc=info.bkcrc, name=f"{soc_path}!script.bin")
    raise InputError("nothing to flash: give a project directory, an image, or a .soc")


def open_rom_port(url: str) -> serial.SerialBase:
    if url.lower().startswith("fakebk://"):
        from . import fake_bk_rom
        fake_bk_rom.register()
    try:
        ser = serial.serial_for_url(url, do_not_open=True)
        ser.baudrate = 115200
        ser.timeout = 0.2
        ser.dtr = False
        ser.rts = False
        ser.open()
    except (serial.SerialException, OSError, ValueError) as e:
        raise PortError(f"cannot open {url}: {e}") from e
    return ser


def wait_for_boot(url: str, baud: int, timeout: float, monotonic: Callable[[], float]) -> str:
    """Reopen at the log baud and return the first line holding a boot marker."""
    from .serial_log import open_port
    try:
        ser = open_port(url, baud, 0.2)
    except (serial.SerialException, OSError, ValueError) as e:
        raise PortError(f"cannot reopen {url} at {baud} for --verify-boot: {e}") from e
    got = bytearray()
    try:
        deadline = monotonic() + timeout
        while monotonic() < deadline:
            got += ser.read(max(1, min(ser.in_waiting, 4096)))
            for marker in BOOT_MARKERS:
                i = got.find(marker)
                if i >= 0:
                    start = got.rfind(b"\n", 0, i) + 1
                    end = got.find(b"\n", i)
                    return bytes(got[start:end if end >= 0 else len(got)]).decode(
                        "utf-8", "replace").strip()
    finally:
        ser.close()
    tail = bytes(got[-80:]).decode("utf-8", "replace")
    raise BootNotSeenError(
        f"flashed, but saw none of luat:/ap0:/ap1:/LuatOS/EasyFlash within {timeout:g} s at "
        f"{baud} baud (last bytes: {tail!r}). Check the log baud (--log-br) and the script.")


class _Io(NamedTuple):
    out: TextIO
    err: TextIO
    sleep: Callable[[float], None] | None
    monotonic: Callable[[], float] | None


def main(argv: list[str] | None = None, *, sleep: Callable[[float], None] | None = None,
         monotonic: Callable[[], float] | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    io = _Io(stdout or sys.stdout, stderr or sys.stderr, sleep, monotonic)
    try:
        code = cli.main(args=argv, prog_name="luatos-flash", standalone_mode=False, obj=io)
    except click.ClickException as e:
        e.show(file=io.err)
        raise SystemExit(e.exit_code) from None
    except click.exceptions.Abort:
        return 130
    return int(code or 0)


def _flash(args: Any, io: _Io) -> int:
    out, err, sleep, monotonic = io
    clock = monotonic or time.monotonic
    timings = IspTimings(sleep=sleep or time.sleep, monotonic=clock,
                         link_rounds=max(1, args.link_rounds), link_burst=max(1, args.link_burst))
    rep = Reporter(json_mode=args.json, out=out, err=err)
    result: FlashResult | None = None
    info: SocInfo | None = None
    image: PreparedImage | None = None
    banner = None
    isp: BkIsp | None = None
    try:
        try:
            info, soc_script, soc_path = _settings(args)
            image = load_image(args, info, soc_script, soc_path)
        except SocError as e:
            raise InputError(str(e)) from e
        for note in image.notes:
            rep.log(f"note: {note}")
        if len(image.data) > info.script_size:
            raise ImageTooLargeError(
                f"image is {len(image.data)} bytes ({image.origin}) but the script partition "
                f"at 0x{info.script_addr:X} holds {info.script_size} bytes")
        rep.log(f"image: {image.origin}, {len(image.data)} bytes -> 0x{info.script_addr:X} "
                f"(partition {info.script_size // 1024} KiB, flash at {info.force_br} baud)")
        if args.dry_run:
            if args.json:
                rep.emit({"event": "result", "ok": True, "dry_run": True,
                          "bytes": len(image.data), "addr": f"0x{info.script_addr:X}",
                          "exit_code": 0})
            return 0
        port = open_rom_port(args.port)
        with rep:
            isp = BkIsp(port, timings, log=rep.log, progress=rep.progress)
            result = flash_image(isp, image.data, info.script_addr, baud=info.force_br,
                                 unprotect=not args.no_unprotect, reboot_cmd=args.reboot_cmd,
                                 stay_rom=args.stay_rom)
        rep.log(f"flashed {len(image.data)} bytes at 0x{info.script_addr:X}; module rebooted")
        if args.verify_boot:
            banner = wait_for_boot(args.port, info.log_br, args.boot_timeout, clock)
            rep.log(f"boot seen: {banner}")
    except FlashError as e:
        if args.json:
            obj: dict[str, object] = {"event": "result", "ok": False, "kind": e.kind,
                                      "error": str(e), "exit_code": e.exit_code}
            if isp is not None and isp.result.mid:
                obj["mid"] = f"0x{isp.result.mid:06X}"
            rep.emit(obj)
        else:
            print(f"luatos-flash: error: {e}", file=err, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        print("luatos-flash: interrupted", file=err)
        return 130
    if args.json and result is not None and info is not None and image is not None:
        rep.emit({"event": "result", "ok": True, "exit_code": 0, "mid": f"0x{result.mid:06X}",
                  "addr": f"0x{info.script_addr:X}", "bytes": len(image.data),
                  "sectors": result.sectors, "baud": result.baud,
                  "crc": None if result.crc is None else f"0x{result.crc:08X}",
                  "crc_variant": result.crc_variant, "sr_before": result.sr_before,
                  "sr_after": result.sr_after, "warnings": result.warnings, "boot": banner})
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
