"""zbuff: the firmware's fixed-capacity byte buffer, as socket.rx and friends use it.

A zbuff has a capacity (``len``), a count of valid bytes (``used``) and a cursor. Writes go at
the cursor and extend ``used``; reads come from the cursor. ``query()`` with no arguments
returns the used region and ``del()`` with no arguments empties it — the pattern every socket
receiver relies on. The Lua object is a table with a metatable whose methods call into this
Python object (lupa cannot bind ``obj:method()`` on Python objects directly).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..vm import Boot

SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2

_TYPES = {
    "U8": "<B", "I8": "<b", "U16": "<H", "I16": "<h", "U32": "<I", "I32": "<i",
    "U64": "<Q", "I64": "<q", "F32": "<f", "F64": "<d",
}


class ZBuff:
    def __init__(self, size: int, fill: int = 0) -> None:
        self.buf = bytearray([fill & 0xFF]) * size
        self.used = 0
        self.cursor = 0

    @property
    def capacity(self) -> int:
        return len(self.buf)

    def write_bytes(self, data: bytes) -> int:
        room = self.capacity - self.cursor
        n = min(room, len(data))
        if n <= 0:
            return 0
        self.buf[self.cursor:self.cursor + n] = data[:n]
        self.cursor += n
        self.used = max(self.used, self.cursor)
        return n

    def append(self, data: bytes) -> int:
        """Put data after the used region (what socket.rx does); returns bytes stored."""
        if self.used + len(data) > self.capacity:
            self.buf.extend(b"\0" * (self.used + len(data) - self.capacity))
        self.buf[self.used:self.used + len(data)] = data
        self.used += len(data)
        return len(data)

    def read_bytes(self, n: int) -> bytes:
        n = max(0, min(n, self.used - self.cursor))
        out = bytes(self.buf[self.cursor:self.cursor + n])
        self.cursor += n
        return out

    def seek(self, offset: int, whence: int = SEEK_SET) -> int:
        base = {SEEK_SET: 0, SEEK_CUR: self.cursor, SEEK_END: self.used}.get(whence, 0)
        self.cursor = max(0, min(self.capacity, base + offset))
        return self.cursor

    def query(self, offset: int | None = None, length: int | None = None) -> bytes:
        if offset is None:
            return bytes(self.buf[:self.used])
        if length is None:
            length = self.used - offset
        return bytes(self.buf[offset:offset + max(0, length)])

    def delete(self, offset: int | None = None, length: int | None = None) -> None:
        if offset is None:
            self.used = 0
            self.cursor = 0
            return
        if length is None:
            length = self.used - offset
        end = min(self.used, offset + length)
        if offset >= end:
            return
        del self.buf[offset:end]
        self.buf.extend(b"\0" * (end - offset))
        removed = end - offset
        self.used -= removed
        if self.cursor > offset:
            self.cursor = max(offset, self.cursor - removed)


def install(boot: Boot) -> None:
    lua = boot.lua

    def handle(obj: Any) -> ZBuff:
        return obj[b"_h"]

    def create(size: Any, fill: Any = 0, *_: Any) -> Any:
        if isinstance(size, int | float) and int(size) > 0:
            return wrap(ZBuff(int(size), int(fill or 0)))
        if isinstance(size, bytes):
            z = ZBuff(len(size))
            z.write_bytes(size)
            return wrap(z)
        return None

    def m_write(obj: Any, *items: Any) -> int:
        z = handle(obj)
        total = 0
        for item in items:
            if isinstance(item, bytes):
                total += z.write_bytes(item)
            elif isinstance(item, int):
                total += z.write_bytes(bytes([item & 0xFF]))
            elif item is not None and boot.lua_type(item) == b"table":
                if item[b"_h"] is not None:
                    total += z.write_bytes(handle(item).query())
                else:
                    total += z.write_bytes(bytes(int(v) & 0xFF for v in item.values()))
        return total

    def m_read(obj: Any, n: int = 0) -> bytes:
        return handle(obj).read_bytes(int(n))

    def m_seek(obj: Any, offset: int = 0, whence: int = SEEK_SET) -> int:
        return handle(obj).seek(int(offset), int(whence))

    def m_query(obj: Any, offset: Any = None, length: Any = None, *_: Any) -> bytes:
        return handle(obj).query(None if offset is None else int(offset),
                                 None if length is None else int(length))

    def m_del(obj: Any, offset: Any = None, length: Any = None) -> None:
        handle(obj).delete(None if offset is None else int(offset),
                           None if length is None else int(length))

    def m_used(obj: Any, n: Any = None) -> int:
        z = handle(obj)
        if n is not None:
            z.used = max(0, min(z.capacity, int(n)))
        return z.used

    def m_len(obj: Any, *_: Any) -> int:
        return handle(obj).capacity

    def m_resize(obj: Any, n: int) -> None:
        z = handle(obj)
        n = int(n)
        if n > z.capacity:
            z.buf.extend(b"\0" * (n - z.capacity))
        else:
            del z.buf[n:]
            z.used = min(z.used, n)
            z.cursor = min(z.cursor, n)

    def m_clear(obj: Any, value: int = 0) -> None:
        z = handle(obj)
        z.buf[:] = bytes([int(value) & 0xFF]) * z.capacity

    def m_index(obj: Any, i: int) -> int | None:
        z = handle(obj)
        return z.buf[i] if 0 <= i < z.capacity else None

    def m_newindex(obj: Any, i: int, v: int) -> None:
        z = handle(obj)
        if 0 <= i < z.capacity:
            z.buf[i] = int(v) & 0xFF

    methods: dict[str, Any] = {
        "write": m_write, "read": m_read, "seek": m_seek, "query": m_query, "del": m_del,
        "used": m_used, "len": m_len, "resize": m_resize, "clear": m_clear,
        "toStr": m_query, "free": lambda obj: None,
    }
    for tname, fmt in _TYPES.items():
        size = struct.calcsize(fmt)

        def reader(obj: Any, _fmt: str = fmt, _size: int = size) -> Any:
            data = handle(obj).read_bytes(_size)
            return struct.unpack(_fmt, data)[0] if len(data) == _size else None

        def writer(obj: Any, *values: Any, _fmt: str = fmt) -> int:
            z = handle(obj)
            total = 0
            for v in values:
                if _fmt[-1] in "fd":
                    total += z.write_bytes(struct.pack(_fmt, float(v)))
                    continue
                n = int(v)
                bits = struct.calcsize(_fmt) * 8
                n &= (1 << bits) - 1
                if _fmt[-1].islower() and n >= 1 << (bits - 1):
                    n -= 1 << bits
                total += z.write_bytes(struct.pack(_fmt, n))
            return total

        methods["read" + tname] = reader
        methods["write" + tname] = writer

    mt_factory = lua.execute(b"""
      local methods, index, newindex = ...
      local mt = {}
      mt.__name = "zbuff"
      mt.__index = function(t, k)
        if type(k) == "number" then return index(t, k) end
        return methods[k]
      end
      mt.__newindex = function(t, k, v)
        if type(k) == "number" then return newindex(t, k, v) end
        rawset(t, k, v)
      end
      mt.__len = function(t) return methods.len(t) end
      mt.__tostring = function(t) return "zbuff: " .. tostring(rawget(t, "_h")) end
      return function(h) return setmetatable({_h = h}, mt) end
    """, lua.table_from({k.encode(): v for k, v in methods.items()}), m_index, m_newindex)

    def wrap(z: ZBuff) -> Any:
        return mt_factory(z)

    boot.zbuff_wrap = wrap  # type: ignore[attr-defined]
    boot.zbuff_handle = handle  # type: ignore[attr-defined]
    boot.firmware_module("zbuff", {"create": create},
                         {"SEEK_SET": SEEK_SET, "SEEK_CUR": SEEK_CUR, "SEEK_END": SEEK_END})
