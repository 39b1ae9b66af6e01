"""BK7258 flash framing: every 32 data bytes are followed by their CRC-16 (big-endian).

The Air8101 script partition and the Air8101 OTA package both carry the LuaDB image in this
framed form, so the emulator, the server and the packer all need to add and strip it, and to
say *which* block is damaged when a CRC does not match.

``PackageError`` lives here because this is the lowest module of the package formats; the
public home is :mod:`luatos_common.packages`, which re-exports it.
"""

from __future__ import annotations

import struct
from typing import Any

BLOCK = 32
FRAMED_BLOCK = BLOCK + 2
_POLY = 0x8005


class PackageError(ValueError):
    """A package or image that is not what it claims to be.

    Built either from a plain message or from its parts, so that callers (the server's upload
    answer, the emulator's fota log, ``luatos-pack inspect``) can show the format, the field,
    the byte offset and what was expected versus found.
    """

    def __init__(self, fmt: str, field: str | None = None, offset: int | None = None,
                 expected: Any = None, got: Any = None, hint: str | None = None) -> None:
        self.format = fmt if field is not None else None
        self.field = field
        self.offset = offset
        self.expected = expected
        self.got = got
        self.hint = hint
        if field is None:
            message = fmt
        else:
            message = f"{fmt}: {field}"
            if offset is not None:
                message += f" at offset {offset}" + (f" (0x{offset:X})" if offset > 9 else "")
            if expected is not None or got is not None:
                message += f": expected {_show(expected)}, got {_show(got)}"
            if hint:
                message += f" ({hint})"
        super().__init__(message)


def _show(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value} (0x{value:X})" if value > 9 else str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex(" ") if len(value) <= 16 else bytes(value[:16]).hex(" ") + " …"
    return str(value)


def _byte_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ _POLY) if c & 0x8000 else (c << 1)
        table.append(c & 0xFFFF)
    return table


_T8 = _byte_table()
_T16: list[int] | None = None


def _word_table() -> list[int]:
    """Register after shifting 16 zero bits through it: lets us take two bytes per step."""
    global _T16
    if _T16 is None:
        t8 = _T8
        out = []
        for v in range(65536):
            c = ((v << 8) & 0xFFFF) ^ t8[v >> 8]
            c = ((c << 8) & 0xFFFF) ^ t8[c >> 8]
            out.append(c)
        _T16 = out
    return _T16


def crc16_cms(data: bytes | bytearray | memoryview, init: int = 0xFFFF) -> int:
    """CRC-16/CMS (poly 0x8005, init 0xFFFF, no reflection, no final XOR)."""
    crc = init & 0xFFFF
    mv = memoryview(data).cast("B")
    n = len(mv)
    if n >= 64:
        t16 = _word_table()
        even = n & ~1
        for w in struct.unpack(f">{even // 2}H", mv[:even]):
            crc = t16[crc ^ w]
        mv = mv[even:]
    t8 = _T8
    for b in mv:
        crc = ((crc << 8) & 0xFFFF) ^ t8[(crc >> 8) ^ b]
    return crc


def framed_size(n: int) -> int:
    """Size of ``n`` bytes once framed: ceil(n/32) * 34."""
    return -(-n // BLOCK) * FRAMED_BLOCK


def frame(data: bytes) -> bytes:
    """Split into 32-byte blocks (the last padded with 0xFF), each followed by its BE CRC."""
    t16 = _word_table()
    pad = (-len(data)) % BLOCK
    padded = bytes(data) + b"\xff" * pad
    words = struct.unpack(f">{len(padded) // 2}H", padded)
    out = bytearray()
    pack = struct.pack
    for i in range(0, len(padded) // BLOCK):
        crc = 0xFFFF
        for w in words[i * 16:(i + 1) * 16]:
            crc = t16[crc ^ w]
        out += padded[i * BLOCK:(i + 1) * BLOCK]
        out += pack(">H", crc)
    return bytes(out)


def bad_blocks(data: bytes, *, base_offset: int = 0) -> list[tuple[int, int, int, int]]:
    """Every block whose CRC does not match, as (index, offset, stored, computed).

    Offsets are of the block's first byte, plus ``base_offset`` so that a caller holding the
    framed data inside a larger package can report positions in that package.
    """
    if len(data) % FRAMED_BLOCK:
        raise PackageError("BK CRC16 framing", "length", base_offset, "a multiple of 34",
                           f"{len(data)} (remainder {len(data) % FRAMED_BLOCK})")
    t16 = _word_table()
    mv = memoryview(data)
    bad = []
    for i in range(len(data) // FRAMED_BLOCK):
        start = i * FRAMED_BLOCK
        words = struct.unpack(">17H", mv[start:start + FRAMED_BLOCK])
        crc = 0xFFFF
        for w in words[:16]:
            crc = t16[crc ^ w]
        if crc != words[16]:
            bad.append((i, base_offset + start, words[16], crc))
    return bad


def check_block(block: bytes | memoryview, index: int, offset: int) -> None:
    """Raise for one framed 34-byte block whose CRC is wrong (used while streaming)."""
    words = struct.unpack(">17H", block)
    t16 = _word_table()
    crc = 0xFFFF
    for w in words[:16]:
        crc = t16[crc ^ w]
    stored = words[16]
    if crc != stored:
        raise PackageError("BK CRC16 framing", f"CRC of block {index}", offset + BLOCK,
                           f"0x{crc:04X}", f"0x{stored:04X}",
                           hint=f"block data at offset {offset}..{offset + BLOCK - 1} is corrupt")


def unframe(data: bytes, *, verify: bool = True, base_offset: int = 0) -> bytes:
    """Strip the CRCs and return the data (including the 0xFF padding of the last block).

    Raises :class:`PackageError` naming the first bad block when ``verify`` is true.
    """
    if len(data) % FRAMED_BLOCK:
        raise PackageError("BK CRC16 framing", "length", base_offset, "a multiple of 34",
                           f"{len(data)} (remainder {len(data) % FRAMED_BLOCK})")
    if verify:
        bad = bad_blocks(data, base_offset=base_offset)
        if bad:
            i, off, stored, computed = bad[0]
            more = f"; {len(bad) - 1} more bad block(s)" if len(bad) > 1 else ""
            raise PackageError("BK CRC16 framing", f"CRC of block {i}", off + BLOCK,
                               f"0x{computed:04X}", f"0x{stored:04X}",
                               hint=f"block data at offset {off}..{off + BLOCK - 1} is corrupt{more}")
    mv = memoryview(data)
    return b"".join(mv[i:i + BLOCK] for i in range(0, len(data), FRAMED_BLOCK))
