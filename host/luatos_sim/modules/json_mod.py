"""json with lua-cjson semantics as LuatOS ships it.

decode returns ``obj, 1`` or ``nil, false, err`` (never raises); integers stay integers; a
table with array length > 0 encodes as an array, otherwise as an object; non-integral floats
use ``%.7f``; ``/`` is not escaped; UTF-8 passes through raw.
"""

from __future__ import annotations

import json as pyjson
import math
from typing import TYPE_CHECKING, Any

import lupa.lua53 as lua53

if TYPE_CHECKING:
    from ..vm import Boot

_MAX_DEPTH = 1000
_ESCAPES = {0x22: b'\\"', 0x5C: b"\\\\", 0x08: b"\\b", 0x0C: b"\\f", 0x0A: b"\\n",
            0x0D: b"\\r", 0x09: b"\\t"}
_ESCAPE_TABLE = [
    _ESCAPES.get(i, (b"\\u%04x" % i) if (i < 0x20 or i == 0x7F) else bytes([i]))
    for i in range(256)
]
_NEEDS_ESCAPE = frozenset(i for i in range(256) if _ESCAPE_TABLE[i] != bytes([i]))


class EncodeError(ValueError):
    pass


def _escape(data: bytes) -> bytes:
    if not any(c in _NEEDS_ESCAPE for c in data):
        return b'"' + data + b'"'
    return b'"' + b"".join(_ESCAPE_TABLE[c] for c in data) + b'"'


class JsonNull:
    """``json.null``: a NULL light userdata on the device (``type`` is "userdata")."""


NULL = JsonNull()
# How the device prints a NULL pointer with %p is UNCONFIRMED (docs/defaults.md).
NULL_TEXT = b"userdata: NULL"


def install(boot: Boot) -> None:
    lua = boot.lua
    null = NULL
    boot.objects.define(JsonNull, None, tostring=lambda _: NULL_TEXT)
    lua_type = lua.globals().type
    float_fmt = ["%.7f"]

    def to_lua(v: Any) -> Any:
        if isinstance(v, str):
            return v.encode("utf-8", "surrogateescape")
        if isinstance(v, dict):
            t = lua.table()
            for k, item in v.items():
                t[k.encode("utf-8", "surrogateescape")] = to_lua(item)
            return t
        if isinstance(v, list):
            t = lua.table()
            for i, item in enumerate(v, 1):
                t[i] = to_lua(item)
            return t
        if v is None:
            return null
        if isinstance(v, int) and not isinstance(v, bool) and not -2**63 <= v < 2**63:
            return float(v)
        return v

    def decode(text: Any = None, *_: Any) -> tuple[Any, ...]:
        if not isinstance(text, bytes):
            return (None, False, b"json.decode: argument must be a string")
        try:
            value = pyjson.loads(text.decode("utf-8", "surrogateescape"))
        except (ValueError, RecursionError) as e:
            return (None, False, f"Expected value but found invalid token: {e}".encode())
        return (to_lua(value), 1)

    def encode_value(v: Any, depth: int, out: list[bytes]) -> None:
        if depth > _MAX_DEPTH:
            raise EncodeError("Cannot serialise, excessive nesting (1001)")
        if v is None:
            out.append(b"null")
        elif v is True:
            out.append(b"true")
        elif v is False:
            out.append(b"false")
        elif isinstance(v, int):
            out.append(str(v).encode())
        elif isinstance(v, float):
            if math.isnan(v) or math.isinf(v):
                out.append(b"nan" if math.isnan(v) else (b"inf" if v > 0 else b"-inf"))
            elif abs(v) < 1e-7:
                out.append(b"0")
            else:
                out.append((float_fmt[0] % v).encode())
        elif isinstance(v, bytes):
            out.append(_escape(v))
        elif v is null:
            out.append(b"null")
        elif lua_type(v) == b"table":
            encode_table(v, depth + 1, out)
        else:
            raise EncodeError(f"Cannot serialise {lua_type(v).decode()}: type not supported")

    def encode_table(t: Any, depth: int, out: list[bytes]) -> None:
        n = len(t)
        if n > 0:
            out.append(b"[")
            for i in range(1, n + 1):
                if i > 1:
                    out.append(b",")
                encode_value(t[i], depth, out)
            out.append(b"]")
            return
        out.append(b"{")
        first = True
        for k, v in t.items():
            if isinstance(k, bytes):
                key = k
            elif isinstance(k, int | float) and not isinstance(k, bool):
                key = str(k).encode()
            else:
                raise EncodeError("Cannot serialise table: table key must be a number or string")
            if not first:
                out.append(b",")
            first = False
            out.append(_escape(key))
            out.append(b":")
            encode_value(v, depth, out)
        out.append(b"}")

    def encode(value: Any = None, fmt: Any = None) -> tuple[Any, ...]:
        if value is None:
            return (b"",)
        if isinstance(fmt, bytes) and fmt.startswith(b"%"):
            float_fmt[0] = fmt.decode()
        out: list[bytes] = []
        try:
            encode_value(value, 0, out)
        except EncodeError as e:
            return (None, str(e).encode())
        except lua53.LuaError as e:
            return (None, str(e).encode())
        finally:
            float_fmt[0] = "%.7f"
        return (b"".join(out),)

    boot.firmware_module("json", {"decode": decode, "encode": encode}, {"null": null})
