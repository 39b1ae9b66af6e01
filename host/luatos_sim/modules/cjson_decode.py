"""json.decode as lua-cjson parses: the same acceptance, the same error wording.

The firmware's json module is lua-cjson. A script that logs a decode error sees cjson's text
(``Expected value but found T_OBJ_END at character 8``), and cjson accepts what ``strtod``
accepts as a number (hex, ``inf``, ``nan``, leading zeros), nests at most 1000 deep, and
refuses trailing data. Python's json module differs on all of these, so this is a small
tokenizer and recursive parser written from cjson's documented behaviour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 1000

# Token names as cjson reports them.
T_OBJ_BEGIN, T_OBJ_END, T_ARR_BEGIN, T_ARR_END = "T_OBJ_BEGIN", "T_OBJ_END", "T_ARR_BEGIN", \
    "T_ARR_END"
T_STRING, T_NUMBER, T_BOOLEAN, T_NULL = "T_STRING", "T_NUMBER", "T_BOOLEAN", "T_NULL"
T_COLON, T_COMMA, T_END, T_ERROR = "T_COLON", "T_COMMA", "T_END", "T_ERROR"

_PUNCT = {ord("{"): T_OBJ_BEGIN, ord("}"): T_OBJ_END, ord("["): T_ARR_BEGIN,
          ord("]"): T_ARR_END, ord(":"): T_COLON, ord(","): T_COMMA}
_WS = b" \t\r\n"
# What C's strtod takes as a number (the longest match at the token start).
_NUMBER = re.compile(
    rb"[+-]?(?:0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
    rb"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    rb"|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])")
_INTEGER = re.compile(rb"-?[0-9]+")
_ESCAPES = {ord("b"): "\b", ord("f"): "\f", ord("n"): "\n", ord("r"): "\r", ord("t"): "\t",
            ord('"'): '"', ord("\\"): "\\", ord("/"): "/"}


class DecodeError(ValueError):
    """A decode failure, worded as cjson words it."""


@dataclass
class _Token:
    kind: str
    index: int  # 0-based position of the token's first byte
    value: Any = None  # the value, or the error text of a T_ERROR token


class _Parser:
    def __init__(self, data: bytes, null: Any) -> None:
        self.data = data
        self.pos = 0
        self.depth = 0
        self.null = null

    # -- tokens -----------------------------------------------------------------------------------

    def next_token(self) -> _Token:
        data, n = self.data, len(self.data)
        while self.pos < n and data[self.pos] in _WS:
            self.pos += 1
        start = self.pos
        if start >= n:
            return _Token(T_END, start)
        ch = data[start]
        kind = _PUNCT.get(ch)
        if kind is not None:
            self.pos += 1
            return _Token(kind, start)
        if ch == ord('"'):
            return self._string(start)
        if data.startswith(b"true", start):
            self.pos += 4
            return _Token(T_BOOLEAN, start, True)
        if data.startswith(b"false", start):
            self.pos += 5
            return _Token(T_BOOLEAN, start, False)
        if data.startswith(b"null", start):
            self.pos += 4
            return _Token(T_NULL, start, self.null)
        if ch in b"-0123456789iInN":
            return self._number(start)
        return _Token(T_ERROR, start, "invalid token")

    def _number(self, start: int) -> _Token:
        m = _NUMBER.match(self.data, start)
        if m is None:
            return _Token(T_ERROR, start, "invalid number")
        text = m.group(0)
        self.pos = m.end()
        if _INTEGER.fullmatch(text):
            v = int(text)
            if -2**63 <= v < 2**63:
                return _Token(T_NUMBER, start, v)
            return _Token(T_NUMBER, start, float(v))
        low = text.lower().lstrip(b"+-")
        sign = -1.0 if text.startswith(b"-") else 1.0
        if low.startswith(b"0x"):
            return _Token(T_NUMBER, start, sign * float.fromhex(low.decode()))
        if low.startswith(b"inf"):
            return _Token(T_NUMBER, start, sign * float("inf"))
        if low == b"nan":
            return _Token(T_NUMBER, start, float("nan"))
        return _Token(T_NUMBER, start, float(text))

    def _string(self, start: int) -> _Token:
        data, n = self.data, len(self.data)
        i = start + 1
        out: list[str] = []
        chunk_start = i
        while True:
            if i >= n:
                return _Token(T_ERROR, start, "unexpected end of string")
            ch = data[i]
            if ch == ord('"'):
                out.append(data[chunk_start:i].decode("utf-8", "surrogateescape"))
                self.pos = i + 1
                return _Token(T_STRING, start, "".join(out))
            if ch != ord("\\"):
                i += 1
                continue
            out.append(data[chunk_start:i].decode("utf-8", "surrogateescape"))
            if i + 1 >= n:
                return _Token(T_ERROR, start, "unexpected end of string")
            esc = data[i + 1]
            if esc == ord("u"):
                code, used = self._unicode(i)
                if code is None:
                    return _Token(T_ERROR, start, "invalid unicode escape code")
                out.append(code)
                i += used
            elif esc in _ESCAPES:
                out.append(_ESCAPES[esc])
                i += 2
            else:
                return _Token(T_ERROR, start, "invalid escape code")
            chunk_start = i

    def _unicode(self, i: int) -> tuple[str | None, int]:
        """A \\uXXXX escape at ``i`` (a surrogate pair takes two): the text and bytes used."""
        first = self._hex4(i + 2)
        if first is None:
            return None, 0
        if 0xDC00 <= first <= 0xDFFF:
            return None, 0
        if 0xD800 <= first <= 0xDBFF:
            if self.data[i + 6:i + 8] != b"\\u":
                return None, 0
            second = self._hex4(i + 8)
            if second is None or not 0xDC00 <= second <= 0xDFFF:
                return None, 0
            return chr(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)), 12
        return chr(first), 6

    def _hex4(self, at: int) -> int | None:
        digits = self.data[at:at + 4]
        if len(digits) != 4 or not all(c in b"0123456789abcdefABCDEF" for c in digits):
            return None
        return int(digits, 16)

    # -- values -----------------------------------------------------------------------------------

    def fail(self, expected: str, token: _Token) -> DecodeError:
        found = token.value if token.kind == T_ERROR else token.kind
        return DecodeError(f"Expected {expected} but found {found} at character {token.index + 1}")

    def descend(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise DecodeError(f"Found too many nested data structures ({self.depth}) at "
                              f"character {self.pos}")

    def value(self, token: _Token) -> Any:
        if token.kind == T_OBJ_BEGIN:
            return self.obj()
        if token.kind == T_ARR_BEGIN:
            return self.arr()
        if token.kind in (T_STRING, T_NUMBER, T_BOOLEAN, T_NULL):
            return token.value
        raise self.fail("value", token)

    def obj(self) -> dict[str, Any]:
        self.descend()
        out: dict[str, Any] = {}
        token = self.next_token()
        if token.kind == T_OBJ_END:
            self.depth -= 1
            return out
        while True:
            if token.kind != T_STRING:
                raise self.fail("object key string", token)
            key = token.value
            token = self.next_token()
            if token.kind != T_COLON:
                raise self.fail("colon", token)
            out[key] = self.value(self.next_token())
            token = self.next_token()
            if token.kind == T_OBJ_END:
                self.depth -= 1
                return out
            if token.kind != T_COMMA:
                raise self.fail("comma or object end", token)
            token = self.next_token()

    def arr(self) -> list[Any]:
        self.descend()
        out: list[Any] = []
        token = self.next_token()
        if token.kind == T_ARR_END:
            self.depth -= 1
            return out
        while True:
            out.append(self.value(token))
            token = self.next_token()
            if token.kind == T_ARR_END:
                self.depth -= 1
                return out
            if token.kind != T_COMMA:
                raise self.fail("comma or array end", token)
            token = self.next_token()


def decode(data: bytes, null: Any = None) -> Any:
    """Parse ``data`` like cjson; JSON null becomes ``null``. Raises DecodeError."""
    p = _Parser(data, null)
    result = p.value(p.next_token())
    token = p.next_token()
    if token.kind != T_END:
        raise p.fail("the end", token)
    return result
