"""Durations, one rule for every API and CLI: a duration names its unit.

``500ms``, ``10s``, ``10m``, ``4h``, ``30d``, chained parts (``1h30m``). A bare number (``10``,
``"10"``, ``2.5``) is refused with a message saying how to write it, because ``10`` means
10 ms in one tool and 10 s in another; only ``0`` needs no unit. Values the code computes
itself travel as integers in parameters whose names end in ``_ms``.
"""

from __future__ import annotations

import re

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d)")
_NUMBER_RE = re.compile(r"^\d+(?:\.\d+)?$")
_EXAMPLES = "e.g. 500ms, 10s, 10m, 4h, 30d"

Duration = str | int | float


def parse_duration(value: Duration) -> int:
    """Milliseconds of a duration (see the module docstring); raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"duration {value!r}: expected {_EXAMPLES}")
    if isinstance(value, int | float):
        if value == 0:
            return 0
        if value < 0:
            raise ValueError(f"duration {value!r} is negative")
        raise ValueError(f"duration {value!r} has no unit: write '{value}s' or '{value}ms' "
                         f"({_EXAMPLES})")
    text = str(value).strip().lower()
    if text == "0":
        return 0
    if _NUMBER_RE.match(text):
        raise ValueError(f"duration {value!r} has no unit: write '{text}s' or '{text}ms' "
                         f"({_EXAMPLES})")
    pos, total = 0, 0.0
    for m in _PART_RE.finditer(text):
        if m.start() != pos and text[pos:m.start()].strip():
            break
        total += float(m[1]) * _UNITS[m[2]]
        pos = m.end()
    if pos == 0 or text[pos:].strip():
        raise ValueError(f"duration {value!r}: expected {_EXAMPLES}")
    return int(total)


def format_ms(ms: int) -> str:
    """A virtual timestamp for humans: ``3.250s``, ``4h00m01.000s``, ``2d03h...``."""
    s, msr = divmod(int(ms), 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    if d:
        return f"{d}d{h:02d}h{m:02d}m{s:02d}.{msr:03d}s"
    if h:
        return f"{h}h{m:02d}m{s:02d}.{msr:03d}s"
    if m:
        return f"{m}m{s:02d}.{msr:03d}s"
    return f"{s}.{msr:03d}s"
