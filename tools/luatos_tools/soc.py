"""Read a LuatOS firmware bundle (``.soc``) or its ``info.json`` for the flashing parameters.

A ``.soc`` is a ZIP that carries, next to the firmware, the numbers a flasher needs: where the
script partition starts, how large it is, whether the chip wants BK CRC16 framing, and which
baud rates to use. Files in the wild leave keys out and spell numbers as ints, hex strings or
``"2M"``; every missing key falls back to the Air8101 default (docs/formats.md, behaviour.md §12), and a
value we cannot read is an error that names the key and the value instead of a silent default.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CHIP = "bk72xx"
DEFAULT_SCRIPT_ADDR = 0x200000
DEFAULT_BL_ADDR = 0x0
DEFAULT_FORCE_BR = 2_000_000
DEFAULT_LOG_BR = 921_600
DEFAULT_SCRIPT_SIZE = 512 * 1024
DEFAULT_BKCRC = True

# rom.fs.script.size: values this small are KiB (Luatools writes 512), larger ones are bytes.
_KIB_LIMIT = 64 * 1024


class SocError(ValueError):
    """A .soc or info.json we cannot use; the message names the file, key and value."""


@dataclass(frozen=True)
class SocInfo:
    """The flashing parameters of one firmware bundle, defaults already applied."""

    chip_type: str = DEFAULT_CHIP
    script_addr: int = DEFAULT_SCRIPT_ADDR
    bl_addr: int = DEFAULT_BL_ADDR
    force_br: int = DEFAULT_FORCE_BR
    log_br: int = DEFAULT_LOG_BR
    script_size: int = DEFAULT_SCRIPT_SIZE
    bkcrc: bool = DEFAULT_BKCRC
    script_bitw: int | None = None
    use_luac: bool | None = None
    use_debug: bool | None = None
    versions: dict[str, str] = field(default_factory=dict)  # hints only (UNCONFIRMED)
    defaulted: tuple[str, ...] = ()  # the keys that were missing


_NUM_RE = re.compile(r"^\s*(0x[0-9a-f]+|\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*$", re.I)
_SCALE = {"": 1, "k": 1024, "m": 1024 * 1024, "g": 1024 ** 3}
_BAUD_SCALE = {"": 1, "k": 1000, "m": 1_000_000, "g": 1_000_000_000}


def parse_number(value: Any, *, key: str, baud: bool = False, source: str = "info.json") -> int:
    """An int from an int, ``"0x200000"``, ``"921600"``, ``"2M"`` (baud: 2000000) or ``"512K"``."""
    if isinstance(value, bool):
        raise SocError(f"{source}: {key} = {value!r} is a boolean, expected a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = _NUM_RE.match(value)
        if m:
            num, suffix = m[1], m[2].lower()
            base = int(num, 16) if num.lower().startswith("0x") else float(num)
            scale = (_BAUD_SCALE if baud else _SCALE)[suffix]
            return int(base * scale)
    raise SocError(f"{source}: {key} = {value!r} is not a number")


def _lookup(info: dict[str, Any], dotted: str) -> Any:
    node: Any = info
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _as_bool(value: Any, key: str, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise SocError(f"{source}: {key} = {value!r} is not a boolean")


def parse_info(info: dict[str, Any], *, source: str = "info.json") -> SocInfo:
    """The :class:`SocInfo` of a parsed ``info.json``, with the defaults of docs/formats.md."""
    if not isinstance(info, dict):
        raise SocError(f"{source}: top level is {type(info).__name__}, expected an object")
    missing: list[str] = []

    def get(key: str) -> Any:
        v = _lookup(info, key)
        if v is None or v == "":
            missing.append(key)
        return v

    chip = get("chip.type")
    addr = get("download.script_addr")
    bl = get("download.bl_addr")
    force = get("download.force_br")
    log_br = get("user.log_br")
    size = get("rom.fs.script.size")
    bkcrc = get("rom.fs.script.bkcrc")
    script_size = DEFAULT_SCRIPT_SIZE
    if size not in (None, ""):
        script_size = parse_number(size, key="rom.fs.script.size", source=source)
        if not isinstance(size, str) or not re.search(r"[kmg]", size, re.I):
            if script_size < _KIB_LIMIT:  # Luatools writes the size in KiB
                script_size *= 1024
    if script_size <= 0:
        raise SocError(f"{source}: rom.fs.script.size = {size!r} must be positive")
    versions = {}
    for key in ("rom.version-core", "user.project", "user.version"):
        v = _lookup(info, key)
        if v not in (None, ""):
            versions[key] = str(v)
    bitw = _lookup(info, "script.bitw")
    use_luac = _lookup(info, "script.use-luac")
    use_debug = _lookup(info, "script.use-debug")
    return SocInfo(
        chip_type=str(chip) if chip not in (None, "") else DEFAULT_CHIP,
        script_addr=(parse_number(addr, key="download.script_addr", source=source)
                     if addr not in (None, "") else DEFAULT_SCRIPT_ADDR),
        bl_addr=(parse_number(bl, key="download.bl_addr", source=source)
                 if bl not in (None, "") else DEFAULT_BL_ADDR),
        force_br=(parse_number(force, key="download.force_br", baud=True, source=source)
                  if force not in (None, "") else DEFAULT_FORCE_BR),
        log_br=(parse_number(log_br, key="user.log_br", baud=True, source=source)
                if log_br not in (None, "") else DEFAULT_LOG_BR),
        script_size=script_size,
        bkcrc=(_as_bool(bkcrc, "rom.fs.script.bkcrc", source)
               if bkcrc not in (None, "") else DEFAULT_BKCRC),
        script_bitw=(parse_number(bitw, key="script.bitw", source=source)
                     if bitw not in (None, "") else None),
        use_luac=_as_bool(use_luac, "script.use-luac", source) if use_luac is not None else None,
        use_debug=(_as_bool(use_debug, "script.use-debug", source)
                   if use_debug is not None else None),
        versions=versions,
        defaulted=tuple(missing),
    )


@dataclass(frozen=True)
class SocBundle:
    """What a .soc holds that the script flasher needs."""

    path: Path
    info: SocInfo
    script_bin: bytes | None  # the bundled script image, if any
    members: tuple[str, ...]


def read_info_json(path: str | Path) -> SocInfo:
    p = Path(path)
    try:
        data = json.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SocError(f"{p}: cannot read info.json: {e}") from e
    return parse_info(data, source=str(p))


def read_soc(path: str | Path) -> SocBundle:
    """Open a ``.soc`` (ZIP) and read its ``info.json`` and ``script.bin``."""
    p = Path(path)
    try:
        zf = zipfile.ZipFile(p)
    except (OSError, zipfile.BadZipFile) as e:
        raise SocError(f"{p}: not a .soc (ZIP) file: {e}") from e
    with zf:
        names = tuple(zf.namelist())
        by_base = {n.rsplit("/", 1)[-1]: n for n in names}
        if "info.json" not in by_base:
            raise SocError(f"{p}: no info.json inside (members: {', '.join(names[:8])})")
        try:
            raw = json.loads(zf.read(by_base["info.json"]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SocError(f"{p}: info.json is not valid JSON: {e}") from e
        info = parse_info(raw, source=f"{p}!info.json")
        script = zf.read(by_base["script.bin"]) if "script.bin" in by_base else None
    return SocBundle(p, info, script, names)


def is_soc(path: str | Path) -> bool:
    """A ZIP file (``PK`` magic), which is how a .soc starts."""
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"PK"
    except OSError:
        return False
