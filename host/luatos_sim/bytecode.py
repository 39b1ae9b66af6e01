"""Run device-compiled ``.luac`` on the host: rewrite the Lua 5.3 dump's size_t fields.

Vendor Air8101 packages hold bytecode compiled with int=4, size_t=4, Instruction=4,
integer=8, number=8 (behaviour.md §2.1); lupa's Lua on a 64-bit host expects size_t=8 and refuses
the chunk. Only two things in a Lua 5.3 dump depend on size_t: the header byte that states it,
and the length of every string of 254 bytes or more (shorter ones fit in the one-byte length).
So the translation walks the function prototypes recursively and re-emits those lengths with
the host's width; everything else is copied byte for byte. The walk follows the 5.3 dump
layout: source, line range, params/vararg/stack, code, constants, upvalues, nested protos,
debug info (line info, locals, upvalue names).
"""

from __future__ import annotations

import struct

SIGNATURE = b"\x1bLua"
LUAC_VERSION = 0x53
LUAC_FORMAT = 0
LUAC_DATA = b"\x19\x93\r\n\x1a\n"
HEADER_LEN = 33  # up to and including LUAC_NUM
SIZES_AT = 12  # int, size_t, Instruction, lua_Integer, lua_Number

T_NIL, T_BOOLEAN, T_NUMFLT, T_NUMINT, T_SHRSTR, T_LNGSTR = 0, 1, 3, 19, 4, 20


class BytecodeError(ValueError):
    """A dump that is not the Lua 5.3 layout this translator knows (names the offset)."""


def is_bytecode(data: bytes) -> bool:
    return data.startswith(SIGNATURE)


def sizes(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(int, size_t, Instruction, integer, number) from a 5.3 header, or None."""
    if len(data) < HEADER_LEN or not data.startswith(SIGNATURE) or data[4] != LUAC_VERSION:
        return None
    a, b, c, d, e = data[SIZES_AT:SIZES_AT + 5]
    return a, b, c, d, e


class _Rewriter:
    def __init__(self, data: bytes, size_t_in: int, size_t_out: int) -> None:
        self.d = data
        self.pos = 0
        self.out = bytearray()
        self.st_in = size_t_in
        self.st_out = size_t_out
        self.int_size = data[SIZES_AT]
        self.instr = data[SIZES_AT + 2]
        self.lint = data[SIZES_AT + 3]
        self.lnum = data[SIZES_AT + 4]

    def need(self, n: int, what: str) -> None:
        if self.pos + n > len(self.d):
            raise BytecodeError(f"bytecode truncated at offset {self.pos}: {what} needs {n} "
                                f"bytes, {len(self.d) - self.pos} left")

    def copy(self, n: int, what: str) -> bytes:
        self.need(n, what)
        chunk = self.d[self.pos:self.pos + n]
        self.out += chunk
        self.pos += n
        return chunk

    def byte(self, what: str) -> int:
        return self.copy(1, what)[0]

    def int_(self, what: str) -> int:
        raw = self.copy(self.int_size, what)
        n = int.from_bytes(raw, "little", signed=True)
        if n < 0:
            raise BytecodeError(f"bytecode: negative {what} ({n}) at offset "
                                f"{self.pos - self.int_size}")
        return n

    def string(self, what: str) -> None:
        self.need(1, what)
        first = self.d[self.pos]
        self.pos += 1
        if first != 0xFF:
            self.out.append(first)
            size = first
        else:
            self.need(self.st_in, what + " length")
            size = int.from_bytes(self.d[self.pos:self.pos + self.st_in], "little")
            self.pos += self.st_in
            if size >= 1 << (8 * self.st_out):
                raise BytecodeError(f"bytecode: {what} of {size} bytes does not fit size_t="
                                    f"{self.st_out}")
            self.out.append(0xFF)
            self.out += size.to_bytes(self.st_out, "little")
        if size:
            self.copy(size - 1, what)

    def function(self, depth: int = 0) -> None:
        if depth > 200:
            raise BytecodeError("bytecode: functions nested more than 200 deep")
        self.string("source")
        self.int_("linedefined")
        self.int_("lastlinedefined")
        self.copy(3, "numparams/is_vararg/maxstacksize")
        n = self.int_("sizecode")
        self.copy(n * self.instr, "code")
        n = self.int_("sizek")
        for _ in range(n):
            t = self.byte("constant type")
            if t == T_NIL:
                pass
            elif t == T_BOOLEAN:
                self.copy(1, "boolean constant")
            elif t == T_NUMFLT:
                self.copy(self.lnum, "float constant")
            elif t == T_NUMINT:
                self.copy(self.lint, "integer constant")
            elif t in (T_SHRSTR, T_LNGSTR):
                self.string("string constant")
            else:
                raise BytecodeError(f"bytecode: unknown constant type {t} at offset "
                                    f"{self.pos - 1}")
        n = self.int_("sizeupvalues")
        self.copy(2 * n, "upvalues")
        n = self.int_("sizep")
        for _ in range(n):
            self.function(depth + 1)
        n = self.int_("sizelineinfo")
        self.copy(n * self.int_size, "lineinfo")
        n = self.int_("sizelocvars")
        for _ in range(n):
            self.string("local name")
            self.int_("startpc")
            self.int_("endpc")
        n = self.int_("upvalue names")
        for _ in range(n):
            self.string("upvalue name")


def convert(data: bytes, size_t_out: int) -> bytes:
    """The same chunk with every size_t field re-emitted ``size_t_out`` bytes wide."""
    sz = sizes(data)
    if sz is None:
        raise BytecodeError("not Lua 5.3 bytecode (signature or version byte)")
    if data[5] != LUAC_FORMAT or data[6:12] != LUAC_DATA:
        raise BytecodeError("bytecode header: format byte or LUAC_DATA is not Lua 5.3's")
    int_size, size_t_in, _instr, lint, _lnum = sz
    if int_size != 4 or size_t_in not in (4, 8) or lint != 8:
        raise BytecodeError(f"bytecode with int={int_size}, size_t={size_t_in}, "
                            f"integer={lint}: only int=4, integer=8 with size_t 4 or 8 is "
                            "translated")
    if struct.unpack_from("<q", data, 17)[0] != 0x5678:
        raise BytecodeError("bytecode is big-endian (LUAC_INT check failed)")
    if size_t_in == size_t_out:
        return data
    rw = _Rewriter(data, size_t_in, size_t_out)
    rw.copy(HEADER_LEN, "header")
    rw.out[SIZES_AT + 1] = size_t_out
    rw.byte("main upvalue count")
    rw.function()
    if rw.pos != len(data):
        raise BytecodeError(f"bytecode: {len(data) - rw.pos} unexpected bytes after the main "
                            f"function at offset {rw.pos}")
    return bytes(rw.out)


def translate_32_to_64(data: bytes) -> bytes:
    """Device bytecode (size_t=4) to the 64-bit host's layout (size_t=8)."""
    return convert(data, 8)


def translate_64_to_32(data: bytes) -> bytes:
    """The inverse: what the device's luac would have written for a host-dumped chunk."""
    return convert(data, 4)


def host_loadable(data: bytes) -> bytes:
    """``data`` unchanged unless it is device bytecode we can translate (then translated)."""
    sz = sizes(data)
    if sz is None or sz == (4, 8, 4, 8, 8) or sz != (4, 4, 4, 8, 8):
        return data
    try:
        return translate_32_to_64(data)
    except BytecodeError:
        return data  # the loader's check explains why it cannot run
