"""zbuff: the firmware's fixed-capacity byte buffer, as socket.rx and friends use it.

A zbuff has a capacity (``len``), a count of valid bytes (``used``) and a cursor. Writes go at
the cursor and extend ``used``; reads come from the cursor. ``query()`` with no arguments
returns the used region and ``del()`` with no arguments empties it — the pattern every socket
receiver relies on. A ZBuff is a firmware object (``luatos_sim.objects``): Lua sees a ``ZBUFF*``
userdata, and every binding that takes a zbuff receives the ZBuff itself.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ..cfunc import BadArgument, lua_type_name

if TYPE_CHECKING:
    from ..vm import Boot

SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2
ZBUFF_TYPE = "ZBUFF*"  # the metatable name in the firmware (no __tostring: "ZBUFF*: 0x...")

_TYPES = {
    "U8": "<B", "I8": "<b", "U16": "<H", "I16": "<h", "U32": "<I", "I32": "<i",
    "U64": "<Q", "I64": "<q", "F32": "<f", "F64": "<d",
}


class ZBuff:
    """One pointer, as on the device: ``used`` is both the count of valid bytes and the cursor.

    write/read/pack/unpack/seek all move it; query/del/socket.rx treat [0, used) as the data.
    That is why a receiver can ``seek(0)`` before ``socket.rx`` to overwrite the old packet,
    and why ``read`` is bounded by the capacity, not by ``used``.
    """

    def __init__(self, size: int, fill: int = 0) -> None:
        self.buf = bytearray([fill & 0xFF]) * size
        self.used = 0

    @property
    def cursor(self) -> int:
        return self.used

    @cursor.setter
    def cursor(self, value: int) -> None:
        self.used = value

    @property
    def capacity(self) -> int:
        return len(self.buf)

    def write_bytes(self, data: bytes) -> int:
        n = max(0, min(self.capacity - self.used, len(data)))
        self.buf[self.used:self.used + n] = data[:n]
        self.used += n
        return n

    def append(self, data: bytes) -> int:
        """Put data at the pointer, growing the buffer if needed (what socket.rx does)."""
        end = self.used + len(data)
        if end > self.capacity:
            self.buf.extend(b"\0" * (end - self.capacity))
        self.buf[self.used:end] = data
        self.used = end
        return len(data)

    def read_bytes(self, n: int) -> bytes:
        n = max(0, min(n, self.capacity - self.used))
        out = bytes(self.buf[self.used:self.used + n])
        self.used += n
        return out

    def seek(self, offset: int, whence: int = SEEK_SET) -> int:
        base = {SEEK_SET: 0, SEEK_CUR: self.used, SEEK_END: self.capacity}.get(whence)
        if base is None:
            return self.used
        self.used = max(0, min(self.capacity, base + offset))
        return self.used

    def query(self, offset: int | None = None, length: int | None = None) -> bytes:
        """Bytes of [0, used): offset < 0 counts back from used; empty when out of range."""
        start = 0 if offset is None else offset
        if start < 0:
            start += self.used
            if start < 0:
                return b""
        start = min(start, self.used)
        n = self.used - start if length is None else max(0, min(length, self.used - start))
        return bytes(self.buf[start:start + n])

    def to_str(self, offset: int = 0, length: int | None = None) -> bytes:
        """Any part of the whole capacity, ignoring the pointer (zbuff:toStr)."""
        start = max(0, min(offset, self.capacity))
        n = self.capacity if length is None else length
        if n < 0:
            return b""
        return bytes(self.buf[start:start + min(n, self.capacity - start)])

    def delete(self, offset: int | None = None, length: int | None = None) -> None:
        start = 0 if offset is None else offset
        if start < 0:
            start += self.used
            if start < 0:
                return
        if start >= self.used:
            return
        n = self.used if length is None else length
        n = min(max(0, n), self.used - start)
        if n == 0:
            return
        del self.buf[start:start + n]
        self.buf.extend(b"\0" * n)
        self.used -= n


_PACK_CODES = {
    "c": ("b", True), "b": ("B", True), "h": ("h", True), "H": ("H", True),
    "i": ("i", True), "I": ("I", True), "l": ("q", True), "L": ("Q", True),
    "f": ("f", False), "d": ("d", False), "n": ("d", False),
}


def _format_items(fmt: str) -> list[tuple[str, int, bool]]:
    """(code, count, had_count) for each item of a pack format; raises on an unknown code."""
    items: list[tuple[str, int, bool]] = []
    i = 0
    while i < len(fmt):
        code = fmt[i]
        i += 1
        j = i
        while j < len(fmt) and fmt[j].isdigit():
            j += 1
        had = j > i
        count = int(fmt[i:j]) if had else 1
        i = j
        if code not in _PACK_CODES and code not in "<>=A ,":
            raise ValueError(f"bad code `{code}'")
        items.append((code, count, had))
    return items


def pack_into(z: ZBuff, fmt: str, values: list[Any]) -> int:
    """zbuff:pack: write values at the pointer until the buffer is full; bytes written."""
    order = "<"  # the module's native order (little-endian SoCs)
    written = 0
    it = iter(values)
    for code, count, _had in _format_items(fmt):
        if code in "<>=":
            order = "<" if code == "=" else code
            continue
        if code in " ,":
            continue
        for _ in range(count):
            if z.used >= z.capacity:
                return written
            v = next(it, None)
            if code == "A":
                if not isinstance(v, bytes):
                    raise ValueError(f"bad argument to 'pack' (string expected, got {v!r})")
                written += z.write_bytes(v)
                continue
            sfmt, is_int = _PACK_CODES[code]
            if not isinstance(v, int | float):
                raise ValueError(f"bad argument to 'pack' (number expected, got {v!r})")
            if is_int:
                bits = struct.calcsize(sfmt) * 8
                n = int(v) & ((1 << bits) - 1)
                if sfmt.islower() and n >= 1 << (bits - 1):
                    n -= 1 << bits
                raw = struct.pack(order + sfmt, n)
            else:
                raw = struct.pack(order + sfmt, float(v))
            written += z.write_bytes(raw)
    return written


def unpack_from(z: ZBuff, fmt: str) -> tuple[int, list[Any]]:
    """zbuff:unpack: read from the pointer; stops at the first item that does not fit."""
    order = "<"
    data = bytes(z.buf[z.used:])
    pos = 0
    out: list[Any] = []
    for code, count, had in _format_items(fmt):
        if code in "<>=":
            order = "<" if code == "=" else code
            continue
        if code in " ,":
            continue
        if code == "A":
            if had and count == 0:
                out.append(b"")
                continue
            if pos + count > len(data):
                break
            out.append(data[pos:pos + count])
            pos += count
            continue
        sfmt, _is_int = _PACK_CODES[code]
        size = struct.calcsize(sfmt)
        stop = False
        for _ in range(count):
            if pos + size > len(data):
                stop = True
                break
            out.append(struct.unpack(order + sfmt, data[pos:pos + size])[0])
            pos += size
        if stop:
            break
    z.used += pos
    return pos, out


def install(boot: Boot) -> None:
    def handle(obj: Any) -> ZBuff:
        if isinstance(obj, ZBuff):
            return obj
        raise BadArgument(f"bad argument #1 to 'zbuff' ({ZBUFF_TYPE} expected, got "
                          f"{lua_type_name(obj)})")

    def wrap(z: ZBuff) -> ZBuff:
        return z

    def create(size: Any, fill: Any = 0, *_: Any) -> Any:
        if isinstance(size, int | float) and int(size) > 0:
            if isinstance(fill, bytes):  # initial content: the pointer ends after it
                z = ZBuff(int(size))
                z.write_bytes(fill)
                return wrap(z)
            return wrap(ZBuff(int(size), int(fill) if isinstance(fill, int | float) else 0))
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
            elif isinstance(item, ZBuff):
                total += z.write_bytes(item.query())
            elif item is not None and boot.lua_type(item) == b"table":
                total += z.write_bytes(bytes(int(v) & 0xFF for v in item.values()))
        return total

    def m_read(obj: Any, n: int = 0) -> bytes:
        return handle(obj).read_bytes(int(n))

    def m_seek(obj: Any, offset: int = 0, whence: int = SEEK_SET) -> int:
        return handle(obj).seek(int(offset), int(whence))

    def m_query(obj: Any, offset: Any = None, length: Any = None, bigend: Any = None,
                signed: Any = None, isfloat: Any = None) -> Any:
        """Bytes of [0, used), nil when that is empty; with bigend given, 1/2/4/8 bytes are
        decoded as a number instead (signed/isfloat select the kind)."""
        data = handle(obj).query(None if offset is None else int(offset),
                                 None if length is None else int(length))
        if not data:
            return None
        if isinstance(bigend, bool) and len(data) in (1, 2, 4, 8):
            order = ">" if bigend else "<"
            if isfloat is True and len(data) in (4, 8):
                return struct.unpack(order + ("f" if len(data) == 4 else "d"), data)[0]
            if len(data) == 4:  # 32-bit values always come back signed on the device
                return struct.unpack(order + "i", data)[0]
            if len(data) == 8:
                return struct.unpack(order + "q", data)[0]
            code = {1: "B", 2: "H"}[len(data)]
            return struct.unpack(order + (code.lower() if signed is True else code), data)[0]
        return data

    def m_to_str(obj: Any, offset: Any = None, length: Any = None) -> bytes:
        return handle(obj).to_str(int(offset) if offset is not None else 0,
                                  None if length is None else int(length))

    def m_pack(obj: Any, fmt: Any = None, *values: Any) -> int:
        if not isinstance(fmt, bytes):
            raise ValueError("bad argument #1 to 'pack' (string expected)")
        return pack_into(handle(obj), fmt.decode("latin-1"), list(values))

    def m_unpack(obj: Any, fmt: Any = None) -> Any:
        if not isinstance(fmt, bytes):
            raise ValueError("bad argument #1 to 'unpack' (string expected)")
        n, values = unpack_from(handle(obj), fmt.decode("latin-1"))
        return (n, *values)

    def m_copy(obj: Any, start: Any = None, *items: Any) -> int:
        """Write at ``start`` (default: used; < 0 counts back), growing the buffer; used only
        ever moves forward."""
        z = handle(obj)
        pos = int(start) if isinstance(start, int | float) else z.used
        if pos < 0:
            pos += z.used
            if pos < 0:
                return 0
        first = items[0] if items else None
        if isinstance(first, int):
            data = bytes(int(v) & 0xFF for v in items if isinstance(v, int))
        elif isinstance(first, bytes):
            data = first
        elif isinstance(first, ZBuff):
            other = first
            off = int(items[1]) if len(items) > 1 and items[1] is not None else 0
            n = int(items[2]) if len(items) > 2 and items[2] is not None else other.used
            data = bytes(other.buf[off:off + n])
        else:
            return 0
        end = pos + len(data)
        if end > z.capacity:
            z.buf.extend(b"\0" * (end - z.capacity))
        z.buf[pos:end] = data
        z.used = max(z.used, end)
        return len(data)

    def m_set(obj: Any, start: Any = 0, value: Any = 0, length: Any = None) -> None:
        z = handle(obj)
        begin = max(0, min(int(start or 0), z.capacity))
        n = z.capacity if length is None else int(length)
        n = max(0, min(n, z.capacity - begin))
        z.buf[begin:begin + n] = bytes([int(value or 0) & 0xFF]) * n

    def m_is_equal(obj: Any, start: Any = 0, other: Any = None, start2: Any = 0,
                   length: Any = 1) -> tuple[bool, int]:
        a, b2 = handle(obj), handle(other)
        s1, s2, n = int(start or 0), int(start2 or 0), int(length or 1)
        for i in range(n):
            if a.buf[s1 + i:s1 + i + 1] != b2.buf[s2 + i:s2 + i + 1]:
                return False, i
        return True, 0

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
        "toStr": m_to_str, "free": lambda obj: None, "pack": m_pack, "unpack": m_unpack,
        "copy": m_copy, "set": m_set, "isEqual": m_is_equal, "reSize": m_resize,
        "get": lambda obj, i=0: m_index(obj, int(i)),
    }
    for tname, fmt in _TYPES.items():
        size = struct.calcsize(fmt)

        def reader(obj: Any, _fmt: str = fmt, _size: int = size) -> Any:
            z = handle(obj)
            if z.capacity - z.used < _size:
                return None  # out of range: nil, and the pointer stays
            return struct.unpack(_fmt, z.read_bytes(_size))[0]

        def writer(obj: Any, *values: Any, _fmt: str = fmt) -> int:
            z = handle(obj)
            total = 0
            for v in values[:1]:  # one value per call, as on the device
                if z.capacity - z.used < struct.calcsize(_fmt):
                    return 0
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

    boot.objects.define(ZBuff, ZBUFF_TYPE, methods=methods, index=m_index, newindex=m_newindex,
                        length=m_len)
    boot.firmware_module("zbuff", {"create": create},
                         {"SEEK_SET": SEEK_SET, "SEEK_CUR": SEEK_CUR, "SEEK_END": SEEK_END})
