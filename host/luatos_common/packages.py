"""Upgrade packages: recognise, validate, inspect and build them.

One module for every format the project meets (behaviour.md §10), because the emulator's ``fota``
module, the server's upload check and ``luatos-pack`` must agree byte for byte on what a good
package is. Validation is strict and every refusal names the format, the field, the offset and
what was expected versus found; ``inspect_package`` runs the same checks but keeps going past
checksum failures so that a person sees every damaged block at once.

Formats (``Package.kind``):

* ``air8101-script`` - the vendor Air8101 script OTA ("TAUL", docs/formats.md);
* ``lfta`` - the 2021 LFTA script package (docs/formats.md);
* ``ec`` - EC618/EC7xx packages (docs/formats.md), validated for the server only;
* ``luatos-full`` - this project's own core+script package (see ``docs/formats.md``); the
  vendor's full-firmware layout is not public, so the emulator uses this one.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import bkcrc
from .bkcrc import PackageError
from .luadb import LuadbImage, build_luadb, looks_like_luadb, parse_luadb_image

__all__ = [
    "PackageError", "Package", "Check", "Inspection", "StreamValidator", "VendorName",
    "KIND_AIR8101", "KIND_LFTA", "KIND_EC", "KIND_FULL", "ALL_KINDS", "DEVICE_KINDS",
    "detect_and_validate", "inspect_package", "build_air8101_ota", "build_lfta", "build_full",
    "build_ec_script", "parse_vendor_filename", "vendor_filename",
    "AIR8101_SCRIPT_PARTITION", "KIND_NAMES", "inspect_image", "is_framed_image", "looks_like_image",
]

KIND_AIR8101 = "air8101-script"
KIND_LFTA = "lfta"
KIND_EC = "ec"
KIND_FULL = "luatos-full"
ALL_KINDS = (KIND_AIR8101, KIND_LFTA, KIND_EC, KIND_FULL)
#: What a device-side stream (the emulator's fota) accepts by default: EC is server-only.
DEVICE_KINDS = (KIND_AIR8101, KIND_LFTA, KIND_FULL)

AIR8101_SCRIPT_PARTITION = 512 * 1024  # script partition size at 0x200000 (framed bytes)

# --- Air8101 TAUL (docs/formats.md)
TAUL_PREFIX_LEN = 1024
TAUL_MAGIC = b"TAUL"
TAUL_HEADER_LEN = TAUL_PREFIX_LEN + 8
# --- LFTA (docs/formats.md)
LFTA_MAGIC = b"LFTA"
LFTA_HEADER_LEN = 256
LFTA_FIELD2 = 0x10
LFTA_TYPE_SCRIPT = 1
LFTA_MAX_UNPACKED = 16 * 1024 * 1024  # far above any script partition; stops gzip bombs
# --- EC family (docs/formats.md)
EC618_MAGIC = 0xEAF18C16
EC7XX_MAGIC = 0xEAC37218
EC_MAGICS = {EC618_MAGIC: "EC618", EC7XX_MAGIC: "EC7xx"}
EC_HEADER_LEN = 92
EC_SECTOR_HEADER_LEN = 36
EC_BLOCK_LEN = 0x40000
EC_SECTOR_MAGIC = 0x4C554131  # ours ("1AUL" LE); the vendor value is not public and unchecked
# --- this project's full package (docs/formats.md)
FULL_MAGIC = b"LKFP"
FULL_FORMAT_VERSION = 1
FULL_HEADER_LEN = 80
FULL_CORE_FIELD = 16
_FULL_HEADER = struct.Struct("<4sHH16sII32s12sI")
assert _FULL_HEADER.size == FULL_HEADER_LEN

MAIN_NAMES = ("main.luac", "main.lua")
KIND_NAMES = {KIND_AIR8101: "Air8101 TAUL package", KIND_LFTA: "LFTA package",
          KIND_EC: "EC package", KIND_FULL: "luatos-full package"}
_NAMES = KIND_NAMES  # older spelling, still imported by callers


@dataclass
class Package:
    """A validated package. ``files`` is the script image's files (None when not a script)."""

    kind: str
    size: int
    sha256: str
    files: dict[str, bytes] | None
    core_version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def has_main(self) -> bool:
        files = self.files or {}
        return any(n in files for n in MAIN_NAMES)


@dataclass
class Check:
    """One verified property of a package, for ``luatos-pack inspect``."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class Inspection:
    """Everything ``inspect_package`` found: the checks that ran and how they came out."""

    kind: str | None
    size: int
    sha256: str
    checks: list[Check]
    warnings: list[str]
    package: Package | None  # set when every check passed
    files: list[tuple[str, int]]  # what could be listed even if a check failed
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.package is not None and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


class _Ctx:
    """Collects check results; in strict mode the first failure is raised at once."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.checks: list[Check] = []
        self.warnings: list[str] = []
        self.files: list[tuple[str, int]] = []
        self.details: dict[str, Any] = {}

    def check(self, name: str, ok: bool, err: Callable[[], PackageError],
              detail: str = "") -> bool:
        if ok:
            self.checks.append(Check(name, True, detail))
            return True
        e = err()
        if self.strict:
            raise e
        self.checks.append(Check(name, False, str(e)))
        return False

    def require(self, name: str, ok: bool, err: Callable[[], PackageError],
                detail: str = "") -> None:
        """A check the rest of the validation cannot go on without."""
        if not self.check(name, ok, err, detail):
            raise _Stop()


class _Stop(Exception):
    pass


# ---------------------------------------------------------------------------------- detection


def _detect_kind(data: bytes) -> str:
    if not data:
        raise PackageError("package", "size", 0, "at least 1 byte", "0 bytes (empty file)")
    head4 = data[:4]
    if head4 == LFTA_MAGIC:
        return KIND_LFTA
    if head4 == FULL_MAGIC:
        return KIND_FULL
    if len(data) >= 4 and struct.unpack("<I", head4)[0] in EC_MAGICS:
        return KIND_EC
    if data[0] == 0xFF:
        return KIND_AIR8101
    if data[:2] == b"PK":
        raise PackageError("package", "magic", 0, "a package", "a ZIP archive",
                           "a .soc firmware bundle is not an OTA package; upload the "
                           "script .bin that Luatools writes next to it")
    if looks_like_luadb(data):
        raise PackageError("package", "magic", 0, "a package", "a bare LuaDB image",
                           "wrap it first, e.g. `luatos-pack ota PROJECT`")
    raise PackageError("package", "magic", 0,
                       "0xFF (Air8101 TAUL), 'LFTA', 'LKFP' (luatos-full) or an EC magic",
                       data[:8], "unknown package format")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def detect_and_validate(data: bytes) -> Package:
    """Recognise the format and check every field; raise ``PackageError`` on the first fault."""
    data = bytes(data)
    kind = _detect_kind(data)
    ctx = _Ctx(strict=True)
    try:
        return _VALIDATORS[kind](data, ctx)
    except _Stop:  # pragma: no cover - strict mode raises before stopping
        raise AssertionError("strict validation stopped without an error") from None


def inspect_package(data: bytes) -> Inspection:
    """Run every check that can run and report all of them (for people, not for gates)."""
    data = bytes(data)
    ctx = _Ctx(strict=False)
    size, sha = len(data), _sha(data)
    try:
        kind = _detect_kind(data)
    except PackageError as e:
        return Inspection(None, size, sha, [Check("format", False, str(e))], [], None, [])
    pkg: Package | None = None
    try:
        pkg = _VALIDATORS[kind](data, ctx)
    except _Stop:
        pkg = None
    except PackageError as e:
        ctx.checks.append(Check("structure", False, str(e)))
        pkg = None
    if any(not c.ok for c in ctx.checks):
        pkg = None
    return Inspection(kind, size, sha, ctx.checks, ctx.warnings, pkg, ctx.files,
                      ctx.details)


def inspect_image(data: bytes, *, framed: bool | None = None) -> Inspection:
    """Check a bare script image (as ``luatos-pack image`` writes it), framed or not.

    ``kind`` is ``luadb`` or ``luadb-bkcrc``; ``framed=None`` decides from the data.
    """
    data = bytes(data)
    ctx = _Ctx(strict=False)
    size, sha = len(data), _sha(data)
    if framed is None:
        framed = is_framed_image(data)
    kind = "luadb-bkcrc" if framed else "luadb"
    files: dict[str, bytes] | None = None
    try:
        payload = data
        if framed:
            _check_framing(data, 0, ctx, "image")
            payload = bkcrc.unframe(data, verify=False)
        files = _script(payload, ctx, "LuaDB image", require_main=False,
                        offset_note="offsets are within the unframed image" if framed else "")
    except _Stop:
        pass
    except PackageError as e:
        ctx.checks.append(Check("structure", False, str(e)))
    ok = files is not None and all(c.ok for c in ctx.checks)
    pkg = Package(kind, size, sha, files, None, dict(ctx.details)) if ok else None
    return Inspection(kind, size, sha, ctx.checks, ctx.warnings, pkg, ctx.files, ctx.details)


def is_framed_image(data: bytes) -> bool:
    """Is this a BK-CRC-framed LuaDB (as written for the Air8101 script partition)?

    A framed image starts with the same bytes as a plain one (the first 32 data bytes), so
    we look at the length and at the first few block CRCs: in a plain image each would match
    by chance once in 65536, so one match among eight means framed (even if others are bad).
    """
    fb = bkcrc.FRAMED_BLOCK
    if not looks_like_luadb(data) or len(data) % fb:
        return False
    first = data[:8 * fb]
    return len(bkcrc.bad_blocks(first)) < len(first) // fb


def looks_like_image(data: bytes) -> bool:
    """A bare LuaDB image, framed or not (not a package)."""
    return looks_like_luadb(data)


# --------------------------------------------------------------------------- shared checkers


def _check_framing(framed: bytes, base: int, ctx: _Ctx, what: str) -> None:
    ctx.require("framed length", len(framed) % bkcrc.FRAMED_BLOCK == 0 and len(framed) > 0,
                lambda: PackageError("BK CRC16 framing", f"{what} length", base,
                                     "a nonzero multiple of 34", len(framed)),
                f"{len(framed)} bytes = {len(framed) // bkcrc.FRAMED_BLOCK} blocks")
    bad = bkcrc.bad_blocks(framed, base_offset=base)
    if not bad:
        ctx.checks.append(Check("block CRCs", True,
                                f"all {len(framed) // bkcrc.FRAMED_BLOCK} blocks"))
        return
    for i, off, stored, computed in bad:
        ctx.check(f"CRC of block {i}", False,
                  functools.partial(_block_error, i, off, stored, computed))


def _block_error(index: int, off: int, stored: int, computed: int) -> PackageError:
    return PackageError("BK CRC16 framing", f"CRC of block {index}", off + bkcrc.BLOCK,
                        f"0x{computed:04X}", f"0x{stored:04X}",
                        f"block data at offset {off}..{off + bkcrc.BLOCK - 1} is corrupt")


def _script(image_bytes: bytes, ctx: _Ctx, where: str, *, require_main: bool = True,
            offset_note: str = "") -> dict[str, bytes]:
    try:
        img: LuadbImage = parse_luadb_image(image_bytes)
    except PackageError as e:
        note = f" ({offset_note})" if offset_note else ""
        err = PackageError(f"{where}: script image{note}: {e}")
        ctx.require("LuaDB", False, lambda: err)
        raise AssertionError("unreachable") from None
    files = {e.name: e.data for e in img.entries}
    ctx.files = [(e.name, e.size) for e in img.entries]
    ctx.checks.append(Check("LuaDB", True, f"v{img.version}, {len(files)} files, "
                            f"{img.end} bytes + {img.trailing} padding"))
    ctx.details.update(luadb_version=img.version, luadb_len=len(image_bytes),
                       file_count=len(files))
    for m in img.checksum_mismatches():
        ctx.warnings.append(f"LuaDB record checksum differs (devices ignore it): {m}")
    if require_main:
        ctx.check("main entry", any(n in files for n in MAIN_NAMES),
                  lambda: PackageError(f"{where}: script image has no main.luac or main.lua; "
                                       f"files: {', '.join(list(files)[:10])}"),
                  next(n for n in MAIN_NAMES if n in files) if any(
                      n in files for n in MAIN_NAMES) else "")
    return files


def _truncated(fmt: str, need: int, got: int, field_: str = "header") -> PackageError:
    return PackageError(fmt, field_, got, f"{need} bytes", f"{got} bytes", "file truncated")


# ------------------------------------------------------------------------ Air8101 TAUL (formats.md)


def _validate_air8101(data: bytes, ctx: _Ctx) -> Package:
    fmt = KIND_NAMES[KIND_AIR8101]
    n = len(data)
    prefix = data[:TAUL_PREFIX_LEN]
    stripped = prefix.lstrip(b"\xff")
    bad_at = len(prefix) - len(stripped)
    ctx.require("0xFF prefix", not stripped,
                lambda: PackageError(fmt, "0xFF prefix byte", bad_at, "0xFF",
                                     f"0x{data[bad_at]:02X}"), "1024 bytes of 0xFF")
    ctx.require("header length", n >= TAUL_HEADER_LEN,
                lambda: _truncated(fmt, TAUL_HEADER_LEN, n), f"{TAUL_HEADER_LEN} bytes")
    ctx.require("magic", data[1024:1028] == TAUL_MAGIC,
                lambda: PackageError(fmt, "magic", 1024, "'TAUL' (54 41 55 4C)",
                                     data[1024:1028]), "TAUL")
    length = struct.unpack_from("<I", data, 1028)[0]
    ctx.details.update(type=1, framed_len=length, expected_len=n)
    ctx.require("length field", length > 0 and length % bkcrc.FRAMED_BLOCK == 0,
                lambda: PackageError(fmt, "length field L", 1028,
                                     "a nonzero multiple of 34", length),
                f"L={length}")
    ctx.require("total size", n == TAUL_HEADER_LEN + length,
                lambda: PackageError(fmt, "total size", n, f"1032 + L = {1032 + length} bytes",
                                     f"{n} bytes",
                                     "file truncated" if n < 1032 + length
                                     else f"{n - 1032 - length} bytes after the framed image"),
                f"{n} bytes")
    framed = data[TAUL_HEADER_LEN:]
    _check_framing(framed, TAUL_HEADER_LEN, ctx, "framed image")
    image = bkcrc.unframe(framed, verify=False)
    files = _script(image, ctx, fmt, offset_note="offsets are within the unframed image")
    ctx.details["blocks"] = length // bkcrc.FRAMED_BLOCK
    return Package(KIND_AIR8101, n, _sha(data), files, None, dict(ctx.details))


def build_air8101_ota(files: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> bytes:
    """An Air8101 script OTA package: 1024 x 0xFF, 'TAUL', u32 LE L, framed LuaDB."""
    framed = bkcrc.frame(build_luadb(files))
    return b"\xff" * TAUL_PREFIX_LEN + TAUL_MAGIC + struct.pack("<I", len(framed)) + framed


# -------------------------------------------------------------------------------- LFTA (formats.md)


def _validate_lfta(data: bytes, ctx: _Ctx) -> Package:
    fmt = KIND_NAMES[KIND_LFTA]
    n = len(data)
    ctx.require("header length", n >= LFTA_HEADER_LEN,
                lambda: _truncated(fmt, LFTA_HEADER_LEN, n), f"{LFTA_HEADER_LEN} bytes")
    f = struct.unpack_from("<64I", data, 0)
    ctx.checks.append(Check("magic", True, "LFTA"))
    plen, pcrc = f[6], f[7]
    ctx.details.update(field2=f[2], timestamp=f[3], type=f[4], payload_len=plen,
                       payload_crc32=f"{pcrc:08x}")
    ctx.require("payload length", plen == n - LFTA_HEADER_LEN,
                lambda: PackageError(fmt, "payload length field [6]", 24,
                                     f"size - 256 = {n - LFTA_HEADER_LEN}", plen,
                                     "file truncated" if plen > n - LFTA_HEADER_LEN
                                     else "extra bytes after the payload"), f"{plen} bytes")
    payload = data[LFTA_HEADER_LEN:]
    crc = zlib.crc32(payload)
    ctx.check("payload CRC32", crc == pcrc,
              lambda: PackageError(fmt, "payload CRC32 field [7]", 28, f"0x{crc:08X}",
                                   f"0x{pcrc:08X}", "payload corrupt"), f"0x{crc:08X}")
    nonzero = [i for i in range(8, 64) if f[i]]
    if nonzero:
        ctx.warnings.append(f"{fmt}: header fields {nonzero} are nonzero (always zero in the "
                            "known sample; ignored)")
    d = zlib.decompressobj(31)
    try:
        image = d.decompress(payload, LFTA_MAX_UNPACKED + 1)
        complete = d.eof
    except zlib.error as e:
        err = PackageError(fmt, "gzip payload", LFTA_HEADER_LEN, "a valid gzip stream", str(e))
        ctx.require("gzip", False, lambda: err)
        raise AssertionError("unreachable") from None
    ctx.require("gzip size", len(image) <= LFTA_MAX_UNPACKED,
                lambda: PackageError(fmt, "gzip payload", LFTA_HEADER_LEN,
                                     f"at most {LFTA_MAX_UNPACKED} bytes unpacked",
                                     "more", "not a script image"))
    ctx.require("gzip", complete,
                lambda: PackageError(fmt, "gzip payload", LFTA_HEADER_LEN + len(payload),
                                     "a complete gzip stream", "the stream ends early",
                                     "payload truncated"), f"{len(image)} bytes unpacked")
    if d.unused_data:
        ctx.warnings.append(f"{fmt}: {len(d.unused_data)} bytes after the gzip stream")
    files = _script(image, ctx, fmt, offset_note="offsets are within the gunzipped image")
    return Package(KIND_LFTA, n, _sha(data), files, None, dict(ctx.details))


def build_lfta(files: Mapping[str, bytes] | Iterable[tuple[str, bytes]], *,
               timestamp: int | None = None) -> bytes:
    """An LFTA package: 256-byte header, gzip of a zero-padded LuaDB."""
    payload = gzip.compress(build_luadb(files), compresslevel=9, mtime=0)
    ts = int(time.time()) if timestamp is None else timestamp
    fields = [0] * 64
    fields[0] = struct.unpack("<I", LFTA_MAGIC)[0]
    fields[2] = LFTA_FIELD2
    fields[3] = ts & 0xFFFFFFFF
    fields[4] = LFTA_TYPE_SCRIPT
    fields[6] = len(payload)
    fields[7] = zlib.crc32(payload)
    return struct.pack("<64I", *fields) + payload


# ---------------------------------------------------------------------------------- EC (formats.md)


def _ec_header_crc(h: bytes) -> int:
    return zlib.crc32(h[8:EC_HEADER_LEN]) ^ 0xFFFFFFFF


def _validate_ec(data: bytes, ctx: _Ctx) -> Package:
    fmt = KIND_NAMES[KIND_EC]
    n = len(data)
    ctx.require("header length", n >= EC_HEADER_LEN, lambda: _truncated(fmt, EC_HEADER_LEN, n),
                f"{EC_HEADER_LEN} bytes")
    magic, hcrc = struct.unpack_from("<II", data, 0)
    ctx.checks.append(Check("magic", True, f"0x{magic:08X} ({EC_MAGICS[magic]})"))
    want = _ec_header_crc(data)
    ctx.check("header CRC", hcrc == want,
              lambda: PackageError(fmt, "header CRC", 4, f"0x{want:08X}", f"0x{hcrc:08X}",
                                   "header bytes 8..91 corrupt"), f"0x{want:08X}")
    common_len, sdk_len = struct.unpack_from("<II", data, 52)
    common_md5 = data[60:76]
    ctx.details.update(chip=EC_MAGICS[magic], common_len=common_len, sdk_len=sdk_len,
                       script_only=sdk_len == 0)
    total = EC_HEADER_LEN + common_len + sdk_len
    ctx.require("total size", n == total,
                lambda: PackageError(fmt, "total size", n,
                                     f"92 + CommonDataLen + SDKDataLen = {total} bytes",
                                     f"{n} bytes",
                                     "file truncated" if n < total else "extra bytes at the end"),
                f"{n} bytes")
    common = data[EC_HEADER_LEN:EC_HEADER_LEN + common_len]
    md5 = hashlib.md5(common).digest()
    ctx.check("common MD5", md5 == common_md5,
              lambda: PackageError(fmt, "common part MD5", 60, md5.hex(), common_md5.hex(),
                                   "script part corrupt"), md5.hex())
    files: dict[str, bytes] | None = None
    if common_len >= EC_SECTOR_HEADER_LEN:
        _smagic, total_len, data_len = struct.unpack_from("<III", common, 0)
        kind = "delta" if data_len == 0 else ("raw" if data_len == total_len else "lzma")
        ctx.details.update(common_kind=kind, total_len=total_len, data_len=data_len)
        body = common[EC_SECTOR_HEADER_LEN:EC_SECTOR_HEADER_LEN + data_len]
        if kind == "raw" and looks_like_luadb(body):
            try:
                img = parse_luadb_image(body)
                files = {e.name: e.data for e in img.entries}
                ctx.files = [(e.name, e.size) for e in img.entries]
            except PackageError as e:
                ctx.warnings.append(f"{fmt}: raw common part does not parse as LuaDB: {e}")
    elif common_len:
        ctx.warnings.append(f"{fmt}: common part is {common_len} bytes, shorter than the "
                            f"{EC_SECTOR_HEADER_LEN}-byte sector header")
    return Package(KIND_EC, n, _sha(data), files, None, dict(ctx.details))


def build_ec_script(files: Mapping[str, bytes] | Iterable[tuple[str, bytes]], *,
                    chip: str = "EC618") -> bytes:
    """An EC-family script-only package with a raw common part (DataLen == TotalLen).

    Meant for server tests: the layout and checks follow docs/formats.md; the sector-header magic and
    start address are placeholders because the vendor values are not public.
    """
    magic = {"EC618": EC618_MAGIC, "EC7XX": EC7XX_MAGIC}.get(chip.upper())
    if magic is None:
        raise ValueError(f"chip {chip!r}: expected 'EC618' or 'EC7xx'")
    body = build_luadb(files)
    sector = struct.pack("<III16sII", EC_SECTOR_MAGIC, len(body), len(body),
                         hashlib.md5(body).digest(), EC_BLOCK_LEN, 0)
    common = sector + body
    h = bytearray(EC_HEADER_LEN)
    struct.pack_into("<I", h, 0, magic)
    struct.pack_into("<II", h, 52, len(common), 0)
    h[60:76] = hashlib.md5(common).digest()
    struct.pack_into("<I", h, 4, _ec_header_crc(bytes(h)))
    return bytes(h) + common


# ------------------------------------------------------------------------ luatos-full (ours)


def _validate_full(data: bytes, ctx: _Ctx) -> Package:
    fmt = KIND_NAMES[KIND_FULL]
    n = len(data)
    ctx.require("header length", n >= FULL_HEADER_LEN,
                lambda: _truncated(fmt, FULL_HEADER_LEN, n), f"{FULL_HEADER_LEN} bytes")
    (_magic, fver, hlen, core_raw, core_len, script_len, digest, _reserved,
     hcrc) = _FULL_HEADER.unpack_from(data, 0)
    ctx.checks.append(Check("magic", True, "LKFP"))
    want = zlib.crc32(data[:FULL_HEADER_LEN - 4])
    ctx.require("header CRC32", hcrc == want,
                lambda: PackageError(fmt, "header CRC32", FULL_HEADER_LEN - 4,
                                     f"0x{want:08X}", f"0x{hcrc:08X}", "header corrupt"),
                f"0x{want:08X}")
    ctx.require("format version", fver == FULL_FORMAT_VERSION,
                lambda: PackageError(fmt, "format version", 4, FULL_FORMAT_VERSION, fver),
                str(fver))
    ctx.require("header length field", hlen == FULL_HEADER_LEN,
                lambda: PackageError(fmt, "header length", 6, FULL_HEADER_LEN, hlen))
    core = core_raw.rstrip(b"\x00")
    ok_core = bool(core) and b"\x00" not in core and all(0x21 <= b < 0x7F for b in core)
    ctx.require("core version", ok_core,
                lambda: PackageError(fmt, "core version", 8, "printable ASCII, NUL-padded",
                                     core_raw))
    core_version = core.decode("ascii")
    total = FULL_HEADER_LEN + core_len + script_len
    ctx.details.update(format_version=fver, core_image_len=core_len, script_len=script_len)
    ctx.require("total size", n == total,
                lambda: PackageError(fmt, "total size", n,
                                     f"80 + core {core_len} + script {script_len} = {total} bytes",
                                     f"{n} bytes",
                                     "file truncated" if n < total else "extra bytes at the end"),
                f"{n} bytes")
    got = hashlib.sha256(data[FULL_HEADER_LEN:]).digest()
    ctx.check("payload SHA-256", got == digest,
              lambda: PackageError(fmt, "payload SHA-256", 32, got.hex(), digest.hex(),
                                   "core image or script corrupt"), got.hex()[:16] + "…")
    files = _script(data[FULL_HEADER_LEN + core_len:], ctx, fmt,
                    offset_note=f"offsets are from byte {FULL_HEADER_LEN + core_len}")
    return Package(KIND_FULL, n, _sha(data), files, core_version, dict(ctx.details))


def build_full(core_version: str, files: Mapping[str, bytes] | Iterable[tuple[str, bytes]], *,
               core_image: bytes = b"") -> bytes:
    """This project's full package: header, optional core image, script LuaDB."""
    core = core_version.strip().encode("ascii", "replace")
    if not core or len(core) > FULL_CORE_FIELD or not all(0x21 <= b < 0x7F for b in core):
        raise ValueError(f"core version {core_version!r}: expected 1..16 printable ASCII "
                         "characters, e.g. 'V2002'")
    script = build_luadb(files)
    payload = core_image + script
    head = _FULL_HEADER.pack(FULL_MAGIC, FULL_FORMAT_VERSION, FULL_HEADER_LEN, core,
                             len(core_image), len(script), hashlib.sha256(payload).digest(),
                             b"", 0)
    head = head[:-4] + struct.pack("<I", zlib.crc32(head[:-4]))
    return head + payload


_VALIDATORS: dict[str, Callable[[bytes, _Ctx], Package]] = {
    KIND_AIR8101: _validate_air8101, KIND_LFTA: _validate_lfta, KIND_EC: _validate_ec,
    KIND_FULL: _validate_full,
}


# -------------------------------------------------------------------------------- streaming


class StreamValidator:
    """Validates a package as it arrives so that a device refuses it at the first bad byte.

    ``feed`` raises as soon as the prefix cannot start any accepted format, a header field is
    impossible, a complete framed block has a bad CRC, or more data arrives than announced.
    ``finish`` runs the full validation.
    """

    def __init__(self, kinds: Iterable[str] = DEVICE_KINDS, *,
                 max_size: int | None = None) -> None:
        self.kinds = tuple(kinds)
        unknown = set(self.kinds) - set(ALL_KINDS)
        if unknown:
            raise ValueError(f"unknown package kinds {sorted(unknown)}; known: {ALL_KINDS}")
        self.max_size = max_size
        self._buf = bytearray()
        self.kind: str | None = None
        self.expected_size: int | None = None
        self._blocks_checked = 0

    @property
    def bytes_received(self) -> int:
        return len(self._buf)

    def _prefixes(self) -> list[tuple[str, bytes]]:
        out = []
        for k in self.kinds:
            if k == KIND_AIR8101:
                out.append((k, b"\xff" * TAUL_PREFIX_LEN + TAUL_MAGIC))
            elif k == KIND_LFTA:
                out.append((k, LFTA_MAGIC))
            elif k == KIND_FULL:
                out.append((k, FULL_MAGIC))
            else:
                out += [(k, struct.pack("<I", m)) for m in EC_MAGICS]
        return out

    def feed(self, chunk: bytes) -> None:
        start = len(self._buf)
        self._buf += chunk
        buf = self._buf
        if self.max_size is not None and len(buf) > self.max_size:
            raise PackageError("package", "size", self.max_size, f"at most {self.max_size} bytes",
                               f"{len(buf)} bytes so far", "larger than this device accepts")
        if self.kind is None:
            self._identify(start)
        if self.kind is not None and self.expected_size is None:
            self._read_header()
        if self.expected_size is not None and len(buf) > self.expected_size:
            raise PackageError(KIND_NAMES[self.kind or ""] if self.kind else "package", "size",
                               self.expected_size, f"{self.expected_size} bytes (from the header)",
                               f"{len(buf)} bytes so far", "more data than announced")
        if self.kind == KIND_AIR8101 and self.expected_size is not None:
            self._check_blocks()

    def _identify(self, start: int) -> None:
        buf = bytes(self._buf[:TAUL_HEADER_LEN])
        matching = [(k, p) for k, p in self._prefixes() if p[:len(buf)] == buf[:len(p)]]
        if not matching:
            # Name the first byte that broke every candidate.
            best = max(self._prefixes(), key=lambda kp: _common_prefix(kp[1], buf))
            at = _common_prefix(best[1], buf)
            wanted = {KIND_AIR8101: "0xFF (Air8101 TAUL)", KIND_LFTA: "'LFTA'",
                      KIND_FULL: "'LKFP' (luatos-full)", KIND_EC: "an EC magic"}
            raise PackageError("package", "magic/prefix", at,
                               " or ".join(wanted[k] for k in self.kinds),
                               bytes(buf[at:at + 8]),
                               "not a package this device accepts")
        complete = [k for k, p in matching if len(buf) >= len(p)]
        if complete:
            self.kind = complete[0]

    def _read_header(self) -> None:
        buf = self._buf
        k = self.kind
        if k == KIND_AIR8101 and len(buf) >= TAUL_HEADER_LEN:
            length = struct.unpack_from("<I", buf, 1028)[0]
            if length == 0 or length % bkcrc.FRAMED_BLOCK:
                raise PackageError(KIND_NAMES[k], "length field L", 1028,
                                   "a nonzero multiple of 34", length)
            self.expected_size = TAUL_HEADER_LEN + length
        elif k == KIND_LFTA and len(buf) >= LFTA_HEADER_LEN:
            self.expected_size = LFTA_HEADER_LEN + struct.unpack_from("<I", buf, 24)[0]
        elif k == KIND_FULL and len(buf) >= FULL_HEADER_LEN:
            hcrc = struct.unpack_from("<I", buf, FULL_HEADER_LEN - 4)[0]
            want = zlib.crc32(buf[:FULL_HEADER_LEN - 4])
            if hcrc != want:
                raise PackageError(KIND_NAMES[k], "header CRC32", FULL_HEADER_LEN - 4,
                                   f"0x{want:08X}", f"0x{hcrc:08X}", "header corrupt")
            core_len, script_len = struct.unpack_from("<II", buf, 24)
            self.expected_size = FULL_HEADER_LEN + core_len + script_len
        elif k == KIND_EC and len(buf) >= EC_HEADER_LEN:
            hcrc = struct.unpack_from("<I", buf, 4)[0]
            want = _ec_header_crc(bytes(buf[:EC_HEADER_LEN]))
            if hcrc != want:
                raise PackageError(KIND_NAMES[k], "header CRC", 4, f"0x{want:08X}",
                                   f"0x{hcrc:08X}", "header bytes 8..91 corrupt")
            c, s = struct.unpack_from("<II", buf, 52)
            self.expected_size = EC_HEADER_LEN + c + s
        if (self.expected_size is not None and self.max_size is not None
                and self.expected_size > self.max_size):
            raise PackageError(KIND_NAMES[k or ""], "announced size", 0,
                               f"at most {self.max_size} bytes", self.expected_size,
                               "larger than this device accepts")

    def _check_blocks(self) -> None:
        fb = bkcrc.FRAMED_BLOCK
        complete = (len(self._buf) - TAUL_HEADER_LEN) // fb
        mv = memoryview(self._buf)
        try:
            for i in range(self._blocks_checked, complete):
                off = TAUL_HEADER_LEN + i * fb
                bkcrc.check_block(mv[off:off + fb], i, off)
        finally:
            mv.release()
        self._blocks_checked = complete

    def finish(self) -> Package:
        buf = bytes(self._buf)
        if not buf:
            raise PackageError("package", "size", 0, "at least 1 byte", "0 bytes (empty)")
        if self.kind is None:
            raise PackageError("package", "header", len(buf), "a complete magic/prefix",
                               f"{len(buf)} bytes", "stream ended inside the prefix")
        if self.expected_size is None or len(buf) < self.expected_size:
            need = self.expected_size
            raise PackageError(KIND_NAMES[self.kind], "size", len(buf),
                               f"{need} bytes" if need else "a complete header",
                               f"{len(buf)} bytes", "short body: the stream ended early")
        pkg = detect_and_validate(buf)
        return pkg


def _common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


# ---------------------------------------------------------------------------- vendor names

_VENDOR_RE = re.compile(
    r"^(?P<project>.+)_(?P<core>[Vv]?\d+)\.(?P<x>\d+)\.(?P<z>\d+)_LuatOS-SoC_"
    r"(?P<chip>[A-Za-z0-9][A-Za-z0-9-]*)\.bin$", re.IGNORECASE)


class VendorName(NamedTuple):
    """The parts of a Luatools upgrade file name ``<PROJECT>_<core>.<x>.<z>_LuatOS-SoC_<chip>.bin``.

    ``core`` is normalised to ``V<digits>`` (what ``rtos.version()`` says) and ``script`` is
    ``x.z`` as written (the middle ``yyy`` of the script ``VERSION`` is never transmitted).
    """

    project: str
    core: str
    script: str
    chip: str

    @property
    def fota_version(self) -> str:
        """The ``core.x.z`` a device running this package reports to libfota2."""
        return f"{self.core.lstrip('Vv')}.{self.script}"


def parse_vendor_filename(name: str) -> VendorName | None:
    """Read project, core, script ``x.z`` and chip from a Luatools file name (any directory)."""
    base = re.split(r"[\\/]", name)[-1]
    m = _VENDOR_RE.match(base)
    if not m:
        return None
    core = "V" + m["core"].lstrip("Vv")
    return VendorName(m["project"], core, f"{m['x']}.{m['z']}", m["chip"])


def vendor_filename(project: str, core: str, script_version: str, chip: str) -> str:
    """``PROJECT_core.x.z_LuatOS-SoC_CHIP.bin`` (core without ``V``; ``y`` of x.y.z dropped)."""
    if not project or re.search(r"[\\/\s]", project):
        raise ValueError(f"project name {project!r}: must be non-empty without spaces or slashes")
    m = re.fullmatch(r"[Vv]?(\d+)", core.strip())
    if not m:
        raise ValueError(f"core version {core!r}: expected e.g. 'V2001' or '2001'")
    parts = script_version.strip().split(".")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        raise ValueError(f"script version {script_version!r}: expected xxx.yyy.zzz (or x.z)")
    x, z = parts[0], parts[-1]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", chip):
        raise ValueError(f"chip {chip!r}: expected e.g. 'Air8101'")
    return f"{project}_{m[1]}.{x}.{z}_LuatOS-SoC_{chip}.bin"
