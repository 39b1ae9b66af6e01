"""Durations as tests and the CLI write them: ``500ms``, ``10s``, ``10m``, ``4h``, ``30d``."""

from __future__ import annotations

import re

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d)")


def parse_duration(value: str | int | float) -> int:
    """Milliseconds. Numbers are milliseconds; strings may chain parts (``1h30m``)."""
    if isinstance(value, bool):
        raise ValueError(f"duration {value!r}: expected e.g. 500ms, 10s, 10m, 4h, 30d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration {value!r} is negative")
        return int(value)
    text = str(value).strip().lower()
    pos, total = 0, 0.0
    for m in _PART_RE.finditer(text):
        if m.start() != pos and text[pos:m.start()].strip():
            break
        total += float(m[1]) * _UNITS[m[2]]
        pos = m.end()
    if pos == 0 or text[pos:].strip():
        raise ValueError(f"duration {value!r}: expected e.g. 500ms, 10s, 10m, 4h, 30d")
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
