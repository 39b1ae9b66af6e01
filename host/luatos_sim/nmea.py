"""NMEA 0183 text as the firmware's parser (minmea, as LuatOS builds it) reads it.

One place for the sentence rules both halves of GNSS need: the simulated receiver
(platform/gnss.py) frames what it sends with :func:`sentence`, and the libgnss binding reads
lines with :func:`sentence_type` and :func:`scan`. The reading side follows the firmware's
acceptance rules rather than a general NMEA library's, because a script can tell them apart:

- a line starts with ``$``; up to ``*`` every character is printable;
- the checksum is optional (the firmware asks for the non-strict check), but a checksum that is
  there must match, or the whole line is dropped;
- after the checksum only CR / LF may follow;
- numbers keep their digits: ``2324.40756`` is the fixed-point pair (232440756, 100000), which is
  what ``getIntLocation`` and ``locStr(1)`` hand back as integers.
"""

from __future__ import annotations

import operator
import re
import struct
from dataclasses import dataclass
from functools import reduce

INT32_MAX = 2**31 - 1

# Sentence types the firmware's minmea recognises (anything else is "unknown" and only reaches
# libgnss.on("other", ...)).
KNOWN_TYPES = frozenset({"GBS", "GGA", "GLL", "GSA", "GST", "GSV", "RMC", "VTG", "ZDA", "TXT"})


def checksum(body: str) -> int:
    """XOR of the characters between ``$`` and ``*``."""
    return reduce(operator.xor, body.encode("latin-1"), 0)


def sentence(body: str) -> bytes:
    """``$<body>*HH\\r\\n`` for a body such as ``GNRMC,...``."""
    return f"${body}*{checksum(body):02X}\r\n".encode("ascii")


def f32(x: float) -> float:
    """``x`` rounded to a C ``float``: the firmware computes its numbers in single precision."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


@dataclass(frozen=True)
class Fixed:
    """A minmea fixed-point number: ``value / scale``; scale 0 means the field was empty."""

    value: int = 0
    scale: int = 0

    def signed(self, sign: int) -> Fixed:
        return Fixed(self.value * sign, self.scale)

    def to_float(self) -> float:
        """minmea_tofloat, in single precision as on the device."""
        if self.scale == 0:
            return 0.0
        return f32(f32(self.value) / f32(self.scale))

    def _deg_min(self) -> tuple[int, int]:
        # C integer division and remainder truncate toward zero
        unit = self.scale * 100
        degrees = abs(self.value) // unit * (1 if self.value >= 0 else -1)
        return degrees, self.value - degrees * unit

    def to_coord(self) -> float:
        """minmea_tocoord: DDMM.MMMM to decimal degrees (single precision)."""
        if self.scale == 0 or self.scale > INT32_MAX // 100:
            return 0.0
        degrees, minutes = self._deg_min()
        return f32(f32(degrees) + f32(f32(minutes) / f32(60 * self.scale)))

    def to_coord_e7(self) -> int:
        """The firmware's tocoord2: degrees x 10^7 as a uint32. A southern or western value
        wraps (the minutes part, negative, converts to 0 on the ARM cores; UNCONFIRMED,
        docs/defaults.md)."""
        if self.scale == 0 or self.scale > INT32_MAX // 100:
            return 0
        degrees, minutes = self._deg_min()
        frac = f32(f32(f32(minutes) / f32(60 * self.scale)) * f32(10_000_000))
        part = int(frac) if frac > 0 else 0
        return (degrees * 10_000_000 + part) & 0xFFFFFFFF


def _hex(ch: str) -> int:
    return int(ch, 16) if ch in "0123456789abcdefABCDEF" else -1


_PRINTABLE = re.compile(r"[\x20-\x7e]*")


def check(line: str) -> bool:
    """The firmware's non-strict minmea_check."""
    if not line.startswith("$"):
        return False
    end = _PRINTABLE.match(line, 1).end()  # type: ignore[union-attr]
    star = line.find("*", 1, end)
    i = star if star != -1 else end
    if i < len(line) and line[i] == "*":
        hi = _hex(line[i + 1]) if i + 1 < len(line) else -1
        lo = _hex(line[i + 2]) if i + 2 < len(line) else -1
        if hi < 0 or lo < 0 or checksum(line[1:i]) != (hi << 4 | lo):
            return False
        i += 3
    return line[i:].strip("\r\n") == ""


def _fields(line: str) -> list[str]:
    """The comma-separated fields, the talker+type first, without ``$`` and the checksum."""
    body = line[1:].split("*", 1)[0].rstrip("\r\n")
    return body.split(",")


def sentence_type(line: str) -> str | None:
    """``"RMC"``, ``"GSV"``, ... for a line the firmware accepts; ``""`` for an accepted line
    of a type it does not know; None for a line it drops."""
    if not check(line):
        return None
    tag = _fields(line)[0]
    if len(tag) < 5 or not all(ch.isprintable() for ch in tag[:5]):
        return None
    kind = tag[2:]
    return kind if kind in KNOWN_TYPES else ""


class ScanError(ValueError):
    """A field does not fit its format: the firmware drops the sentence."""


def _number(field: str) -> Fixed:
    sign, value, scale = 0, -1, 0
    for ch in field:
        if ch in "+-" and not sign and value == -1:
            sign = 1 if ch == "+" else -1
        elif ch.isdigit():
            digit = int(ch)
            if value == -1:
                value = 0
            if value > (INT32_MAX - digit) // 10:
                if scale:
                    break  # extra precision is truncated
                raise ScanError(field)
            value = value * 10 + digit
            if scale:
                scale *= 10
        elif ch == "." and scale == 0:
            scale = 1
        elif ch == " " and sign == 0 and value == -1 and scale == 0:
            continue
        else:
            raise ScanError(field)
    if (sign or scale) and value == -1:
        raise ScanError(field)
    if value == -1:
        return Fixed(0, 0)
    return Fixed(value * (sign or 1), scale or 1)


def _direction(field: str) -> int:
    if not field:
        return 0
    try:
        return {"N": 1, "E": 1, "S": -1, "W": -1}[field[0]]
    except KeyError:
        raise ScanError(field) from None


_C_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def _integer(field: str) -> int:
    """minmea's ``i``: ``strtol`` on the field (leading spaces skipped, nothing after the digits),
    saturated to the 32-bit ``long`` of the module's ARM core."""
    if not field:
        return 0
    m = _C_INT.fullmatch(field)
    if m is None:
        raise ScanError(field)
    return min(max(int(m.group(1)), _INT32_MIN), _INT32_MAX)


@dataclass(frozen=True)
class Clock:
    """A time of day; -1 everywhere when the field was empty."""

    hours: int = -1
    minutes: int = -1
    seconds: int = -1
    microseconds: int = -1


@dataclass(frozen=True)
class Date:
    day: int = -1
    month: int = -1
    year: int = -1  # two digits in RMC, four in ZDA


def _clock(field: str) -> Clock:
    if not field:
        return Clock()
    if len(field) < 6 or not field[:6].isdigit():
        raise ScanError(field)
    micro = 0
    if field[6:7] == ".":
        digits = ""
        for ch in field[7:13]:
            if not ch.isdigit():
                break
            digits += ch
        micro = int(digits.ljust(6, "0")) if digits else 0
    return Clock(int(field[:2]), int(field[2:4]), int(field[4:6]), micro)


def _date(field: str) -> Date:
    if not field:
        return Date()
    if len(field) < 6 or not field[:6].isdigit():
        raise ScanError(field)
    return Date(int(field[:2]), int(field[2:4]), int(field[4:6]))


def scan(line: str, fmt: str) -> tuple[list[object], bool]:
    """minmea_scan: one value per format letter after the talker, which is skipped. ``c``
    char, ``d`` direction, ``f`` :class:`Fixed`, ``i`` int, ``s`` str, ``D`` :class:`Date`,
    ``T`` :class:`Clock`, ``_`` skipped; after ``;`` fields are optional. Returns the values
    and whether the scan succeeded: like minmea, a failed scan has filled the values before
    the bad field (the rest are None), and the firmware's getters show them anyway."""
    fields = _fields(line)
    letters = [k for k in fmt if k != ";"]
    out: list[object] = [None] * len(letters)
    optional = False
    pos = 1
    index = 0
    for kind in fmt:
        if kind == ";":
            optional = True
            continue
        if pos >= len(fields) and not optional:
            return out, False
        text = fields[pos] if pos < len(fields) else ""
        pos += 1
        try:
            out[index] = _scan_one(kind, text)
        except ScanError:
            return out, False
        index += 1
    return out, True


def _scan_one(kind: str, text: str) -> object:
    if kind == "c":
        return text[0] if text else ""
    if kind == "d":
        return _direction(text)
    if kind == "f":
        return _number(text)
    if kind == "i":
        return _integer(text)
    if kind == "s":
        return text
    if kind == "D":
        return _date(text)
    if kind == "T":
        return _clock(text)
    if kind == "_":
        return None
    raise ValueError(f"unknown scan format {kind!r}")
