"""pack: the firmware's lpack-style ``pack.pack(fmt, ...)`` / ``pack.unpack(s, fmt, init)``.

Vendor sensor demos decode I2C replies with it (``local _, t = pack.unpack(data, ">H")``).
As in the firmware: ``unpack`` returns the next position first (a float, as ``lua_pushnumber``
makes it) and stops quietly at the end of the data, so a short reply gives fewer values (an
empty ``i2c.recv`` gives none); ``l``/``L``/``a`` are 8 bytes on 64-bit builds and 4 on 32-bit
ones; ``c`` is a signed byte; spaces and commas are ignored; any other letter is
``bad code `x'``.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..vm import Boot

_INTS = {"c": "b", "b": "B", "h": "h", "H": "H", "i": "i", "I": "I"}
_FLOATS = {"f": "f", "d": "d", "n": "d"}


def _codes(fmt: str) -> list[tuple[str, int | None]]:
    """(code, count or None) in order."""
    out: list[tuple[str, int | None]] = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        i += 1
        j = i
        while j < len(fmt) and fmt[j].isdigit():
            j += 1
        out.append((c, int(fmt[i:j]) if j > i else None))
        i = j
    return out


def install(boot: Boot) -> None:
    wide = boot.profile.bits == 64
    ints = {**_INTS, "l": "q" if wide else "i", "L": "Q" if wide else "I"}
    size_t = "Q" if wide else "I"

    def bad(c: str) -> TypeError:
        from ..cfunc import BadArgument
        return BadArgument(f"bad argument #1 to '?' (bad code `{c}')")

    def unpack(data: bytes, fmt: bytes, init: Any = 1) -> tuple[Any, ...]:
        i = int(init) - 1 if isinstance(init, int | float) else 0
        order = "<"
        values: list[Any] = []
        n = len(data)
        for c, count in _codes(fmt.decode("latin-1")):
            if c in "<>=":
                order = {"<": "<", ">": ">", "=": "<"}[c]
                continue
            if c in " ,":
                continue
            if c == "A":
                k = 1 if count is None else count
                if k == 0:
                    values.append(b"")
                    continue
                if i + k > n:
                    break
                values.append(data[i:i + k])
                i += k
                continue
            reps = 1 if count is None else count
            stop = False
            for _ in range(reps):
                if c == "z":
                    if i >= n:
                        stop = True
                        break
                    end = data.find(b"\0", i)
                    end = n if end < 0 else end
                    values.append(data[i:end])
                    i = end + 1
                elif c in "pPa":
                    code = {"p": "B", "P": "H", "a": size_t}[c]
                    m = struct.calcsize(code)
                    if i + m > n:
                        stop = True
                        break
                    (length,) = struct.unpack(order + code, data[i:i + m])
                    if i + m + length > n:
                        stop = True
                        break
                    values.append(data[i + m:i + m + length])
                    i += m + length
                elif c in ints or c in _FLOATS:
                    code = ints.get(c) or _FLOATS[c]
                    m = struct.calcsize(code)
                    if i + m > n:
                        stop = True
                        break
                    (v,) = struct.unpack(order + code, data[i:i + m])
                    values.append(float(v) if c in _FLOATS else int(v))
                    i += m
                else:
                    raise bad(c)
            if stop:
                break
        return (float(i + 1), *values)

    def pack(fmt: bytes, *args: Any) -> bytes:
        out = bytearray()
        order = "<"
        k = 0

        def arg() -> Any:
            nonlocal k
            k += 1
            if k - 1 >= len(args):
                from ..cfunc import BadArgument
                raise BadArgument(f"bad argument #{k + 1} to 'pack' (number expected, got "
                                  "no value)")
            return args[k - 1]

        for c, count in _codes(fmt.decode("latin-1")):
            if c in "<>=":
                order = {"<": "<", ">": ">", "=": "<"}[c]
                continue
            for _ in range(1 if count is None else count):
                if c in " ,":
                    break
                if c in "Az":
                    v = arg()
                    s = v if isinstance(v, bytes) else str(v).encode()
                    out += s + (b"\0" if c == "z" else b"")
                elif c in "pPa":
                    v = arg()
                    s = v if isinstance(v, bytes) else str(v).encode()
                    code = {"p": "B", "P": "H", "a": size_t}[c]
                    bits = struct.calcsize(code) * 8
                    out += struct.pack(order + code, len(s) & ((1 << bits) - 1)) + s
                elif c in _FLOATS:
                    out += struct.pack(order + _FLOATS[c], float(arg()))
                elif c in ints:
                    code = ints[c]
                    bits = struct.calcsize(code) * 8
                    v = int(arg()) & ((1 << bits) - 1)  # the C cast keeps the low bits
                    out += struct.pack(order + code.upper(), v)
                else:
                    raise bad(c)
        return bytes(out)

    boot.firmware_module("pack", {"pack": pack, "unpack": unpack})
