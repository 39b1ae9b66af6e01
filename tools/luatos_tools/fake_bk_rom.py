"""A fake BK7258 ROM bootloader behind a pyserial URL (``fakebk://NAME?opt=value``).

Written from docs/behaviour.md §12.1/§12.2 only, to test luatos-flash without a board (none was
attached while writing it; flashing is tested against this fake only). It keeps its own model
of the hardware instead of sharing code with the host side, so a misunderstanding on one side
shows up as a failing test rather than being mirrored:

* wiring: DTR drives RESET (1 = held in reset), RTS drives BOOT (1 = bootloader). BOOT is
  sampled 1 ms after RESET is released; if it was high, the ROM opens its LinkCheck window
  8 ms after BOOT is released again and keeps it open for ``window`` seconds. LinkChecks
  outside that window get no answer. Otherwise the "application" boots and prints a log.
* frames: short/long TX and RX as behaviour.md §12.2 describes them; unknown commands get no
  answer.
* baud: SetBaud makes the ROM answer at the new rate ``delay`` ms later; bytes on a
  mismatched rate arrive garbled, in both directions.
* flash: ``flash_size`` bytes of 0xFF, NOR semantics (a write ANDs bits, so writing over
  unerased data corrupts it and is recorded), erase granularity 4 KiB / 64 KiB, and erase and
  write are silently ignored while the status register's protect bits are set, as a real SPI
  flash does.
* time: a virtual clock. Reads that would wait advance it; tests inject :meth:`sleep` and
  :meth:`monotonic` into the flasher so nothing really sleeps. A device created from a bare
  URL (a demo from the command line) adds real elapsed time to it.

Faults (``faults={"name": count}``, count None = always): ``no_answer``, ``wrong_mid``,
``erase_fail``, ``corrupt_write``, ``crc_mismatch``, ``wrong_echo``, ``baud_fail``,
``resets_ignored`` (the first N reset pulses do not enter the ROM).
"""

from __future__ import annotations

import struct
import sys
import time
import urllib.parse
import zlib
from dataclasses import dataclass
from typing import Any

import serial
from serial.serialutil import SerialBase, SerialException

ROM_BAUD = 115200
SECTOR = 0x1000
BLOCK = 0x10000
BOOT_SAMPLE = 0.001
WINDOW_DELAY = 0.008
LINK_REPLY = bytes.fromhex("040e0501e0fc0100")

# How the fake flash's status register protects it (the device's own knowledge).
DEFAULT_MID = 0x1640C8  # a 4 MiB JEDEC id (capacity byte 0x16); not in the known table
DEFAULT_PROTECT_BITS = 0x001C  # BP0..BP2: any set = whole array protected (simplified)

_DEVICES: dict[str, FakeBkDevice] = {}


@dataclass
class Event:
    t: float
    kind: str  # "lines", "open", "close", "baud", "clear", "tx", "rx"
    data: Any


@dataclass
class Command:
    t: float
    name: str
    args: dict[str, Any]


class FakeBkDevice:
    """The simulated module: modem lines, ROM state machine, flash, clock, logs."""

    def __init__(self, name: str | None = None, *, mid: int = DEFAULT_MID,
                 flash_size: int = 4 * 1024 * 1024, sr: int = 0x001C,
                 protect_bits: int = DEFAULT_PROTECT_BITS, crc_mode: str = "xor",
                 window: float = 1.0, app_baud: int = 921600,
                 faults: dict[str, int | None] | None = None, real_time: bool = False,
                 wrong_mid: int = 0xFFFFFF) -> None:
        if crc_mode not in ("xor", "init"):
            raise ValueError("crc_mode is 'xor' (crc32^ffffffff) or 'init' (crc32 init ffffffff)")
        self.name = name or f"dev{id(self):x}"
        self.mid = mid
        self.flash = bytearray(b"\xff" * flash_size)
        self.sr = sr
        self.protect_bits = protect_bits
        self.crc_mode = crc_mode
        self.window = window
        self.app_baud = app_baud
        self.faults: dict[str, int | None] = dict(faults or {})
        self.wrong_mid = wrong_mid
        self._real = real_time
        self._t0 = time.monotonic()
        self._virtual = 0.0
        # lines and state
        self.dtr = False
        self.rts = False
        self.state = "app"  # app | reset | booting | rom_wait | rom_window | isp
        self._t_release = 0.0
        self._window: tuple[float, float] | None = None
        self.rom_baud = ROM_BAUD
        self.host_baud = 9600
        self.port: FakeBkSerial | None = None
        self._rx_in = bytearray()  # host -> device, not yet parsed
        self._to_host: list[tuple[float, int, bytes]] = []  # (available at, baud, bytes)
        self._host_buf = bytearray()
        self._rts_history: list[tuple[float, bool]] = [(0.0, False)]
        # records for tests
        self.events: list[Event] = []
        self.commands: list[Command] = []
        self.dirty_writes: list[int] = []
        self.ignored: list[tuple[str, int]] = []
        self.app_boots = 0
        self.resets = 0
        _DEVICES[self.name] = self

    # --- registry / URL ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"fakebk://{self.name}"

    def forget(self) -> None:
        _DEVICES.pop(self.name, None)

    # --- clock -----------------------------------------------------------------------------
    def monotonic(self) -> float:
        real = (time.monotonic() - self._t0) if self._real else 0.0
        return self._virtual + real

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._virtual += seconds
        self._advance()

    def _advance_to(self, t: float) -> None:
        now = self.monotonic()
        if t > now:
            self._virtual += t - now
        self._advance()

    # --- faults ----------------------------------------------------------------------------
    def _fault(self, name: str) -> bool:
        if name not in self.faults:
            return False
        left = self.faults[name]
        if left is None:
            return True
        if left <= 0:
            return False
        self.faults[name] = left - 1
        return True

    # --- modem lines and the boot state machine --------------------------------------------
    def set_lines(self, dtr: bool | None = None, rts: bool | None = None) -> None:
        self._advance()
        now = self.monotonic()
        old_dtr, old_rts = self.dtr, self.rts
        if dtr is not None:
            self.dtr = bool(dtr)
        if rts is not None:
            self.rts = bool(rts)
        if (self.dtr, self.rts) == (old_dtr, old_rts):
            return
        self.events.append(Event(now, "lines", (int(self.dtr), int(self.rts))))
        if self.rts != old_rts:
            self._rts_history.append((now, self.rts))
        if self.dtr and not old_dtr:
            self._enter_reset()
        elif old_dtr and not self.dtr:
            self.state = "booting"
            self._t_release = now
        if self.state == "rom_wait" and old_rts and not self.rts:
            self._open_window(now)
        self._advance()

    def _rts_at(self, t: float) -> bool:
        val = False
        for ts, v in self._rts_history:
            if ts <= t:
                val = v
            else:
                break
        return val

    def _enter_reset(self) -> None:
        self.state = "reset"
        self.resets += 1
        self.rom_baud = ROM_BAUD
        self._window = None
        self._rx_in.clear()
        self._to_host.clear()

    def _open_window(self, t_boot_release: float) -> None:
        if self._fault("resets_ignored"):
            self._boot_app(t_boot_release)
            return
        start = t_boot_release + WINDOW_DELAY
        self._window = (start, start + self.window)
        self.state = "rom_window"

    def _advance(self) -> None:
        """Run the state machine up to now."""
        now = self.monotonic()
        if self.state == "booting" and now >= self._t_release + BOOT_SAMPLE:
            if self._rts_at(self._t_release + BOOT_SAMPLE):
                self.state = "rom_wait"
                if not self.rts:  # BOOT already released again
                    self._open_window(self._last_rts_fall())
            else:
                self._boot_app(self._t_release + BOOT_SAMPLE)
        if self.state == "rom_window" and self._window and now > self._window[1]:
            self._boot_app(self._window[1])

    def _last_rts_fall(self) -> float:
        for ts, v in reversed(self._rts_history):
            if not v:
                return ts
        return 0.0

    def _boot_app(self, t: float) -> None:
        self.state = "app"
        self._window = None
        self.app_boots += 1
        self.rom_baud = self.app_baud
        for dt, line in self._app_log():
            self._to_host.append((t + dt, self.app_baud, line))

    def _app_log(self) -> list[tuple[float, bytes]]:
        """What our pretend firmware prints after boot, judging the script partition."""
        n = self.app_boots
        lines = [(0.030, b"ap0:I(30):fake BK7258 boot %d\r\n" % n)]
        verdict = self._script_verdict()
        lines.append((0.120, b"luat:I(120):main:" + verdict.encode() + b"\r\n"))
        lines.append((0.150, b"luat:U(150):I/user.main fake app running\r\n"))
        return lines

    def _script_verdict(self, addr: int = 0x200000, size: int = 512 * 1024) -> str:
        region = bytes(self.flash[addr:addr + size])
        if region[:34] == b"\xff" * 34:
            return "script partition empty"
        good = 0
        for off in range(0, len(region) - 33, 34):
            blk = region[off:off + 34]
            if blk == b"\xff" * 34:
                break
            if _crc16_cms(blk[:32]) != struct.unpack(">H", blk[32:])[0]:
                return f"script block CRC error at 0x{addr + off:X}"
            good += 1
        return f"script image ok, {good} blocks"

    # --- host side -------------------------------------------------------------------------
    def attach(self, port: FakeBkSerial) -> None:
        if self.port is not None and self.port is not port:
            raise SerialException(f"{self.url}: port is already open")
        self.port = port
        self.events.append(Event(self.monotonic(), "open", port.baudrate))
        now = self.monotonic()
        self._to_host = [item for item in self._to_host if item[0] >= now]
        self._host_buf.clear()

    def detach(self) -> None:
        self.events.append(Event(self.monotonic(), "close", None))
        self.port = None
        # closing the port drops DTR and RTS (HUPCL): the chip leaves reset, BOOT low.
        self.set_lines(dtr=False, rts=False)
        self.sleep(0.002)

    def set_host_baud(self, baud: int) -> None:
        if baud != self.host_baud:
            self.host_baud = baud
            self.events.append(Event(self.monotonic(), "baud", baud))

    def clear_rx(self) -> None:
        self._advance()
        self.events.append(Event(self.monotonic(), "clear", None))
        self._deliver()
        self._host_buf.clear()

    def _deliver(self) -> None:
        now = self.monotonic()
        keep = []
        for t, baud, data in self._to_host:
            if t <= now:
                self._host_buf += data if baud == self.host_baud else _garble(data)
            else:
                keep.append((t, baud, data))
        self._to_host = keep

    def in_waiting(self) -> int:
        self._advance()
        self._deliver()
        return len(self._host_buf)

    def host_read(self, n: int, timeout: float | None) -> bytes:
        self._advance()
        deadline = self.monotonic() + (1.0 if timeout is None else timeout)
        while True:
            self._deliver()
            if len(self._host_buf) >= n:
                break
            pending = [t for t, _, _ in self._to_host]
            nxt = min(pending) if pending else None
            if nxt is not None and nxt <= deadline:
                self._advance_to(nxt)
                continue
            self._advance_to(deadline)
            self._deliver()
            break
        out = bytes(self._host_buf[:n])
        del self._host_buf[:n]
        return out

    def host_write(self, data: bytes) -> None:
        self._advance()
        self._virtual += len(data) * 10 / max(self.host_baud, 1)  # time on the wire
        self._advance()
        if self.state not in ("rom_window", "isp"):
            return  # in reset or running the app: nobody listens to ISP frames
        if self.host_baud != self.rom_baud:
            data = _garble(data)
        self._rx_in += data
        self._parse()

    def _reply(self, data: bytes, delay: float = 0.0002, baud: int | None = None) -> None:
        self._to_host.append((self.monotonic() + delay, baud or self.rom_baud, data))

    # --- protocol --------------------------------------------------------------------------
    def _parse(self) -> None:
        buf = self._rx_in
        while True:
            start = buf.find(b"\x01\xe0\xfc")
            if start < 0:
                del buf[:max(0, len(buf) - 2)]
                return
            del buf[:start]
            if len(buf) < 5:
                return
            if buf[3] == 0xFF:
                if len(buf) < 7:
                    return
                if buf[4] != 0xF4:
                    del buf[:3]
                    continue
                ln = buf[5] | buf[6] << 8
                if len(buf) < 7 + ln:
                    return
                cmd, data = buf[7], bytes(buf[8:7 + ln])
                del buf[:7 + ln]
                self._long(cmd, data)
            else:
                ln = buf[3]
                if len(buf) < 4 + ln:
                    return
                cmd, data = buf[4], bytes(buf[5:4 + ln])
                del buf[:4 + ln]
                self._short(cmd, data)

    def _log(self, name: str, **args: Any) -> None:
        self.commands.append(Command(self.monotonic(), name, args))

    def _short(self, cmd: int, data: bytes) -> None:
        now = self.monotonic()
        if cmd == 0x00:
            in_window = self.state == "isp" or (
                self._window is not None and self._window[0] <= now <= self._window[1])
            answered = in_window and not self._fault("no_answer")
            self._log("LinkCheck", answered=answered)
            if answered:
                self.state = "isp"
                self._window = None
                self._reply(LINK_REPLY)
            return
        if self.state != "isp":
            return
        if cmd == 0x0F and len(data) == 5:
            baud, delay = struct.unpack("<IB", data)
            self._log("SetBaud", baud=baud, delay=delay)
            if self._fault("baud_fail"):
                return
            self.rom_baud = baud
            self._reply(b"\x04\x0e\x05\x01\xe0\xfc\x0f\x00", delay=delay / 1000, baud=baud)
        elif cmd == 0x10 and len(data) == 8:
            start, end = struct.unpack("<II", data)
            self._log("CheckCRC", start=start, end=end)
            region = bytes(self.flash[start:end + 1]) if end >= start else b""
            crc = (zlib.crc32(region) ^ 0xFFFFFFFF if self.crc_mode == "xor"
                   else zlib.crc32(region, 0xFFFFFFFF))
            if self._fault("crc_mismatch"):
                crc ^= 0x00010001
            self._reply(b"\x04\x0e\x08\x01\xe0\xfc\x10" + struct.pack("<I", crc), delay=0.05)
        elif cmd == 0x0E and data == b"\xa5":
            self._log("Reboot")
            self._boot_app(now + 0.01)
        elif cmd == 0xAA:
            self._log("StayRom", data=data.hex())
            self._reply(b"\x04\x0e\x05\x01\xe0\xfc\xaa\x00")
        else:
            self._log("Unknown", cmd=cmd, data=data.hex())

    def _long_reply(self, cmd: int, payload: bytes, status: int = 0, delay: float = 0.0005) -> None:
        body = bytes((cmd, status)) + payload
        self._reply(b"\x04\x0e\xff\x01\xe0\xfc\xf4" + struct.pack("<H", len(body)) + body, delay)

    @property
    def protected(self) -> bool:
        return bool(self.sr & self.protect_bits)

    def _long(self, cmd: int, data: bytes) -> None:
        if self.state != "isp":
            return
        if cmd == 0x0E and data[:1] == b"\x9f":
            self._log("FlashID")
            mid = self.wrong_mid if self._fault("wrong_mid") else self.mid
            self._long_reply(cmd, b"\x9f" + (mid & 0xFFFFFF).to_bytes(3, "little"))
        elif cmd == 0x0C and len(data) == 1:
            reg = data[0]
            value = {0x05: self.sr & 0xFF, 0x35: self.sr >> 8 & 0xFF,
                     0x15: self.sr >> 8 & 0xFF}.get(reg, 0)
            self._log("ReadSR", reg=reg, value=value)
            self._long_reply(cmd, bytes((value, reg)))
        elif cmd == 0x0D and len(data) in (2, 3):
            wr, vals = data[0], data[1:]
            self._log("WriteSR", wr=wr, value=int.from_bytes(vals, "little"), size=len(vals))
            if wr != 0x01:
                self._long_reply(cmd, data, status=1)
                return
            if len(vals) == 1:
                self.sr = (self.sr & 0xFF00) | vals[0]
            else:
                self.sr = vals[0] | vals[1] << 8
            self._long_reply(cmd, data, delay=0.01)
        elif cmd == 0x0F and len(data) == 5:
            op, addr = data[0], struct.unpack("<I", data[1:])[0]
            size = SECTOR if op == 0x20 else BLOCK if op == 0xD8 else 0
            self._log("Erase", size=size, addr=addr)
            if size == 0 or self._fault("erase_fail"):
                self._long_reply(cmd, data, status=1, delay=0.001)
                return
            base = (addr % len(self.flash)) & ~(size - 1)
            if self.protected:
                self.ignored.append(("erase", base))
            else:
                self.flash[base:base + size] = b"\xff" * size
            self._long_reply(cmd, data, delay=0.03 if size == SECTOR else 0.15)
        elif cmd == 0x07 and len(data) == 4 + SECTOR:
            addr = struct.unpack("<I", data[:4])[0]
            payload = bytearray(data[4:])
            self._log("Write", addr=addr)
            if self._fault("corrupt_write"):
                payload[len(payload) // 2] ^= 0x40
            base = addr % len(self.flash)
            if self.protected:
                self.ignored.append(("write", base))
            else:
                old = self.flash[base:base + SECTOR]
                if old != b"\xff" * len(old):
                    self.dirty_writes.append(base)
                self.flash[base:base + SECTOR] = bytes(a & b for a, b in zip(old, payload,
                                                                              strict=False))
            echo = addr + SECTOR if self._fault("wrong_echo") else addr
            self._long_reply(cmd, struct.pack("<I", echo), delay=0.015)
        else:
            self._log("UnknownLong", cmd=cmd, size=len(data))

    # --- views for tests -------------------------------------------------------------------
    def line_sequence(self, since: float = 0.0) -> list[tuple[int, int, float]]:
        """(DTR, RTS, how long that state lasted in s) per modem-line state, in order.

        Changes made at the same instant (the host sets DTR, then RTS) count as one state;
        the last state lasts until the port closed (or -1.0 while it is still open).
        """
        merged: list[tuple[float, str, Any]] = []
        for e in self.events:
            if e.kind not in ("lines", "close") or e.t < since:
                continue
            if merged and merged[-1][1] == "lines" and e.kind == "lines" and e.t == merged[-1][0]:
                merged[-1] = (e.t, "lines", e.data)
            else:
                merged.append((e.t, e.kind, e.data))
        out = []
        for i, (t, kind, data) in enumerate(merged):
            if kind != "lines":
                continue
            end = merged[i + 1][0] if i + 1 < len(merged) else None
            out.append((data[0], data[1], round(end - t, 6) if end is not None else -1.0))
        return out

    def command_names(self) -> list[str]:
        return [c.name for c in self.commands]


def _garble(data: bytes) -> bytes:
    """What a UART reads when the two ends disagree on the baud rate: fewer, wrong bytes."""
    return bytes((b ^ 0x5A) | 0x80 for b in data[::3])


def _crc16_cms(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def get_device(name: str) -> FakeBkDevice | None:
    return _DEVICES.get(name)


def _device_for_url(url: str) -> FakeBkDevice:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "fakebk":
        raise SerialException(f"expected a fakebk:// URL, got {url!r}")
    name = parts.netloc or parts.path.lstrip("/") or "default"
    dev = _DEVICES.get(name)
    if dev is not None:
        return dev
    kw: dict[str, Any] = {"real_time": True}
    faults: dict[str, int | None] = {}
    for key, value in urllib.parse.parse_qsl(parts.query):
        if key == "mid":
            kw["mid"] = int(value, 0)
        elif key == "sr":
            kw["sr"] = int(value, 0)
        elif key == "crc":
            kw["crc_mode"] = value
        elif key == "fault":
            fname, _, count = value.partition(":")
            faults[fname] = int(count) if count else None
        else:
            raise SerialException(f"{url}: unknown option {key!r}")
    return FakeBkDevice(name, faults=faults, **kw)


class FakeBkSerial(SerialBase):
    """pyserial port object that talks to a :class:`FakeBkDevice`."""

    device: FakeBkDevice | None = None
    is_open: bool

    def open(self) -> None:
        if self._port is None:
            raise SerialException("port must be configured before it can be used")
        if self.is_open:
            raise SerialException("port already open")
        self.device = _device_for_url(str(self._port))
        self.device.set_host_baud(self._baudrate)
        self.device.attach(self)
        self.is_open = True
        self._update_dtr_state()
        self._update_rts_state()

    def close(self) -> None:
        if self.is_open and self.device is not None:
            self.is_open = False
            self.device.detach()

    def _dev(self) -> FakeBkDevice:
        if not self.is_open or self.device is None:
            raise serial.PortNotOpenError()
        return self.device

    def _reconfigure_port(self, *args: object, **kwargs: object) -> None:
        if self.is_open and self.device is not None:
            self.device.set_host_baud(self._baudrate)

    def _update_dtr_state(self) -> None:
        if self.is_open and self.device is not None:
            self.device.set_lines(dtr=self._dtr_state)

    def _update_rts_state(self) -> None:
        if self.is_open and self.device is not None:
            self.device.set_lines(rts=self._rts_state)

    def _update_break_state(self) -> None:
        pass

    @property
    def in_waiting(self) -> int:
        return self._dev().in_waiting()

    def read(self, size: int = 1) -> bytes:
        return self._dev().host_read(size, self._timeout)

    def write(self, data: bytes) -> int:  # type: ignore[override]
        b = bytes(data)
        self._dev().host_write(b)
        return len(b)

    def flush(self) -> None:
        self._dev()

    def reset_input_buffer(self) -> None:
        self._dev().clear_rx()

    def reset_output_buffer(self) -> None:
        self._dev()

    @property
    def cts(self) -> bool:
        return False

    @property
    def dsr(self) -> bool:
        return False

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return False


def serial_class_for_url(url: str) -> tuple[str, type[FakeBkSerial]]:
    return url, FakeBkSerial


# pyserial imports "<package>.protocol_<scheme>"; make this module answer for fakebk://.
_HANDLER_PACKAGE = __name__


def register() -> None:
    """Make ``serial.serial_for_url("fakebk://...")`` reach this module (idempotent)."""
    sys.modules.setdefault(f"{_HANDLER_PACKAGE}.protocol_fakebk", sys.modules[__name__])
    if _HANDLER_PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(_HANDLER_PACKAGE)


register()
