"""protobuf: Lua tables to protobuf messages and back, as the firmware's module does (LuatOS
components/serialization/protobuf: lua-protobuf's pb.h with its default options, exposing
``load``, ``encode``, ``decode`` and ``clear``). The schema side is :mod:`luatos_sim.pb_schema`.

What a script meets, each from that source (docs/defaults.md, "protobuf"):

- ``load(data)`` returns ``true/false`` and 1 + the bytes read; ``load(nil)`` (a missing file
  read with ``io.readFile``) is a Lua error, and so is ``encode``/``decode`` of a type that is
  not loaded: ``bad argument #1 to 'encode' (type 'Person' does not exists)``. A bad value is a
  Lua error naming the field, never a nil return (the API page's "nil on failure" is not what
  the code does).
- Type names work with or without the leading dot (``Person`` is ``.Person``).
- Fields are written in the slot order of pb.h's hash table; proto3 scalars equal to zero are
  left out, except oneof members and enums; map entries leave out a zero key or value.
- Decoding a proto3 message fills every missing scalar with its zero (enums: the name of the
  value 0), repeated and map fields with an empty table, and leaves sub-messages nil; proto2
  fills nothing. Enums decode as names, unknown numbers as integers; int64 as Lua integers
  (uint64 above 2^63 wraps negative, the 64-bit VM's ``lua_Integer``); unknown fields are
  skipped; a oneof member also sets ``<oneof name> = "<member name>"``.
"""

from __future__ import annotations

import math
import re
import struct
from typing import TYPE_CHECKING, Any

import lupa.lua53 as lua53

from ..cfunc import BadArgument, lua_integer, lua_number_text, lua_str2number, lua_type_name
from ..ctext import c_string
from ..pb_schema import (
    BOOL,
    BYTES,
    BYTES_T,
    DOUBLE,
    ENUM,
    FIXED32,
    FIXED32_T,
    FIXED64,
    FIXED64_T,
    FLOAT,
    INT32,
    INT64,
    MASK32,
    MASK64,
    MESSAGE,
    SFIXED32,
    SFIXED64,
    SINT32,
    SINT64,
    STRING,
    UINT32,
    UINT64,
    VARINT,
    PbField,
    PbState,
    PbType,
    read_varint,
    skip_value,
    type_name,
    varint_bytes,
    wire_name,
    wire_of,
)

if TYPE_CHECKING:
    from ..vm import Boot

MAX_DEPTH = 100  # nesting before "too many levels" (ours: the device runs out of C stack first)
MAX_BYTES_LEN = MASK32 - 100  # pb.h's PB_MAX_SIZET on the 32-bit chips
_NOTHING = object()
_INT_TYPES = {INT64, UINT64, INT32, FIXED64_T, FIXED32_T, UINT32, SFIXED32, SFIXED64, SINT32,
              SINT64}


class PbError(ValueError):
    """A luaL_error of the module: Lua sees the text after the caller's position."""


def _s64(v: int) -> int:
    v &= MASK64
    return v - (1 << 64) if v >> 63 else v


def _s32(v: int) -> int:
    v &= MASK32
    return v - (1 << 32) if v >> 31 else v


def _text(v: bytes) -> str:
    """A Lua string as ``%s`` prints it (up to a byte 0)."""
    return c_string(v).decode("utf-8", "replace")


def _to_number(v: Any) -> float | int | None:
    """lua_tonumberx."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return v
    if isinstance(v, bytes):
        return lua_str2number(v)
    return None


def _to_integer(v: Any) -> int | None:
    """lua_tointegerx, then pb.h's own reading of the text (``#`` and signs, hex, and decimal
    digits where ``a`` counts as 10): the value mod 2^64, or None for a non-number."""
    if isinstance(v, bool):
        return None
    n = lua_integer(_to_number(v))
    if n is not None:
        return n & MASK64
    if isinstance(v, float):
        text = lua_number_text(v)
    elif isinstance(v, bytes):
        text = c_string(v)
    elif isinstance(v, int):  # unreachable: ints return above
        return v & MASK64
    else:
        return None
    i, neg, value = 0, False, 0
    while i < len(text) and text[i] in b"#+-":
        neg ^= text[i] == 0x2D
        i += 1
    if text[i:i + 1] == b"0" and text[i + 1:i + 2] in (b"x", b"X"):
        i += 2
        while i < len(text) and (d := _hexdigit(text[i])) >= 0:
            value = (value << 4 | d) & MASK64
            i += 1
    else:
        while i < len(text) and 0 <= (d := _hexdigit(text[i])) <= 10:
            value = (value * 10 + d) & MASK64
            i += 1
    if i != len(text):
        raise PbError(f"integer format error: '{_text(text)}'")
    return (-value if neg else value) & MASK64


def _hexdigit(c: int) -> int:
    ch = chr(c)
    return int(ch, 16) if ch in "0123456789abcdefABCDEF" else -1


def _enum_number(v: float) -> int:
    """``(uint64_t)lua_tonumber(v)`` on the ARM chips: negative (and NaN) give 0, too large
    gives all ones (UNCONFIRMED: C leaves it undefined; this is what the ARM EABI helper
    does)."""
    if v != v or v <= -1.0:
        return 0
    if v >= 2.0 ** 64:
        return MASK64
    return int(v)


def _strtol32(text: bytes) -> int | None:
    m = re.match(rb"[ \t\n\v\f\r]*([+-]?\d+)", text)
    if m is None:
        return None
    return max(-(1 << 31), min((1 << 31) - 1, int(m.group(1))))


def _strtod(text: bytes) -> float | None:
    m = re.match(rb"[ \t\n\v\f\r]*([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)", text)
    return float(m.group(1)) if m else None


def install(boot: Boot) -> None:
    state = PbState()
    new_table = boot.lua.table
    rawget = boot.lua.eval("rawget")

    def is_table(v: Any) -> bool:
        return lua53.lua_type(v) == "table"

    def slice_arg(args: tuple[Any, ...], i: int, fname: str) -> bytes:
        v = args[i] if i < len(args) else None
        if isinstance(v, bytes):
            return v
        got = "no value" if i >= len(args) else lua_type_name(v)
        raise BadArgument(f"bad argument #{i + 1} to '{fname}' "
                          f"(string/buffer/slice expected, got {got})")

    def type_arg(args: tuple[Any, ...], fname: str) -> PbType:
        name = slice_arg(args, 0, fname)
        t = state.find(name)
        if t is None:
            raise BadArgument(f"bad argument #1 to '{fname}' "
                              f"(type '{_text(name)}' does not exists)")
        return t

    # --- encode ---

    def encode_message(buf: bytearray, t: PbType, tbl: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise PbError("stack overflow (message too many levels)")
        for f in t.fields():
            v = tbl[f.name]
            if v is None:
                continue
            if f.type is not None and f.type.is_map:
                encode_map(buf, f, v, depth)
            elif f.repeated:
                encode_repeated(buf, f, v, depth)
            elif f.type is None or not f.type.is_dead:
                tag_field(buf, f, t.is_proto3 and not f.oneof, v, depth)

    def check_table(f: PbField, v: Any) -> None:
        if not is_table(v):
            raise BadArgument(f"bad argument #2 to 'encode' (table expected at field "
                              f"'{_text(f.name)}', got {lua_type_name(v)})")

    def tag_field(buf: bytearray, f: PbField, drop_zero: bool, v: Any, depth: int) -> None:
        mark = len(buf)
        buf += varint_bytes((f.number << 3 | wire_of(f.type_id) & 7) & MASK32)
        if encode_value(buf, f, v, depth) and drop_zero:
            del buf[mark:]

    def encode_value(buf: bytearray, f: PbField, v: Any, depth: int) -> bool:
        """Write one value; True when it was the type's zero (proto3 may then drop it)."""
        if f.type_id == ENUM:
            encode_enum(buf, f, v)
            return False
        if f.type_id == MESSAGE:
            check_table(f, v)
            mark = len(buf)
            if f.type is not None:
                encode_message(buf, f.type, v, depth + 1)
            buf[mark:mark] = varint_bytes(len(buf) - mark)
            return False
        zero = encode_scalar(buf, f.type_id, v)
        if zero is None:
            expected = "string" if f.type_id in (STRING, BYTES_T) else "number"
            raise BadArgument(f"bad argument #2 to 'encode' ({expected} expected for field "
                              f"'{_text(f.name)}', got {lua_type_name(v)})")
        return zero

    def encode_enum(buf: bytearray, f: PbField, v: Any) -> None:
        if isinstance(v, int | float) and not isinstance(v, bool):
            buf += varint_bytes(_enum_number(float(v)))
            return
        ev = f.type.names.get(v) if isinstance(v, bytes) and f.type is not None else None
        if ev is not None:
            buf += varint_bytes(ev.number & MASK32)
        elif not isinstance(v, bytes):
            raise BadArgument(f"bad argument #2 to 'encode' (number/string expected at field "
                              f"'{_text(f.name)}', got {lua_type_name(v)})")
        else:
            raise BadArgument(f"bad argument #2 to 'encode' (can not encode unknown enum "
                              f"'{_text(v)}' at field '{_text(f.name)}')")

    def encode_repeated(buf: bytearray, f: PbField, tbl: Any, depth: int) -> None:
        check_table(f, tbl)
        if f.packed:
            mark = len(buf)
            buf += varint_bytes((f.number << 3 | BYTES) & MASK32)
            body = len(buf)
            i = 1
            while (v := rawget(tbl, i)) is not None:
                encode_value(buf, f, v, depth)
                i += 1
            if i == 1:
                del buf[mark:]
            else:
                buf[body:body] = varint_bytes(len(buf) - body)
            return
        i = 1
        while (v := rawget(tbl, i)) is not None:
            tag_field(buf, f, False, v, depth)
            i += 1

    def encode_map(buf: bytearray, f: PbField, tbl: Any, depth: int) -> None:
        assert f.type is not None
        kf, vf = f.type.field(1), f.type.field(2)
        if kf is None or vf is None:
            return
        check_table(f, tbl)
        for k, v in tbl.items():
            buf += varint_bytes((f.number << 3 | BYTES) & MASK32)
            mark = len(buf)
            tag_field(buf, kf, True, k, depth)
            tag_field(buf, vf, True, v, depth)
            buf[mark:mark] = varint_bytes(len(buf) - mark)

    def encode_scalar(buf: bytearray, type_id: int, v: Any) -> bool | None:
        """None: the value is not of the field's kind."""
        if type_id == BOOL:
            truthy = v is not None and v is not False
            buf.append(1 if truthy else 0)
            return not truthy
        if type_id in (DOUBLE, FLOAT):
            n = _to_number(v)
            if n is None:
                return None
            if type_id == DOUBLE:
                buf += struct.pack("<d", float(n))
            else:
                try:
                    buf += struct.pack("<f", float(n))
                except OverflowError:  # C's (float) cast rounds past FLT_MAX to infinity
                    buf += struct.pack("<f", math.copysign(math.inf, float(n)))
            return float(n) == 0.0
        if type_id in (STRING, BYTES_T):
            if not isinstance(v, bytes):
                return None
            buf += varint_bytes(len(v) & MASK32) + v
            return not v
        if type_id in _INT_TYPES:
            u = _to_integer(v)
            if u is None:
                return None
            if type_id == INT32:
                buf += varint_bytes(_s32(u))
            elif type_id == UINT32:
                buf += varint_bytes(u & MASK32)
            elif type_id == SINT32:
                s = _s32(u)
                buf += varint_bytes(((s << 1) ^ (s >> 31)) & MASK32)
            elif type_id in (FIXED32_T, SFIXED32):
                buf += struct.pack("<I", u & MASK32)
            elif type_id in (FIXED64_T, SFIXED64):
                buf += struct.pack("<Q", u)
            elif type_id == SINT64:
                s = _s64(u)
                buf += varint_bytes((s << 1) ^ (s >> 63))
            else:
                buf += varint_bytes(u)
            return u == 0
        raise lua53.LuaError(f"unknown type {type_name(type_id)}")

    def l_encode(*args: Any) -> bytes:
        t = type_arg(args, "encode")
        tbl = args[1] if len(args) > 1 else None
        if not is_table(tbl):
            got = "no value" if len(args) < 2 else lua_type_name(tbl)
            raise BadArgument(f"bad argument #2 to 'encode' (table expected, got {got})")
        buf = bytearray()
        encode_message(buf, t, tbl, 0)
        return bytes(buf)

    # --- decode ---

    def l_decode(*args: Any) -> Any:
        data = b"" if len(args) < 2 or args[1] is None else slice_arg(args, 1, "decode")
        t = type_arg(args, "decode")
        target = args[2] if len(args) > 2 and is_table(args[2]) else type_table(t, 0)
        _Decoder(data).message(t, target, 0)
        return target

    def type_table(t: PbType, depth: int) -> Any:
        """A new message table: a proto3 message starts with its zeros."""
        if depth > MAX_DEPTH:
            raise PbError("stack overflow (too many levels)")
        tbl = new_table()
        if t.is_proto3:
            for f in t.fields():
                if f.repeated:
                    tbl[f.name] = new_table()
                elif not f.oneof and f.type_id != MESSAGE:
                    v = default_of(f, True, depth)
                    if v is not _NOTHING:
                        tbl[f.name] = v
        return tbl

    def default_of(f: PbField | None, proto3: bool, depth: int) -> Any:
        if f is None:
            return _NOTHING
        if f.type_id == ENUM:
            if f.type is None:
                return _NOTHING
            ev = f.type.names.get(f.default) if f.default is not None else None
            if ev is not None:
                return ev.name
            if proto3:
                zero = f.type.field(0)
                return zero.name if zero is not None else 0
            return _NOTHING
        if f.type_id == MESSAGE:
            return type_table(f.type, depth + 1) if f.type is not None else _NOTHING
        if f.default is not None:
            if f.type_id in (STRING, BYTES_T):
                return f.default
            if f.type_id == BOOL:
                return {b"true": True, b"false": False}.get(f.default, _NOTHING)
            if f.type_id in (DOUBLE, FLOAT):
                d = _strtod(f.default)
                return _NOTHING if d is None else d
            n = _strtol32(f.default)
            return _NOTHING if n is None else n
        if not proto3:
            return _NOTHING
        return {STRING: b"", BYTES_T: b"", BOOL: False, DOUBLE: 0.0, FLOAT: 0.0}.get(f.type_id, 0)

    class _Decoder:
        """One pass over the data; positions in errors count from its first byte (1-based),
        inside sub-messages too."""

        def __init__(self, data: bytes) -> None:
            self.data, self.p, self.end = data, 0, len(data)

        def message(self, t: PbType, tbl: Any, depth: int) -> None:
            while (got := read_varint(self.data, self.p, self.end)) is not None:
                self.p = got[1]
                tag = got[0] & MASK32
                f = t.field(tag >> 3)
                if f is None:
                    nxt = skip_value(self.data, self.p, self.end, tag)
                    if nxt is not None:
                        self.p = nxt
                elif f.type is not None and f.type.is_map:
                    sub = self.fetch(tbl, f)
                    self.check(f, tag)
                    self.map_entry(f, sub, depth)
                elif f.repeated:
                    self.repeated(f, tag, self.fetch(tbl, f), depth)
                else:
                    if f.oneof and (oneof := t.oneofs.get(f.oneof)) is not None:
                        tbl[oneof] = f.name
                    self.check(f, tag)
                    tbl[f.name] = self.value(f, depth)

        @staticmethod
        def fetch(tbl: Any, f: PbField) -> Any:
            sub = tbl[f.name]
            if sub is None:
                sub = new_table()
                tbl[f.name] = sub
            return sub

        def check(self, f: PbField, tag: int) -> None:
            want = wire_of(f.type_id)
            if want == tag & 7:
                return
            raise PbError(
                f"type mismatch for {'packed ' if f.packed else ''}"
                f"{'repeated ' if f.repeated else ''}field '{_text(f.name)}' at offset "
                f"{self.p + 1}, {wire_name(want)} expected for type {type_name(f.type_id)}, "
                f"got {wire_name(tag & 7)}")

        def varint(self) -> int:
            got = read_varint(self.data, self.p, self.end)
            if got is None:
                raise PbError(f"invalid varint value at offset {self.p + 1}")
            self.p = got[1]
            return got[0]

        def fixed(self, size: int) -> bytes:
            if self.p + size > self.end:
                raise PbError(f"invalid fixed{size * 8} value at offset {self.p + 1}")
            self.p += size
            return self.data[self.p - size:self.p]

        def span(self) -> tuple[int, int]:
            got = read_varint(self.data, self.p, self.end)
            length = got[0] if got is not None else 0
            if got is None or length > MAX_BYTES_LEN:
                if got is not None:
                    self.p = got[1]
                raise PbError(f"invalid bytes length: {_s32(length)} (at offset {self.p + 1})")
            self.p = got[1]
            if self.end - self.p < length:
                raise PbError(f"unfinished bytes (len {_s32(length)} at offset {self.p + 1})")
            self.p += length
            return self.p - length, self.p

        def within(self, span: tuple[int, int], read: Any) -> None:
            saved = self.p, self.end
            self.p, self.end = span
            try:
                read()
            finally:
                self.p, self.end = saved

        def value(self, f: PbField, depth: int) -> Any:
            if f.type_id == ENUM:
                u = self.varint()
                ev = f.type.field(_s32(u)) if f.type is not None else None
                return ev.name if ev is not None else _s64(u)
            if f.type_id == MESSAGE:
                span = self.span()
                if f.type is None or f.type.is_dead:
                    return None
                sub = type_table(f.type, depth + 1)
                ft = f.type
                self.within(span, lambda: self.message(ft, sub, depth + 1))
                return sub
            return self.scalar(f.type_id)

        def scalar(self, type_id: int) -> Any:
            wire = wire_of(type_id)
            if wire == VARINT:
                u = self.varint()
                if type_id == BOOL:
                    return u != 0
                if type_id == INT32:
                    return _s32(u)
                if type_id == UINT32:
                    return u & MASK32
                if type_id == SINT32:
                    z = u & MASK32
                    return (z >> 1) ^ -(z & 1)
                if type_id == SINT64:
                    return _s64((u >> 1) ^ -(u & 1))
                return _s64(u)
            if wire == FIXED32:
                raw = self.fixed(4)
                if type_id == FLOAT:
                    return float(struct.unpack("<f", raw)[0])
                return struct.unpack("<i" if type_id == SFIXED32 else "<I", raw)[0]
            if wire == FIXED64:
                raw = self.fixed(8)
                if type_id == DOUBLE:
                    return float(struct.unpack("<d", raw)[0])
                return struct.unpack("<q", raw)[0]
            if wire == BYTES:
                start, stop = self.span()
                return self.data[start:stop]
            raise PbError(f"unknown type {type_name(type_id)} ({type_id})")

        def repeated(self, f: PbField, tag: int, sub: Any, depth: int) -> None:
            if tag & 7 != BYTES or (not f.packed and wire_of(f.type_id) == BYTES):
                self.check(f, tag)
                v = self.value(f, depth)
                if v is not None:
                    sub[len(sub) + 1] = v
                return
            span = self.span()
            n = len(sub)

            def read_packed() -> None:
                nonlocal n
                while self.p < self.end:
                    n += 1
                    sub[n] = self.value(f, depth)
            self.within(span, read_packed)

        def map_entry(self, f: PbField, sub: Any, depth: int) -> None:
            span = self.span()
            assert f.type is not None
            entry = f.type
            got: dict[int, Any] = {}

            def read_entry() -> None:
                # Tags other than 1 and 2 are read past as if their values were tags (pb.h).
                while (r := read_varint(self.data, self.p, self.end)) is not None:
                    self.p = r[1]
                    tag = r[0] & MASK32
                    part = entry.field(tag >> 3) if tag >> 3 in (1, 2) else None
                    if part is not None:
                        self.check(part, tag)
                        got[tag >> 3] = self.value(part, depth)
            self.within(span, read_entry)
            for n in (1, 2):
                if n not in got:
                    d = default_of(entry.field(n), True, depth)
                    if d is not _NOTHING:
                        got[n] = d
            if 1 in got and 2 in got and got[1] is not None:
                sub[got[1]] = got[2]

    # --- load / clear ---

    def l_load(*args: Any) -> tuple[bool, int]:
        return state.load(slice_arg(args, 0, "load"))

    def l_clear(*args: Any) -> tuple[()]:
        """Returns nothing (not even nil), as the C function does."""
        if not args or args[0] is None:
            state.clear()
            return ()
        t = state.find(slice_arg(args, 0, "clear"))
        if len(args) < 2 or args[1] is None:
            if t is not None:
                state.drop_type(t)
            return ()
        n = _to_number(args[1])  # lua_tointegerx first: a number (or numeric text) is a tag
        if isinstance(n, float) and n.is_integer():
            n = int(n)
        if isinstance(n, int):
            f = t.field(_s32(n)) if t is not None else None
        else:
            name = slice_arg(args, 1, "clear")
            f = t.names.get(name) if t is not None else None
        if t is not None and f is not None:
            state.drop_field(t, f)
        return ()

    boot.firmware_module("protobuf", {
        "load": l_load, "encode": l_encode, "decode": l_decode, "clear": l_clear,
    })
