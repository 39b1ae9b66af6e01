"""One log record, as the emulator produces it and as the serial tail parses it.

On an Air8101 every line the Lua side prints reaches the UART as ``luat:U(<ms>):<line>`` and
every C-side line as ``luat:<D|I|W|E>(<ms>):<tag>:<msg>``. Lines from the BK SDK have no
``luat:`` prefix. A ``log.info("tag", ...)`` line itself reads ``I/user.tag ...``. Embedded
newlines arrive as continuation lines without a prefix and belong to the previous record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

LUA = "lua"  # print() and log.*() output (UART level letter U)
C = "c"  # firmware output (luat:D/I/W/E)
SDK = "sdk"  # vendor SDK output, no luat: prefix
OTHER = "other"
SIM = "sim"  # the emulator's own diagnostics (never printed by a device)

LEVELS = ("D", "I", "W", "E")
_LEVEL_RANK = {"D": 1, "I": 2, "W": 3, "E": 4}

_UART_RE = re.compile(r"^luat:([UDIWE])\((\d+)\):(.*)$", re.S)
_LUA_LOG_RE = re.compile(r"^([DIWE])/(?:user\.)?([^\s]*)(?: (.*))?$", re.S)
_SDK_RE = re.compile(r"^[a-z]+\d*:[^\s:]*:?[DIWE]\(\d+\):")


@dataclass
class LogRecord:
    """A parsed log line.

    ``level`` is D/I/W/E, or ``""`` for a plain ``print``. ``tag`` is the log tag (``main`` for
    ``I/user.main``), ``""`` for a plain print. ``line`` is the text exactly as the script or
    firmware printed it, without the UART prefix; ``text`` is what follows the tag.
    """

    level: str
    tag: str
    text: str
    line: str
    source: str = LUA
    device_ms: int | None = None
    host_time: float | None = None
    boot: int | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def uart(self) -> str:
        """The Air8101 UART form of this record."""
        if self.source == LUA:
            return f"luat:U({self.device_ms or 0}):{self.line}"
        if self.source == C:
            return f"luat:{self.level or 'I'}({self.device_ms or 0}):{self.tag}:{self.text}"
        if self.source == SIM:
            return f"[luatos-sim] {self.text}"
        return self.line

    def to_json(self) -> str:
        d = asdict(self)
        if not d["extra"]:
            d.pop("extra")
        return json.dumps(d, ensure_ascii=False)

    def at_least(self, level: str) -> bool:
        """True when this record is at ``level`` or above (plain prints count as info)."""
        return _LEVEL_RANK.get(self.level or "I", 2) >= _LEVEL_RANK[level.upper()[0]]


def lua_record(line: str, device_ms: int | None = None, **kw: object) -> LogRecord:
    """A record for a line printed by Lua (``print`` or ``log.*``)."""
    m = _LUA_LOG_RE.match(line)
    if m and "/" in line[:2]:
        return LogRecord(m[1], m[2], m[3] or "", line, LUA, device_ms, **kw)  # type: ignore[arg-type]
    return LogRecord("", "", line, line, LUA, device_ms, **kw)  # type: ignore[arg-type]


def c_record(level: str, tag: str, text: str, device_ms: int | None = None,
             **kw: object) -> LogRecord:
    """A record for a firmware (C) line such as ``luat:I(11107):fota:...``."""
    return LogRecord(level, tag, text, f"{tag}:{text}", C, device_ms, **kw)  # type: ignore[arg-type]


def parse_uart_line(line: str, host_time: float | None = None) -> LogRecord | None:
    """Parse one UART line. Returns None for a continuation line (no prefix)."""
    line = line.rstrip("\r\n")
    m = _UART_RE.match(line)
    if m:
        letter, ms, rest = m[1], int(m[2]), m[3]
        if letter == "U":
            return lua_record(rest, ms, host_time=host_time)
        tag, sep, text = rest.partition(":")
        if not sep:
            tag, text = "", rest
        return c_record(letter, tag, text, ms, host_time=host_time)
    if _SDK_RE.match(line):
        return LogRecord("", "", line, line, SDK, None, host_time)
    if line.startswith(("\t", " ", "stack traceback", "[C]")) or not line:
        return None
    return LogRecord("", "", line, line, OTHER, None, host_time)


class LogStreamParser:
    """Feeds lines, yields complete records; continuation lines join the previous record.

    A record is only complete when the next prefixed line arrives (or :meth:`flush`), because a
    traceback follows its error line without prefixes.
    """

    def __init__(self) -> None:
        self._pending: LogRecord | None = None

    def feed(self, line: str, host_time: float | None = None) -> Iterator[LogRecord]:
        rec = parse_uart_line(line, host_time)
        if rec is None or (rec.source == OTHER and self._pending is not None
                           and self._pending.source != OTHER and _is_continuation(line)):
            if self._pending is not None:
                extra = line.rstrip("\r\n")
                self._pending.line += "\n" + extra
                self._pending.text += "\n" + extra
                return
            rec = LogRecord("", "", line.rstrip("\r\n"), line.rstrip("\r\n"), OTHER, None,
                            host_time)
        if self._pending is not None:
            yield self._pending
        self._pending = rec

    def flush(self) -> Iterator[LogRecord]:
        if self._pending is not None:
            yield self._pending
            self._pending = None

    def parse_all(self, lines: Iterable[str]) -> list[LogRecord]:
        out: list[LogRecord] = []
        for ln in lines:
            out.extend(self.feed(ln))
        out.extend(self.flush())
        return out


def _is_continuation(line: str) -> bool:
    return line.startswith(("\t", " ", "stack traceback", "[C]", "(...tail calls...)"))
