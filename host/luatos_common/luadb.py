"""LuaDB v2: the read-only file system image that holds a LuatOS script (``/luadb``).

Written the way Luatools writes it (header length 0x18, a 16-bit byte-sum per record) so that
a device reads our images exactly as it reads vendor ones; read the way the device reads
(TLVs in any order, unknown types skipped, the checksum not trusted) so that images written by
other tools (luatos-cli writes ``FF FF`` checksums) are accepted too.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .bkcrc import PackageError

FMT = "LuaDB"
MAGIC = b"\x5a\xa5\x5a\xa5"
MAGIC_TLV = b"\x01\x04" + MAGIC
VERSION = 2
HEADER_LEN = 0x18  # what Luatools writes in the header-length TLV (the header's real size)
MAX_FILES = 1024
MAX_NAME_BYTES = 31
MAX_TLVS = 128

T_MAGIC, T_VERSION_OR_NAME, T_LEN_OR_SIZE, T_COUNT, T_END = 0x01, 0x02, 0x03, 0x04, 0xFE


@dataclass
class LuadbEntry:
    """One file of the image; ``offset`` and the checksums are filled in by the parser."""

    name: str
    data: bytes
    offset: int = field(default=0, compare=False)
    data_offset: int = field(default=0, compare=False)
    stored_checksum: int | None = field(default=None, compare=False)
    computed_checksum: int | None = field(default=None, compare=False)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class LuadbImage:
    """A parsed image: header fields, the files, and where the files end."""

    version: int
    header_len_field: int
    file_count: int
    header_checksum: int | None
    header_computed_checksum: int
    entries: list[LuadbEntry]
    end: int  # offset just past the last file's data
    trailing: int  # bytes after ``end`` (padding)

    def checksum_mismatches(self) -> list[str]:
        """Records whose stored sum differs from ours (``FFFF`` = luatos-cli style, not counted)."""
        out = []
        if self.header_checksum not in (None, 0xFFFF, self.header_computed_checksum):
            out.append(f"header: stored 0x{self.header_checksum:04X}, "
                       f"byte sum 0x{self.header_computed_checksum:04X}")
        for e in self.entries:
            if e.stored_checksum not in (None, 0xFFFF, e.computed_checksum):
                out.append(f"{e.name} (record at offset {e.offset}): stored "
                           f"0x{e.stored_checksum:04X}, byte sum 0x{e.computed_checksum:04X}")
        return out


def _sum16(b: bytes) -> int:
    return sum(b) & 0xFFFF


def _validate_names(items: list[tuple[str, bytes]]) -> list[tuple[bytes, bytes]]:
    if not items:
        raise PackageError("LuaDB image has no files; it needs at least one (normally main.lua)")
    if len(items) > MAX_FILES:
        raise PackageError(f"LuaDB image: {len(items)} files; at most {MAX_FILES} fit")
    seen: set[str] = set()
    out = []
    for name, data in items:
        nb = name.encode("utf-8")
        if not nb:
            raise PackageError("LuaDB image: empty file name")
        if len(nb) > MAX_NAME_BYTES:
            raise PackageError(f"LuaDB image: file name {name!r} is {len(nb)} bytes; "
                               f"names are at most {MAX_NAME_BYTES} bytes")
        if "/" in name or "\\" in name or "\x00" in name:
            raise PackageError(f"LuaDB image: file name {name!r} contains '/', '\\' or NUL; "
                               "the device namespace is flat (store basenames)")
        if name in seen:
            raise PackageError(f"LuaDB image: duplicate file name {name!r}")
        seen.add(name)
        if len(data) > 0xFFFFFFFF:
            raise PackageError(f"LuaDB image: {name!r} is larger than 4 GiB")
        out.append((nb, bytes(data)))
    return out


def build_luadb(files: Mapping[str, bytes] | Iterable[tuple[str, bytes]], *,
                pad_to: int | None = 1024) -> bytes:
    """Build a v2 image, files in the given order, zero-padded to a multiple of ``pad_to``."""
    items = list(files.items()) if isinstance(files, Mapping) else list(files)
    checked = _validate_names(items)
    head = (MAGIC_TLV + struct.pack("<BBH", T_VERSION_OR_NAME, 2, VERSION)
            + struct.pack("<BBI", T_LEN_OR_SIZE, 4, HEADER_LEN)
            + struct.pack("<BBH", T_COUNT, 2, len(checked)) + bytes((T_END, 2)))
    out = bytearray(head + struct.pack("<H", _sum16(head)))
    for nb, data in checked:
        rec = (MAGIC_TLV + bytes((T_VERSION_OR_NAME, len(nb))) + nb
               + struct.pack("<BBI", T_LEN_OR_SIZE, 4, len(data)) + bytes((T_END, 2)))
        out += rec
        out += struct.pack("<H", _sum16(rec))
        out += data
    if pad_to:
        out += b"\x00" * ((-len(out)) % pad_to)
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes, base: int) -> None:
        self.data = data
        self.base = base

    def err(self, field_: str, offset: int, expected: object = None, got: object = None,
            hint: str | None = None) -> PackageError:
        return PackageError(FMT, field_, self.base + offset, expected, got, hint)

    def tlv(self, pos: int, where: str) -> tuple[int, bytes, int]:
        if pos + 2 > len(self.data):
            raise self.err(f"{where}: TLV header", pos, "2 more bytes",
                           f"end of data ({len(self.data) - pos} left)", "image truncated")
        t, n = self.data[pos], self.data[pos + 1]
        if pos + 2 + n > len(self.data):
            raise self.err(f"{where}: TLV type 0x{t:02X} value", pos + 2, f"{n} bytes",
                           f"{len(self.data) - pos - 2}", "image truncated")
        return t, self.data[pos + 2:pos + 2 + n], pos + 2 + n


def parse_luadb_image(data: bytes, *, base_offset: int = 0) -> LuadbImage:
    """Parse an image; errors name the offset (plus ``base_offset``) and the field."""
    data = bytes(data)
    r = _Reader(data, base_offset)
    if not data:
        raise r.err("magic", 0, MAGIC_TLV, "empty data")
    # Header.
    pos = 0
    magic = version = hlen = count = None
    hsum: int | None = None
    for _ in range(MAX_TLVS):
        start = pos
        t, v, pos = r.tlv(pos, "header")
        if t == T_MAGIC:
            if v != MAGIC:
                raise r.err("header magic", start + 2, MAGIC, v)
            magic = True
        elif t == T_VERSION_OR_NAME:
            if len(v) != 2:
                raise r.err("header version length", start + 1, 2, len(v))
            version = struct.unpack("<H", v)[0]
            if version == 0:
                raise r.err("header version", start + 2, "nonzero", 0)
        elif t == T_LEN_OR_SIZE:
            if len(v) != 4:
                raise r.err("header length field size", start + 1, 4, len(v))
            hlen = struct.unpack("<I", v)[0]
            if hlen == 0:
                raise r.err("header length", start + 2, "nonzero", 0)
        elif t == T_COUNT:
            if len(v) != 2:
                raise r.err("file count field size", start + 1, 2, len(v))
            count = struct.unpack("<H", v)[0]
            if not 1 <= count <= MAX_FILES:
                raise r.err("file count", start + 2, f"1..{MAX_FILES}", count)
        elif t == T_END:
            hsum = struct.unpack("<H", v)[0] if len(v) == 2 else None
            break
    else:
        raise r.err("header", pos, f"an end TLV (0xFE) within {MAX_TLVS} TLVs", "none")
    header_end = pos
    header_computed = _sum16(data[:header_end - 2]) if hsum is not None else 0
    for name, val in (("magic", magic), ("version", version), ("header length", hlen),
                      ("file count", count)):
        if val is None:
            raise r.err(f"header {name} TLV", 0, "present", "missing")
    assert version is not None and hlen is not None and count is not None
    # Records.
    entries: list[LuadbEntry] = []
    for idx in range(count):
        rec_start = pos
        rname: bytes | None = None
        size: int | None = None
        rsum: int | None = None
        seen_magic = False
        where = f"file {idx + 1}/{count}"
        for _ in range(MAX_TLVS):
            start = pos
            t, v, pos = r.tlv(pos, where)
            if t == T_MAGIC:
                if v != MAGIC:
                    raise r.err(f"{where}: record magic", start + 2, MAGIC, v)
                seen_magic = True
            elif t == T_VERSION_OR_NAME:
                if not 1 <= len(v) <= MAX_NAME_BYTES:
                    raise r.err(f"{where}: name length", start + 1, f"1..{MAX_NAME_BYTES}",
                                len(v))
                rname = v
            elif t == T_LEN_OR_SIZE:
                if len(v) != 4:
                    raise r.err(f"{where}: size field length", start + 1, 4, len(v))
                size = struct.unpack("<I", v)[0]
            elif t == T_END:
                rsum = struct.unpack("<H", v)[0] if len(v) == 2 else None
                break
        else:
            raise r.err(f"{where}: record", pos, f"an end TLV within {MAX_TLVS} TLVs", "none")
        if not seen_magic or rname is None or size is None:
            missing = [n for n, ok in (("magic", seen_magic), ("name", rname is not None),
                                       ("size", size is not None)) if not ok]
            raise r.err(f"{where}: record", rec_start, "magic, name and size TLVs",
                        "missing " + ", ".join(missing))
        try:
            name = rname.decode("utf-8")
        except UnicodeDecodeError:
            raise r.err(f"{where}: name", rec_start + 8, "UTF-8 text", rname) from None
        if pos + size > len(data):
            raise r.err(f"{where} ({name}): data", pos, f"{size} bytes",
                        f"{len(data) - pos} bytes before the end", "image truncated")
        computed = _sum16(data[rec_start:pos - 2]) if rsum is not None else 0
        entries.append(LuadbEntry(name, data[pos:pos + size], rec_start, pos, rsum, computed))
        pos += size
    seen_names: dict[str, int] = {}
    for e in entries:
        if e.name in seen_names:
            raise r.err(f"file name {e.name!r}", e.offset, "unique names",
                        f"a duplicate of the record at offset {base_offset + seen_names[e.name]}")
        seen_names[e.name] = e.offset
    tail = data[pos:]
    if tail.strip(b"\x00\xff"):
        first = next(i for i, b in enumerate(tail) if b not in (0, 0xFF))
        raise r.err("padding after the last file", pos + first, "only 0x00 or 0xFF bytes",
                    f"0x{tail[first]:02X}", f"{len(tail)} bytes follow the {count} declared files")
    return LuadbImage(version, hlen, count, hsum, header_computed, entries, pos, len(tail))


def parse_luadb(data: bytes) -> list[LuadbEntry]:
    """The files of an image, in image order. Padding (0x00 / 0xFF) after them is allowed."""
    return parse_luadb_image(data).entries


def looks_like_luadb(data: bytes) -> bool:
    """Does this start like a LuaDB image (the magic TLV first)?"""
    return data[:6] == MAGIC_TLV
