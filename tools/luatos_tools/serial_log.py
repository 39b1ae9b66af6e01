"""Turn a module's serial byte stream into :class:`~luatos_common.logline.LogRecord` objects.

An Air8101 prints plain text lines (``luat:U(807):I/user.main ...``), but a newer vendor note
says BK72xx firmware may send binary ``0xA5`` frames instead (UNCONFIRMED), and a port can carry
both (ROM text before the firmware switches). So the decoder reads text until it has seen one
complete frame with a valid CRC, and only then treats ``A5`` as a frame delimiter. A lone
``A5`` inside UTF-8 text (common in Chinese) never switches the mode, and a damaged frame is
counted, not raised: a log follower must never die on line noise.

The port side (:class:`PortFollower`) exists because an Air8101 re-enumerates its USB-UART
when it reboots: the port vanishes and comes back, and the follower reopens it with backoff.
Ports are opened with DTR and RTS low, because on the Air8101 board DTR drives RESET and RTS
drives BOOT: pyserial's default (both asserted) would hold the module in reset.

Tested against ptys and pyserial URL handlers only; no board was attached while writing it.
"""

from __future__ import annotations

import re
import struct
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

import serial

from luatos_common.logline import LUA, C, LogRecord, LogStreamParser, lua_record, parse_uart_line

FRAME_BYTE = 0xA5
ESC_BYTE = 0xA6
HEADER_SIZE = 24
MIN_FRAME = HEADER_SIZE + 2  # header + CRC, unescaped
MAX_FRAME = 8192
BOOT_MARKERS = (b"luat:", b"ap0:")

# --- CRC16 (poly 0xA001 reflected, init 0): the checksum of the binary log frames ----------


def _crc_table() -> list[int]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        out.append(c)
    return out


_CRC_TABLE = _crc_table()


def crc16_a001(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-16 with the reflected polynomial 0xA001 and init 0 (CRC-16/ARC)."""
    t = _CRC_TABLE
    for b in bytes(data):
        crc = (crc >> 8) ^ t[(crc ^ b) & 0xFF]
    return crc


def escape(data: bytes) -> bytes:
    return data.replace(b"\xa6", b"\xa6\x02").replace(b"\xa5", b"\xa6\x01")


def unescape(data: bytes | bytearray) -> bytes:
    return bytes(data).replace(b"\xa6\x01", b"\xa5").replace(b"\xa6\x02", b"\xa6")


def encode_frame(payload: bytes) -> bytes:
    """``A5 | esc(payload) | esc(CRC16-LE) | A5``."""
    return b"\xa5" + escape(payload + struct.pack("<H", crc16_a001(payload))) + b"\xa5"


def check_frame(body: bytes | bytearray) -> bytes | None:
    """The payload of one frame body (between two ``A5``), or None when it is not valid."""
    raw = unescape(body)
    if len(raw) < MIN_FRAME:
        return None
    payload = raw[:-2]
    if struct.unpack("<H", raw[-2:])[0] != crc16_a001(payload):
        return None
    return payload


# --- payload: 24-byte header + printf format + arguments ---------------------------------------
#
# Header (little-endian): device ms u64, tag u64 (low 8 bits = level 1..4, then up to eight
# 7-bit characters), cmd u32, sequence u16, type u8 (0 = printf), cpu u8. The tag alphabet and
# the argument encoding come from a third-party decoder and are UNCONFIRMED; decode is
# best-effort and falls back to showing the format itself.

TAG_ALPHABET = " abcdefghijklmnopqrstuvwxyz012345ABCDEFGHIJKLMNOPQRSTUVWXYZ_*-./"
_LEVEL_BY_NUM = {1: "D", 2: "I", 3: "W", 4: "E"}
_NUM_BY_LEVEL = {v: k for k, v in _LEVEL_BY_NUM.items()}

_SPEC_RE = re.compile(r"%([-+ #0]*)(\*|\d+)?(?:\.(\*|\d+))?(hh|h|ll|l|j|z|t|L|q)?([diouxXeEfFgGcspn%])")


def decode_tag(bits: int) -> str:
    out = []
    for _ in range(8):
        idx = bits & 0x7F
        if idx == 0:
            break
        out.append(TAG_ALPHABET[idx] if idx < len(TAG_ALPHABET) else "?")
        bits >>= 7
    return "".join(out)


def encode_tag(tag: str) -> int:
    bits = 0
    for i, ch in enumerate(tag[:8]):
        idx = TAG_ALPHABET.find(ch)
        if idx <= 0:
            raise ValueError(f"tag character {ch!r} cannot be encoded in a binary log header")
        bits |= idx << (7 * i)
    return bits


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def _cstring(buf: bytes, pos: int) -> tuple[bytes, int]:
    """A NUL-terminated string at ``pos`` and the 4-aligned position after it."""
    end = buf.find(b"\x00", pos)
    if end < 0:
        return buf[pos:], len(buf)
    return buf[pos:end], _pad4(end + 1)


def render_printf(fmt: str, args: bytes) -> str:
    """Render a C format with its packed arguments; a spec without data stays as written."""
    pos = 0

    def take(n: int) -> bytes | None:
        nonlocal pos
        if pos + n > len(args):
            return None
        chunk = args[pos:pos + n]
        pos += n
        return chunk

    def one(m: re.Match[str]) -> str:
        nonlocal pos
        flags, width, prec, length, conv = m.groups()
        if conv == "%":
            return "%"
        if width == "*":
            w = take(4)
            if w is None:
                return m[0]
            width = str(struct.unpack("<i", w)[0])
        if prec == "*":
            p = take(4)
            if p is None:
                return m[0]
            prec = str(max(0, struct.unpack("<i", p)[0]))
        spec = "%" + (flags or "") + (width or "") + (("." + prec) if prec is not None else "")
        try:
            if conv == "s":
                if pos >= len(args):
                    return m[0]
                raw, pos = _cstring(args, pos)
                text = raw.decode("utf-8", "replace")
                return (spec + "s") % text
            if conv in "eEfFgG":
                b = take(8)
                return m[0] if b is None else (spec + conv) % struct.unpack("<d", b)[0]
            wide = length in ("ll", "j", "q", "L")
            b = take(8 if wide else 4)
            if b is None:
                return m[0]
            signed = struct.unpack("<q" if wide else "<i", b)[0]
            unsigned = signed & (0xFFFFFFFFFFFFFFFF if wide else 0xFFFFFFFF)
            if conv == "c":
                return (spec + "c") % chr(unsigned & 0xFF)
            if conv == "p":
                return f"0x{unsigned:08x}"
            if conv in "di":
                return (spec + "d") % signed
            if conv == "n":
                return ""
            return (spec + conv) % unsigned
        except (ValueError, TypeError, OverflowError, struct.error):
            return m[0]

    try:
        return _SPEC_RE.sub(one, fmt)
    except Exception:  # pragma: no cover - the renderer must never take the tail down
        return fmt


def _pack_args(fmt: str, args: Iterable[object]) -> bytes:
    it = iter(args)
    out = bytearray()
    for m in _SPEC_RE.finditer(fmt):
        _flags, width, prec, length, conv = m.groups()
        if conv == "%":
            continue
        for star in (width, prec):
            if star == "*":
                out += struct.pack("<i", int(next(it)))  # type: ignore[call-overload]
        if conv == "s":
            s = next(it)
            b = s.encode("utf-8") if isinstance(s, str) else bytes(s)  # type: ignore[call-overload]
            b += b"\x00"
            out += b + b"\x00" * (_pad4(len(b)) - len(b))
        elif conv in "eEfFgG":
            out += struct.pack("<d", float(next(it)))  # type: ignore[arg-type]
        elif conv == "c":
            v = next(it)
            out += struct.pack("<I", ord(v) if isinstance(v, str) else int(v))  # type: ignore[call-overload]
        else:
            v = int(next(it))  # type: ignore[call-overload]
            if length in ("ll", "j", "q", "L"):
                out += struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)
            else:
                out += struct.pack("<I", v & 0xFFFFFFFF)
    return bytes(out)


def encode_binary_log(ms: int, level: str, tag: str, fmt: str, *args: object, cmd: int = 0,
                      seq: int = 0, cpu: int = 0, msg_type: int = 0) -> bytes:
    """One complete ``A5`` frame, as a device in binary log mode would send it (tests, bench)."""
    tag_bits = _NUM_BY_LEVEL.get(level, 2) | (encode_tag(tag) << 8 if tag else 0)
    header = struct.pack("<QQIHBB", ms, tag_bits & 0xFFFFFFFFFFFFFFFF, cmd, seq & 0xFFFF,
                         msg_type, cpu)
    fb = fmt.encode("utf-8") + b"\x00"
    body = fb + b"\x00" * (_pad4(len(fb)) - len(fb)) + _pack_args(fmt, args)
    return encode_frame(header + body)


def decode_payload(payload: bytes, host_time: float | None = None) -> LogRecord:
    """A record from one frame payload (CRC already checked). Never raises."""
    ms, tag_bits, cmd, seq, msg_type, cpu = struct.unpack("<QQIHBB", payload[:HEADER_SIZE])
    body = payload[HEADER_SIZE:]
    level = _LEVEL_BY_NUM.get(tag_bits & 0xFF, "")
    tag = decode_tag(tag_bits >> 8)
    if msg_type == 0:
        fmt_raw, args_at = _cstring(body, 0)
        fmt = fmt_raw.decode("utf-8", "replace")
        text = render_printf(fmt, body[args_at:])
    else:
        text = body.rstrip(b"\x00").decode("utf-8", "replace")
    text = text.rstrip("\r\n")
    extra: dict[str, object] = {"binary": True, "cmd": cmd, "seq": seq, "type": msg_type,
                                "cpu": cpu}
    # The message itself may be a LuatOS line (luat:..., or I/user.tag ...): keep its meaning.
    rec = parse_uart_line(text, host_time)
    if rec is not None and rec.source in (LUA, C):
        rec.extra = extra
        if rec.device_ms is None:
            rec.device_ms = ms
        return rec
    if len(text) > 2 and text[1] == "/" and text[0] in "DIWE":
        rec = lua_record(text, ms, host_time=host_time)
        rec.extra = extra
        return rec
    return LogRecord(level, tag, text, f"{tag}:{text}" if tag else text, C, ms, host_time,
                     extra=extra)


def _looks_like_text(b: bytes | bytearray) -> bool:
    if not b:
        return False
    try:
        s = bytes(b).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in s)


def _inside_utf8_char(buf: bytes | bytearray, i: int) -> bool:
    """Is the continuation-range byte at ``i`` part of a UTF-8 character that started before?"""
    j = i - 1
    while j >= 0 and i - j <= 3 and 0x80 <= buf[j] <= 0xBF:
        j -= 1
    if j < 0 or i - j > 3:
        return False
    lead = buf[j]
    if lead < 0xC2 or lead > 0xF4:
        return False
    need = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    return i - j < need


class LogDecoder:
    """Bytes in, records out; auto-detects binary ``A5`` framing (``binary="auto"``).

    ``on_line`` sees every complete line as received (text lines, and the rendered form of
    each binary frame) before any filter; the tail uses it for ``--output`` and ``--until``.
    Records come out one line late, because a traceback's continuation lines follow without
    a prefix; :meth:`idle` (call it when the port is quiet) releases the last one.
    """

    def __init__(self, on_line: Callable[[str], None] | None = None,
                 binary: str = "auto") -> None:
        if binary not in ("auto", "never", "always"):
            raise ValueError(f"binary={binary!r}: expected auto, never or always")
        self.on_line = on_line
        self._auto = binary == "auto"
        self.mode = "binary" if binary == "always" else "text"
        self._parser = LogStreamParser()
        self._text = bytearray()
        self._hold = bytearray()
        self._bin = bytearray()
        self._out: list[LogRecord] = []
        self._t: float | None = None
        self.frames = 0
        self.bad_frames = 0
        self.lines = 0

    # public API -----------------------------------------------------------------------------
    def feed(self, data: bytes, host_time: float | None = None) -> list[LogRecord]:
        out: list[LogRecord] = []
        self._out = out
        self._t = host_time
        if self.mode == "binary":
            self._feed_binary(data)
        elif self._hold:
            buf = self._hold + data
            self._hold = bytearray()
            self._scan(buf)
        elif self._auto and b"\xa5" in data:
            self._scan(data)
        else:
            self._feed_text(data)
        self._out = []
        return out

    def idle(self, host_time: float | None = None) -> list[LogRecord]:
        """The port is quiet: give up waiting for a frame end or a continuation line."""
        out: list[LogRecord] = []
        self._out = out
        self._t = host_time
        if self._hold:
            held, self._hold = self._hold, bytearray()
            self._feed_text(held)
        if self._bin and _looks_like_text(self._bin) and b"\n" in self._bin:
            cut = self._bin.rfind(b"\n") + 1
            chunk, self._bin = self._bin[:cut], self._bin[cut:]
            self._feed_text(chunk)
        out.extend(self._parser.flush())
        self._out = []
        return out

    def flush(self, host_time: float | None = None) -> list[LogRecord]:
        """End of stream (or the port went away): everything, including a partial line."""
        out = self.idle(host_time)
        self._out = out
        if self._bin:
            if _looks_like_text(self._bin):
                self._feed_text(self._bin)
            else:
                self.bad_frames += 1
            self._bin = bytearray()
        if self._text:
            self._emit_line(self._text)
            self._text = bytearray()
        out.extend(self._parser.flush())
        self._out = []
        return out

    def reset(self) -> None:
        """Drop partial data (the device rebooted under us); keeps the detected mode."""
        self._text.clear()
        self._hold.clear()
        self._bin.clear()
        self._parser = LogStreamParser()

    # text -----------------------------------------------------------------------------------
    def _emit_line(self, raw: bytes | bytearray) -> None:
        s = bytes(raw).decode("utf-8", "replace").rstrip("\r")
        self.lines += 1
        if self.on_line is not None:
            self.on_line(s)
        self._out.extend(self._parser.feed(s, self._t))

    def _feed_text(self, data: bytes | bytearray) -> None:
        if b"\n" not in data:
            self._text += data
            return
        self._text += data
        lines = self._text.split(b"\n")
        self._text = bytearray(lines.pop())
        for ln in lines:
            self._emit_line(ln)

    # detection ------------------------------------------------------------------------------
    def _scan(self, buf: bytes | bytearray) -> None:
        pos = 0
        n = len(buf)
        while pos < n:
            i = buf.find(b"\xa5", pos)
            if i < 0:
                break
            if _inside_utf8_char(buf, i):
                self._feed_text(buf[pos:i + 1])
                pos = i + 1
                continue
            j = buf.find(b"\xa5", i + 1)
            if j < 0:
                if n - i > MAX_FRAME:
                    self._feed_text(buf[pos:i + 1])
                    pos = i + 1
                    continue
                self._feed_text(buf[pos:i])
                self._hold = bytearray(buf[i:])
                return
            payload = check_frame(buf[i + 1:j])
            if payload is None:
                self._feed_text(buf[pos:i + 1])
                pos = i + 1
                continue
            self._feed_text(buf[pos:i])
            self.mode = "binary"
            self._emit_frame(payload)
            self._feed_binary(buf[j:])
            return
        self._feed_text(buf[pos:])

    # binary ---------------------------------------------------------------------------------
    def _emit_frame(self, payload: bytes) -> None:
        self.frames += 1
        self._out.extend(self._parser.flush())
        try:
            rec = decode_payload(payload, self._t)
        except Exception:  # never let one frame stop the tail
            self.bad_frames += 1
            return
        if self.on_line is not None:
            self.on_line(rec.uart())
        self._out.append(rec)

    def _feed_binary(self, data: bytes | bytearray) -> None:
        self._bin += data
        if b"\xa5" not in data:
            if len(self._bin) > MAX_FRAME:
                self._drop_garbage(self._bin)
                self._bin = bytearray()
            return
        parts = self._bin.split(b"\xa5")
        self._bin = bytearray(parts.pop())
        for body in parts:
            if not body:
                continue
            payload = check_frame(body)
            if payload is not None:
                self._emit_frame(payload)
            else:
                self._drop_garbage(body)

    def _drop_garbage(self, body: bytes | bytearray) -> None:
        if _looks_like_text(body):
            self._feed_text(body)  # plain text between frames (ROM banner, crash dump)
        else:
            self.bad_frames += 1


# --- filtering and rendering --------------------------------------------------------------------


@dataclass
class RecordFilter:
    """``--level W`` keeps W and E; tags are shell patterns; the regex searches the UART form."""

    level: str | None = None
    tags: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None

    def __call__(self, rec: LogRecord) -> bool:
        if self.level and not rec.at_least(self.level):
            return False
        if self.tags and not any(fnmatchcase(rec.tag, t) for t in self.tags):
            return False
        if self.pattern is not None and not self.pattern.search(rec.uart()):
            return False
        return True


_ANSI = {"E": "\x1b[1;31m", "W": "\x1b[33m", "D": "\x1b[2m", "I": "\x1b[32m"}
_RESET = "\x1b[0m"


def format_record(rec: LogRecord, *, color: bool = False, show_time: bool = True) -> str:
    """One record as the user reads it: host time, then the line the device sent."""
    text = rec.uart()
    if color and rec.level in _ANSI:
        text = _ANSI[rec.level] + text + _RESET
    if show_time and rec.host_time is not None:
        lt = time.localtime(rec.host_time)
        ms = int((rec.host_time % 1) * 1000)
        stamp = f"{lt.tm_hour:02d}:{lt.tm_min:02d}:{lt.tm_sec:02d}.{ms:03d}"
        if color:
            stamp = "\x1b[2m" + stamp + _RESET
        return f"{stamp} {text}"
    return text


# --- the port -------------------------------------------------------------------------------------


class PortGone(Exception):
    """The port could not be (re)opened within the retry budget."""


def is_url(port: str) -> bool:
    return "://" in port


def open_port(url: str, baud: int, timeout: float) -> serial.SerialBase:
    """Open ``url`` (a device path or any pyserial URL) without touching RESET/BOOT."""
    ser = serial.serial_for_url(url, do_not_open=True)
    ser.baudrate = baud
    ser.timeout = timeout
    ser.dtr = False  # DTR drives RESET on the Air8101 board; asserted would hold it in reset
    ser.rts = False  # RTS drives BOOT
    ser.open()
    return ser


class PortFollower:
    """Reads a port and survives it vanishing (USB re-enumeration on reboot).

    ``retries`` bounds consecutive failed (re)opens; None retries forever. Backoff doubles
    from ``delay`` up to ``max_delay``. ``notice`` receives human-readable status lines.
    """

    def __init__(self, url: str, baud: int, *, retries: int | None = None, delay: float = 0.2,
                 max_delay: float = 3.0, read_timeout: float = 0.1,
                 notice: Callable[[str], None] | None = None,
                 on_reconnect: Callable[[], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url
        self.baud = baud
        self.retries = retries
        self.delay = delay
        self.max_delay = max_delay
        self.read_timeout = read_timeout
        self.notice = notice or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.on_reconnect = on_reconnect
        self.sleep = sleep
        self.ser: serial.SerialBase | None = None
        self.reconnects = 0

    def open(self) -> None:
        self._open_with_retries(first=True)

    def _open_with_retries(self, first: bool) -> None:
        attempt = 0
        delay = self.delay
        while True:
            try:
                self.ser = open_port(self.url, self.baud, self.read_timeout)
            except (serial.SerialException, OSError, ValueError) as e:
                if isinstance(e, ValueError) and "protocol" in str(e):
                    raise PortGone(f"{self.url}: {e}") from e
                attempt += 1
                if self.retries is not None and attempt > self.retries:
                    raise PortGone(f"{self.url}: cannot open after {attempt} attempt(s): {e}") from e
                self.notice(f"{self.url}: cannot open ({_short(e)}); retry {attempt}"
                            f"{'' if self.retries is None else '/' + str(self.retries)}"
                            f" in {delay:.2f} s")
                self.sleep(delay)
                delay = min(self.max_delay, delay * 2)
                continue
            if not first:
                self.reconnects += 1
                self.notice(f"{self.url}: reconnected")
                if self.on_reconnect is not None:
                    self.on_reconnect()
            return

    def set_baud(self, baud: int) -> None:
        self.baud = baud
        if self.ser is not None:
            self.ser.baudrate = baud

    def read(self) -> bytes:
        """Whatever arrived (b'' after ``read_timeout`` of silence or after a reconnect)."""
        if self.ser is None:
            self.open()
        ser = self.ser
        assert ser is not None
        try:
            waiting = ser.in_waiting
            return bytes(ser.read(min(max(1, waiting), 65536)))
        except (serial.SerialException, OSError) as e:
            self.notice(f"{self.url}: port lost ({_short(e)}); reopening")
            self._close_quietly()
            self._open_with_retries(first=False)
            return b""

    def _close_quietly(self) -> None:
        if self.ser is not None:
            try:
                self.ser.close()
            except Exception:  # closing a vanished port may fail in many ways
                pass
            self.ser = None

    def close(self) -> None:
        self._close_quietly()


def _short(e: BaseException) -> str:
    s = str(e) or type(e).__name__
    return s if len(s) < 120 else s[:117] + "..."


def probe_baud(follower: PortFollower, candidates: Iterable[int] = (921_600, 2_000_000),
               window: float = 2.0, monotonic: Callable[[], float] = time.monotonic
               ) -> tuple[int | None, bytes]:
    """Try each baud for ``window`` seconds, looking for ``luat:`` or ``ap0:``.

    Returns the baud that showed a marker (and what was read at it), or (None, b"").
    """
    for baud in candidates:
        follower.set_baud(baud)
        if follower.ser is not None:
            try:
                follower.ser.reset_input_buffer()
            except (serial.SerialException, OSError):
                pass
        got = bytearray()
        deadline = monotonic() + window
        while monotonic() < deadline:
            got += follower.read()
            if any(m in got for m in BOOT_MARKERS):
                return baud, bytes(got)
    return None, b""
