"""The schema side of the firmware's ``protobuf`` module: LuatOS wraps lua-protobuf's ``pb.h``
(components/serialization/protobuf), and this is that library's type registry and ``.pb``
loader, reimplemented from its documented behaviour.

Why not google.protobuf's descriptor pool: the firmware's loader is lax where that pool is
strict (a field may name a type no file defines; a malformed trailing tag ends the set and the
load still succeeds; reloading a file revives and overwrites its types), it reports how far it
read, and the order in which ``encode`` writes fields is the slot order of pb.h's own hash
table keyed by field number, not field-number order. Each of these is visible to a script.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1
# Deepest nesting of groups or descriptor messages read (*ours*: the device's C stack gives out
# somewhere; a real schema is a handful of levels deep).
MAX_NESTING = 100

# Wire types and their names as pb.h prints them in errors.
VARINT, FIXED64, BYTES, GSTART, GEND, FIXED32 = range(6)
WIRE_NAMES = ("varint", "64bit", "bytes", "gstart", "gend", "32bit")
NO_WIRE = 6  # pb.h's PB_TWIRECOUNT: what a group or an unknown type maps to

# FieldDescriptorProto.Type numbers, which pb.h uses as its own type ids.
DOUBLE, FLOAT, INT64, UINT64, INT32, FIXED64_T, FIXED32_T, BOOL, STRING, GROUP, MESSAGE, \
    BYTES_T, UINT32, ENUM, SFIXED32, SFIXED64, SINT32, SINT64 = range(1, 19)
TYPE_NAMES = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64",
              7: "fixed32", 8: "bool", 9: "string", 10: "group", 11: "message", 12: "bytes",
              13: "uint32", 14: "enum", 15: "sfixed32", 16: "sfixed64", 17: "sint32",
              18: "sint64"}
_WIRE_OF = {DOUBLE: FIXED64, FLOAT: FIXED32, INT64: VARINT, UINT64: VARINT, INT32: VARINT,
            FIXED64_T: FIXED64, FIXED32_T: FIXED32, BOOL: VARINT, STRING: BYTES,
            MESSAGE: BYTES, BYTES_T: BYTES, UINT32: VARINT, ENUM: VARINT, SFIXED32: FIXED32,
            SFIXED64: FIXED64, SINT32: VARINT, SINT64: VARINT}


def wire_of(type_id: int) -> int:
    return _WIRE_OF.get(type_id, NO_WIRE)


def wire_name(wire: int) -> str:
    return WIRE_NAMES[wire] if 0 <= wire < len(WIRE_NAMES) else "<unknown>"


def type_name(type_id: int) -> str:
    return TYPE_NAMES.get(type_id, "<unknown>")


# --- the wire format, with pb.h's limits ---------------------------------------------------

def read_varint(data: bytes, p: int, end: int) -> tuple[int, int] | None:
    """A varint of at most 10 bytes ending before ``end``: (value mod 2^64, next position),
    or None (the position is then unchanged, as in pb.h)."""
    n = 0
    for i in range(10):
        if p + i >= end:
            return None
        b = data[p + i]
        n |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return n & MASK64, p + i + 1
    return None


def skip_value(data: bytes, p: int, end: int, tag: int, depth: int = 0) -> int | None:
    """pb_skipvalue: the position after the value of ``tag``, or None when it cannot be
    skipped (wire types 4, 6 and 7 never can)."""
    wire = tag & 7
    if wire == VARINT:
        q = p
        while q < end and data[q] & 0x80:
            q += 1
        return q + 1 if q < end else None
    if wire in (FIXED64, FIXED32):
        size = 8 if wire == FIXED64 else 4
        return p + size if p + size <= end else None
    if wire == BYTES:
        got = read_varint(data, p, end)
        if got is None or end - got[1] < got[0]:
            return None
        return got[1] + got[0]
    if wire == GSTART:
        if depth >= MAX_NESTING:  # hostile nesting of groups: unreadable, not a Python stack overflow
            return None
        q = p
        while (got := read_varint(data, q, end)) is not None:
            inner, q = got[0] & MASK32, got[1]
            if inner & 7 == GEND:
                return q if inner >> 3 == tag >> 3 else None
            nxt = skip_value(data, q, end, inner, depth + 1)
            if nxt is None:
                return None
            q = nxt
    return None


def varint_bytes(v: int) -> bytes:
    v &= MASK64
    out = bytearray()
    while v > 0x7F:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


# --- pb.h's integer-keyed hash table: its slot order is the order encode writes fields ------

class SlotTable:
    """pb_Table keyed by integers (field numbers, enum values): open hashing with chains
    through the free slots taken from the top, slot 0 reserved for key 0, doubled when no
    slot is free (from 8). Kept exact because iteration walks the slots."""

    def __init__(self) -> None:
        self.size = 0
        self.lastfree = 0
        self.has_zero = False
        self.keys: list[int] = []
        self.nexts: list[int] = []
        self.values: list[Any] = []

    def _main(self, key: int) -> int:
        h = (key * 2654435761) & (self.size - 1)
        return 1 if key and h == 0 else h

    def find(self, key: int) -> int | None:
        if self.size == 0:
            return None
        if key == 0:
            return 0 if self.has_zero else None
        i = self._main(key)
        while self.keys[i] != key:
            if self.nexts[i] == 0:
                return None
            i += self.nexts[i]
        return i

    def get(self, key: int) -> Any:
        i = self.find(key)
        return None if i is None else self.values[i]

    def slot(self, key: int) -> int:
        """pb_settable: the slot of ``key``, made if missing (value None)."""
        i = self.find(key)
        return i if i is not None else self._newkey(key)

    def _newkey(self, key: int) -> int:
        if self.size == 0:
            self._resize(0)
        if key == 0:
            mp = 0
            self.has_zero = True
        else:
            mp = self._main(key)
            if self.keys[mp] != 0:
                free = None
                while self.lastfree > 1:
                    self.lastfree -= 1
                    if self.keys[self.lastfree] == 0 and self.nexts[self.lastfree] == 0:
                        free = self.lastfree
                        break
                if free is None:
                    self._resize(self.size * 2)
                    return self._newkey(key)
                on = self._main(self.keys[mp])
                if on != mp:  # the occupant is not in its own main slot: move it
                    while on + self.nexts[on] != mp:
                        on += self.nexts[on]
                    self.nexts[on] = free - on
                    self.keys[free], self.nexts[free] = self.keys[mp], self.nexts[mp]
                    self.values[free] = self.values[mp]
                    if self.nexts[mp] != 0:
                        self.nexts[free] += mp - free
                        self.nexts[mp] = 0
                else:
                    if self.nexts[mp] != 0:
                        self.nexts[free] = mp - free + self.nexts[mp]
                    self.nexts[mp] = free - mp
                    mp = free
        self.keys[mp] = key
        self.values[mp] = None
        return mp

    def _resize(self, wanted: int) -> None:
        size = 8
        while size < wanted:
            size <<= 1
        old = list(zip(self.keys, self.values, strict=True))
        self.size, self.lastfree, self.has_zero = size, size, False
        self.keys, self.nexts, self.values = [0] * size, [0] * size, [None] * size
        for key, value in old:  # every old slot, empty ones too (they land on slot 0)
            self.values[self._newkey(key)] = value

    def remove(self, key: int) -> None:
        i = self.find(key)
        if i is not None:
            self.keys[i] = 0
            self.values[i] = None

    def in_order(self) -> list[Any]:
        """The values in pb_nextentry order: slot 0 when it holds key 0, then slots 1.. ."""
        out = []
        if self.has_zero and self.values[0] is not None:
            out.append(self.values[0])
        for i in range(1, self.size):
            if self.keys[i] != 0 and self.values[i] is not None:
                out.append(self.values[i])
        return out


# --- the registry ---------------------------------------------------------------------------

@dataclass(eq=False)
class PbField:
    name: bytes
    number: int
    owner: PbType
    type: PbType | None = None  # the message or enum type of a message/enum field
    type_id: int = 0
    default: bytes | None = None
    oneof: int = 0
    repeated: bool = False
    packed: bool = False


@dataclass(eq=False)
class PbType:
    name: bytes
    tags: SlotTable = field(default_factory=SlotTable)
    names: dict[bytes, PbField] = field(default_factory=dict)
    oneofs: dict[int, bytes] = field(default_factory=dict)
    is_enum: bool = False
    is_map: bool = False
    is_proto3: bool = False
    is_dead: bool = False

    def field(self, number: int) -> PbField | None:
        f: PbField | None = self.tags.get(number)
        return f

    def fields(self) -> list[PbField]:
        return self.tags.in_order()

    def new_field(self, name: bytes, number: int) -> PbField:
        """pb_newfield: the same name at the same number is the same field (reloading a file);
        otherwise the new field takes both the name and the number."""
        old_by_name = self.names.get(name)
        slot = self.tags.slot(number)
        if old_by_name is not None and self.tags.values[slot] is old_by_name:
            old_by_name.default = None
            return old_by_name
        f = PbField(name, number, self)
        self.names[name] = f
        self.tags.values[slot] = f
        return f


class LoadFailed(Exception):
    """The set is malformed or names a field/type without a name."""


class PbState:
    """The types one boot has loaded (lua-protobuf keeps its state in the Lua registry, so a
    reboot starts empty)."""

    def __init__(self) -> None:
        self.types: dict[bytes, PbType] = {}

    def new_type(self, name: bytes | None) -> PbType:
        if name is None:
            raise LoadFailed
        t = self.types.get(name)
        if t is None:
            t = self.types[name] = PbType(name)
        t.is_dead = False
        return t

    def find(self, name: bytes) -> PbType | None:
        """A type by the name a script gives: ``Person`` means ``.Person``."""
        t = self.types.get(name if name.startswith(b".") else b"." + name)
        return t if t is not None and not t.is_dead else None

    def clear(self) -> None:
        self.types.clear()

    @staticmethod
    def drop_type(t: PbType) -> None:
        t.tags, t.names, t.oneofs, t.is_dead = SlotTable(), {}, {}, True

    @staticmethod
    def drop_field(t: PbType, f: PbField) -> None:
        if t.names.get(f.name) is f:
            del t.names[f.name]
        if t.field(f.number) is f:
            t.tags.remove(f.number)

    def load(self, data: bytes) -> tuple[bool, int]:
        """pb_load: (loaded, 1 + how far the reader got)."""
        reader = _Reader(data)
        try:
            files = reader.file_set()
            _Register(self).files(files)
        except LoadFailed:
            return False, reader.p + 1
        return True, reader.p + 1


# --- the .pb reader: the FileDescriptorSet fields pb.h reads, nothing else -------------------

@dataclass
class _FieldInfo:
    name: bytes | None = None
    type_name: bytes | None = None
    extendee: bytes | None = None
    default: bytes | None = None
    number: int = 0
    label: int = 0
    type: int = 0
    oneof: int = 0
    packed: int = -1


@dataclass
class _EnumInfo:
    name: bytes | None = None
    values: list[tuple[bytes | None, int]] = field(default_factory=list)


@dataclass
class _TypeInfo:
    name: bytes | None = None
    is_map: int = 0
    fields: list[_FieldInfo] = field(default_factory=list)
    extensions: list[_FieldInfo] = field(default_factory=list)
    enums: list[_EnumInfo] = field(default_factory=list)
    nested: list[_TypeInfo] = field(default_factory=list)
    oneofs: list[bytes] = field(default_factory=list)


@dataclass
class _FileInfo:
    package: bytes | None = None
    syntax: bytes | None = None
    enums: list[_EnumInfo] = field(default_factory=list)
    messages: list[_TypeInfo] = field(default_factory=list)
    extensions: list[_FieldInfo] = field(default_factory=list)


def _int32(v: int) -> int:
    v &= MASK32
    return v - (1 << 32) if v >> 31 else v


class _Reader:
    """One cursor over the set; entering a message narrows it, and a failure leaves it where
    the failure was (that is what ``load`` reports)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.p, self.end = data, 0, len(data)
        self.depth = 0

    def tags(self) -> Any:
        while (got := read_varint(self.data, self.p, self.end)) is not None:
            self.p = got[1]
            yield got[0] & MASK32

    def skip(self, tag: int) -> None:
        nxt = skip_value(self.data, self.p, self.end, tag)
        if nxt is None:
            raise LoadFailed
        self.p = nxt

    def bytes_(self) -> bytes:
        got = read_varint(self.data, self.p, self.end)
        if got is None or self.end - got[1] < got[0]:
            raise LoadFailed
        start = got[1]
        self.p = start + got[0]
        return self.data[start:self.p]

    def int32(self) -> int:
        got = read_varint(self.data, self.p, self.end)
        if got is None:
            raise LoadFailed
        self.p = got[1]
        return _int32(got[0])

    def message(self, parse: Callable[[Any], None], target: Any) -> None:
        got = read_varint(self.data, self.p, self.end)
        if got is None or self.end - got[1] < got[0] or self.depth >= MAX_NESTING:
            raise LoadFailed  # (a descriptor nested past MAX_NESTING is hostile, not a schema)
        outer_end, after = self.end, got[1] + got[0]
        self.p, self.end = got[1], after
        self.depth += 1
        parse(target)
        self.depth -= 1
        self.p, self.end = after, outer_end

    def file_set(self) -> list[_FileInfo]:
        files: list[_FileInfo] = []
        for tag in self.tags():
            if tag == (1 << 3 | BYTES):
                info = _FileInfo()
                files.append(info)
                self.message(self._file, info)
            else:
                self.skip(tag)
        return files

    def _file(self, info: _FileInfo) -> None:
        for tag in self.tags():
            if tag == (2 << 3 | BYTES):
                info.package = self.bytes_()
            elif tag == (4 << 3 | BYTES):
                t = _TypeInfo()
                info.messages.append(t)
                self.message(self._type, t)
            elif tag == (5 << 3 | BYTES):
                e = _EnumInfo()
                info.enums.append(e)
                self.message(self._enum, e)
            elif tag == (7 << 3 | BYTES):
                f = _FieldInfo()
                info.extensions.append(f)
                self.message(self._field, f)
            elif tag == (12 << 3 | BYTES):
                info.syntax = self.bytes_()
            else:
                self.skip(tag)

    def _type(self, info: _TypeInfo) -> None:
        for tag in self.tags():
            number, wire = tag >> 3, tag & 7
            if wire == BYTES and number == 1:
                info.name = self.bytes_()
            elif wire == BYTES and number in (2, 6):
                f = _FieldInfo()
                (info.fields if number == 2 else info.extensions).append(f)
                self.message(self._field, f)
            elif wire == BYTES and number == 3:
                t = _TypeInfo()
                info.nested.append(t)
                self.message(self._type, t)
            elif wire == BYTES and number == 4:
                e = _EnumInfo()
                info.enums.append(e)
                self.message(self._enum, e)
            elif wire == BYTES and number == 8:
                self.message(self._oneof, info)
            elif wire == BYTES and number == 7:
                self.message(self._message_options, info)
            else:
                self.skip(tag)

    def _oneof(self, info: _TypeInfo) -> None:
        for tag in self.tags():
            if tag == (1 << 3 | BYTES):
                info.oneofs.append(self.bytes_())
            else:
                self.skip(tag)

    def _message_options(self, info: _TypeInfo) -> None:
        for tag in self.tags():
            if tag == (7 << 3 | VARINT):
                info.is_map = self.int32()
            else:
                self.skip(tag)

    def _enum(self, info: _EnumInfo) -> None:
        for tag in self.tags():
            if tag == (1 << 3 | BYTES):
                info.name = self.bytes_()
            elif tag == (2 << 3 | BYTES):
                value: list[Any] = [None, 0]
                self.message(self._enum_value, value)
                info.values.append((value[0], value[1]))
            else:
                self.skip(tag)

    def _enum_value(self, value: list[Any]) -> None:
        for tag in self.tags():
            if tag == (1 << 3 | BYTES):
                value[0] = self.bytes_()
            elif tag == (2 << 3 | VARINT):
                value[1] = self.int32()
            else:
                self.skip(tag)

    def _field(self, info: _FieldInfo) -> None:
        for tag in self.tags():
            number, wire = tag >> 3, tag & 7
            if wire == BYTES and number in (1, 2, 6, 7):
                text = self.bytes_()
                if number == 1:
                    info.name = text
                elif number == 2:
                    info.extendee = text
                elif number == 6:
                    info.type_name = text
                else:
                    info.default = text
            elif wire == VARINT and number in (3, 4, 5, 9):
                v = self.int32()
                if number == 3:
                    info.number = v
                elif number == 4:
                    info.label = v
                elif number == 5:
                    info.type = v
                else:
                    info.oneof = v + 1
            elif wire == BYTES and number == 8:
                self.message(self._field_options, info)
            else:
                self.skip(tag)

    def _field_options(self, info: _FieldInfo) -> None:
        for tag in self.tags():
            if tag == (2 << 3 | VARINT):
                info.packed = self.int32()
            else:
                self.skip(tag)


class _Register:
    """pbL_loadFile: types are named ``.package.Outer.Inner``; proto3 only when the file says
    ``syntax = "proto3"``."""

    def __init__(self, state: PbState) -> None:
        self.state = state
        self.proto3 = False

    def files(self, files: list[_FileInfo]) -> None:
        for info in files:
            prefix = b"." + info.package if info.package is not None else b""
            self.proto3 = info.syntax == b"proto3"
            for e in info.enums:
                self._enum(prefix, e)
            for m in info.messages:
                self._type(prefix, m)
            for x in info.extensions:
                self._field(x, None)

    @staticmethod
    def _full(prefix: bytes, name: bytes | None) -> bytes:
        return prefix + b"." + (name or b"")

    def _enum(self, prefix: bytes, info: _EnumInfo) -> None:
        t = self.state.new_type(self._full(prefix, info.name))
        t.is_enum = True
        for name, number in info.values:
            if name is None:
                raise LoadFailed
            t.new_field(name, number)

    def _type(self, prefix: bytes, info: _TypeInfo) -> None:
        name = self._full(prefix, info.name)
        t = self.state.new_type(name)
        t.is_map, t.is_proto3 = bool(info.is_map), self.proto3
        for i, oneof in enumerate(info.oneofs, 1):
            t.oneofs[i] = oneof
        for f in info.fields:
            self._field(f, t)
        for x in info.extensions:
            self._field(x, None)
        for e in info.enums:
            self._enum(name, e)
        for n in info.nested:
            self._type(name, n)

    def _field(self, info: _FieldInfo, t: PbType | None) -> None:
        ft = None
        if info.type in (MESSAGE, ENUM):
            ft = self.state.new_type(info.type_name)
        if t is None:
            t = self.state.new_type(info.extendee)
        if info.name is None:
            raise LoadFailed
        f = t.new_field(info.name, info.number)
        f.default = info.default
        f.type = ft
        f.oneof = info.oneof & 0xFFFFFF
        f.type_id = info.type & 31
        f.repeated = info.label == 3
        packed = info.packed & 1 if info.packed >= 0 else self.proto3 and f.repeated
        f.packed = bool(packed) and not STRING <= f.type_id <= BYTES_T
