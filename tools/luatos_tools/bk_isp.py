"""The BK7258 (Air8101) ROM bootloader protocol, host side, as in docs/behaviour.md §12.2.

Every wait is a field of :class:`IspTimings`, including the sleep and clock functions, so the
whole protocol runs against the fake ROM (:mod:`luatos_tools.fake_bk_rom`) in virtual time.
Replies are read with one ``port.read(n)`` under a port timeout rather than a polling loop:
pyserial's read already means "n bytes or the timeout", and it lets the fake answer
instantly while still accounting for the time.

Every failure is a :class:`FlashError` subclass carrying the CLI exit code and a message that
says what to do. No board was attached while writing this; it is tested against the fake
bootloader only.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

SECTOR = 0x1000
BLOCK = 0x10000
ROM_BAUD = 115200

HDR = b"\x01\xe0\xfc"
RX_SHORT = b"\x04\x0e"
RX_LONG = b"\x04\x0e\xff\x01\xe0\xfc\xf4"

# short commands
CMD_LINK_CHECK = 0x00
CMD_REBOOT = 0x0E
CMD_SET_BAUD = 0x0F
CMD_CHECK_CRC = 0x10
CMD_STAY_ROM = 0xAA
# long commands
CMD_WRITE_4K = 0x07
CMD_READ_SR = 0x0C
CMD_WRITE_SR = 0x0D
CMD_FLASH_ID = 0x0E
CMD_ERASE = 0x0F

ERASE_4K = 0x20
ERASE_64K = 0xD8
SR_WRITE = 0x01  # the flash's "write status register" opcode, passed through by the ROM

LINK_CHECK_REPLY = bytes.fromhex("040e0501e0fc0100")
PULSE = ((1, 1, 0.050), (0, 0, 0.020), (1, 0, 0.050), (0, 1, 0.050))  # (DTR, RTS, hold s)


class FlashError(Exception):
    """A flashing failure; ``exit_code`` is what luatos-flash returns for it."""

    exit_code = 1
    kind = "error"


class PortError(FlashError):
    exit_code, kind = 10, "port"


class NoBootloaderError(FlashError):
    exit_code, kind = 3, "no_bootloader"


class BaudSwitchError(FlashError):
    exit_code, kind = 11, "baud_switch"


class WrongChipError(FlashError):
    exit_code, kind = 4, "wrong_chip"


class EraseError(FlashError):
    exit_code, kind = 5, "erase"


class WriteError(FlashError):
    exit_code, kind = 6, "write"


class VerifyError(FlashError):
    exit_code, kind = 7, "verify"


class ImageTooLargeError(FlashError):
    exit_code, kind = 8, "too_large"


class BootNotSeenError(FlashError):
    exit_code, kind = 9, "boot_not_seen"


class SerialLike(Protocol):
    """What we need from a pyserial port (real, URL handler or fake)."""

    baudrate: int
    timeout: float | None
    dtr: bool
    rts: bool

    def read(self, size: int = 1) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...
    def flush(self) -> None: ...
    def reset_input_buffer(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class IspTimings:
    """Every delay, timeout and retry budget of the protocol (seconds unless noted)."""

    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    settle: float = 0.050  # DTR=0, RTS=0 before the first pulse
    pulse: tuple[tuple[int, int, float], ...] = PULSE
    link_read: float = 0.002  # read window after each LinkCheck
    link_burst: int = 200  # LinkChecks per reset pulse
    link_rounds: int = 30  # reset pulses before giving up
    round_gap: float = 0.020
    command_timeout: float = 0.200  # port timeout after LinkCheck
    baud_clear_gap: float = 0.050
    baud_delay_ms: int = 200  # the delay byte of SetBaud (0xC8)
    baud_reply: float = 0.600
    flash_id: float = 3.0
    sr: float = 2.0
    sr_write_wait: float = 0.020
    erase_4k: float = 3.0
    erase_64k: float = 8.0
    erase_tries: int = 5
    erase_gap: float = 0.050
    write: float = 5.0
    write_tries: int = 3
    write_gap: float = 0.100
    crc: float = 10.0
    exit_hold: float = 0.500
    reboot_wait: float = 0.050


# --- frames -------------------------------------------------------------------------------------


def short_frame(cmd: int, data: bytes = b"") -> bytes:
    """``01 E0 FC <1+n> <cmd> <data>``."""
    return HDR + bytes((1 + len(data), cmd)) + data


def long_frame(cmd: int, data: bytes = b"") -> bytes:
    """``01 E0 FC FF F4 <u16 LE 1+n> <cmd> <data>``."""
    return HDR + b"\xff\xf4" + struct.pack("<H", 1 + len(data)) + bytes((cmd,)) + data


def set_baud_frame(baud: int, delay_ms: int) -> bytes:
    return short_frame(CMD_SET_BAUD, struct.pack("<IB", baud, delay_ms & 0xFF))


def crc_frame(start: int, end_inclusive: int) -> bytes:
    return short_frame(CMD_CHECK_CRC, struct.pack("<II", start, end_inclusive))


def write_frame(addr: int, sector: bytes) -> bytes:
    if len(sector) != SECTOR:
        raise ValueError(f"a write carries exactly {SECTOR} bytes, not {len(sector)}")
    return long_frame(CMD_WRITE_4K, struct.pack("<I", addr) + sector)


def erase_frame(size: int, addr: int) -> bytes:
    op = ERASE_4K if size == SECTOR else ERASE_64K
    return long_frame(CMD_ERASE, bytes((op,)) + struct.pack("<I", addr))


# --- flash knowledge ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SrLayout:
    """How to unprotect one flash: status register size, read opcodes, bits to clear."""

    size: int
    read_cmds: tuple[int, ...]
    mask: int
    known: bool = True


_SR_TABLE: dict[int, SrLayout] = {}
for _mid in (0x144051, 0x134051, 0x14405E, 0x13405E, 0x13311C, 0x1464C8):
    _SR_TABLE[_mid] = SrLayout(1, (0x05,), 0x007C)
_SR_TABLE[0x15701C] = SrLayout(1, (0x05,), 0x003C)
for _mid in (0x1423C2, 0x1523C2):
    _SR_TABLE[_mid] = SrLayout(2, (0x05, 0x15), 0x3012)
_SR_TABLE[0x1560C4] = SrLayout(2, (0x05, 0x35), 0x407C)


def sr_layout(mid: int) -> SrLayout:
    """The unprotect rule for a flash MID (the known table, with its two fallback rows)."""
    if mid in _SR_TABLE:
        return _SR_TABLE[mid]
    if (mid >> 16) >= 0x14:
        return SrLayout(2, (0x05, 0x35), 0x407C, known=False)
    return SrLayout(1, (0x05,), 0x007C, known=False)


def unprotected_sr(mid: int, sr: int) -> int:
    return sr & ~sr_layout(mid).mask & ((1 << (8 * sr_layout(mid).size)) - 1)


def flash_capacity(mid: int) -> int | None:
    """JEDEC capacity byte → bytes, when it is a plausible power of two (1 MiB … 128 MiB)."""
    code = (mid >> 16) & 0xFF
    return 1 << code if 0x11 <= code <= 0x1B else None


def erase_plan(addr: int, length: int) -> list[tuple[int, int]]:
    """(size, address) erases covering [addr, addr+length): 4K to a 64K boundary, 64K, 4K."""
    start = addr & ~(SECTOR - 1)
    end = (addr + length + SECTOR - 1) & ~(SECTOR - 1)
    plan: list[tuple[int, int]] = []
    cur = start
    while cur < end and cur % BLOCK:
        plan.append((SECTOR, cur))
        cur += SECTOR
    while end - cur >= BLOCK:
        plan.append((BLOCK, cur))
        cur += BLOCK
    while cur < end:
        plan.append((SECTOR, cur))
        cur += SECTOR
    return plan


def pad_to_sector(data: bytes) -> bytes:
    return data + b"\xff" * ((-len(data)) % SECTOR)


def crc_candidates(data: bytes) -> dict[str, int]:
    """The two CRC32 conventions seen for ISP command 10 (which one BK7258 uses: UNCONFIRMED)."""
    return {
        "crc32^ffffffff": zlib.crc32(data) ^ 0xFFFFFFFF,
        "crc32(init=ffffffff)": zlib.crc32(data, 0xFFFFFFFF),
    }


# --- the session --------------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]
Log = Callable[[str], None]


@dataclass
class FlashResult:
    mid: int = 0
    sr_before: int | None = None
    sr_after: int | None = None
    link_round: int = 0
    link_attempt: int = 0
    baud: int = ROM_BAUD
    erases: list[tuple[int, int]] = field(default_factory=list)
    sectors: int = 0
    crc: int | None = None
    crc_variant: str | None = None
    warnings: list[str] = field(default_factory=list)


class BkIsp:
    """One bootloader session over an open port."""

    def __init__(self, port: SerialLike, timings: IspTimings | None = None,
                 log: Log | None = None, progress: Progress | None = None) -> None:
        self.port = port
        self.t = timings or IspTimings()
        self.log = log or (lambda msg: None)
        self.progress = progress or (lambda phase, done, total: None)
        self.result = FlashResult()

    # low level -----------------------------------------------------------------------------
    def _io(self, fn: Callable[[], object], what: str) -> object:
        try:
            return fn()
        except FlashError:
            raise
        except Exception as e:  # serial.SerialException, OSError: the port went away
            raise PortError(f"serial port failed during {what}: {e}") from e

    def _timeout(self, seconds: float) -> None:
        if self.port.timeout != seconds:
            self.port.timeout = seconds

    def _send(self, frame: bytes, what: str) -> None:
        def go() -> None:
            self.port.reset_input_buffer()
            self.port.write(frame)
            self.port.flush()
        self._io(go, what)

    def _read(self, n: int, timeout: float, what: str) -> bytes:
        self._timeout(timeout)
        return bytes(self._io(lambda: self.port.read(n), what))  # type: ignore[call-overload]

    def _lines(self, dtr: int, rts: int) -> None:
        def go() -> None:
            self.port.dtr = bool(dtr)
            self.port.rts = bool(rts)
        self._io(go, "reset pulse")

    def _long(self, cmd: int, data: bytes, n: int, timeout: float, what: str) -> bytes | str:
        """Send a long command and read its ``n``-byte reply; a str explains a bad reply."""
        self._send(long_frame(cmd, data), what)
        rx = self._read(n, timeout, what)
        if len(rx) < n:
            return f"{len(rx)} of {n} reply bytes within {timeout:g} s ({rx.hex(' ') or 'nothing'})"
        if rx[:7] != RX_LONG or rx[9] != cmd:
            return f"unexpected reply {rx.hex(' ')}"
        if rx[10] != 0:
            return f"status 0x{rx[10]:02X} in reply {rx.hex(' ')}"
        return rx

    # steps ---------------------------------------------------------------------------------
    def connect(self) -> None:
        """Reset pulse into the ROM, then LinkCheck bursts, up to ``link_rounds`` pulses."""
        t = self.t
        self._timeout(t.link_read)
        self._lines(0, 0)
        t.sleep(t.settle)
        probe = short_frame(CMD_LINK_CHECK)
        for rnd in range(1, t.link_rounds + 1):
            self.progress("connect", rnd - 1, t.link_rounds)
            for dtr, rts, hold in t.pulse:
                self._lines(dtr, rts)
                t.sleep(hold)
            self._lines(0, 0)
            for attempt in range(1, t.link_burst + 1):
                self._send(probe, "LinkCheck")
                if self._read(len(LINK_CHECK_REPLY), t.link_read, "LinkCheck") == LINK_CHECK_REPLY:
                    self._timeout(t.command_timeout)
                    self.result.link_round, self.result.link_attempt = rnd, attempt
                    self.progress("connect", t.link_rounds, t.link_rounds)
                    self.log(f"bootloader answered (reset pulse {rnd}, LinkCheck {attempt})")
                    return
            t.sleep(t.round_gap)
        self._timeout(t.command_timeout)
        raise NoBootloaderError(
            f"no answer from the bootloader after {t.link_rounds} reset pulses of "
            f"{t.link_burst} LinkChecks each. Check the port and cable; if auto-reset does not "
            "work on this board, hold BOOT, tap RESET, release BOOT, and run again.")

    def stay_rom(self) -> None:
        """Optional STAY_ROM (``AA 55``, third-party source, UNCONFIRMED); reply not required."""
        self._send(short_frame(CMD_STAY_ROM, b"\x55"), "STAY_ROM")
        self._read(8, self.t.command_timeout, "STAY_ROM")

    def set_baud(self, baud: int) -> None:
        t = self.t
        if baud == ROM_BAUD:
            return
        frame = set_baud_frame(baud, t.baud_delay_ms)

        def clear() -> None:
            self.port.reset_input_buffer()
        self._io(clear, "SetBaud")
        t.sleep(t.baud_clear_gap)
        self._io(clear, "SetBaud")

        def send() -> None:
            self.port.write(frame)
            self.port.flush()
        self._io(send, "SetBaud")
        t.sleep((10 + t.baud_delay_ms / 2) / 1000)

        def switch() -> None:
            self.port.baudrate = baud
        self._io(switch, "SetBaud")
        rx = self._read(8, t.baud_reply, "SetBaud")
        ok = (len(rx) == 8 and rx[:2] == RX_SHORT and rx[3:6] == HDR and rx[6] == CMD_SET_BAUD)
        self._timeout(t.command_timeout)
        if not ok:
            raise BaudSwitchError(
                f"the bootloader did not confirm {baud} baud (got {rx.hex(' ') or 'nothing'}). "
                "The USB-UART may not support it: try --force-br 921600 or 115200.")
        self.result.baud = baud
        self.log(f"link at {baud} baud")

    def flash_id(self) -> int:
        rx = self._long(CMD_FLASH_ID, b"\x9f\x00\x00\x00", 15, self.t.flash_id, "Flash ID")
        if isinstance(rx, str):
            raise WrongChipError(f"no valid Flash ID reply: {rx}. Is this an Air8101 (BK7258)?")
        mid = rx[12] | rx[13] << 8 | rx[14] << 16
        self.result.mid = mid
        if mid in (0, 0xFFFFFF):
            raise WrongChipError(
                f"flash MID 0x{mid:06X}: no SPI flash answered. This is not a BK7258 with "
                "flash, or the chip is not in its bootloader.")
        return mid

    def read_sr(self, reg: int) -> int:
        rx = self._long(CMD_READ_SR, bytes((reg,)), 13, self.t.sr, f"Read SR 0x{reg:02X}")
        if isinstance(rx, str):
            raise WrongChipError(f"reading flash status register 0x{reg:02X}: {rx}")
        return rx[11]

    def write_sr(self, value: int, size: int) -> None:
        data = bytes((SR_WRITE,)) + value.to_bytes(size, "little")
        rx = self._long(CMD_WRITE_SR, data, 12 + size, self.t.sr, "Write SR")
        if isinstance(rx, str):
            raise EraseError(f"writing flash status register 0x{value:0{size * 2}X}: {rx}")

    def unprotect(self, mid: int) -> tuple[int, int]:
        """Clear the write-protect bits for this MID; returns (old SR, new SR)."""
        lay = sr_layout(mid)
        if not lay.known:
            self.result.warnings.append(
                f"flash MID 0x{mid:06X} is not in the unprotect table; using the generic "
                f"{lay.size}-byte rule (mask 0x{lay.mask:04X})")
            self.log(self.result.warnings[-1])
        sr = 0
        for i, cmd in enumerate(lay.read_cmds):
            sr |= self.read_sr(cmd) << (8 * i)
        new = sr & ~lay.mask & ((1 << (8 * lay.size)) - 1)
        self.result.sr_before, self.result.sr_after = sr, new
        if new != sr:
            self.write_sr(new, lay.size)
            self.t.sleep(self.t.sr_write_wait)
            self.log(f"unprotect: SR 0x{sr:0{lay.size * 2}X} -> 0x{new:0{lay.size * 2}X}")
        else:
            self.log(f"flash already unprotected (SR 0x{sr:0{lay.size * 2}X})")
        return sr, new

    def erase(self, addr: int, length: int) -> None:
        t = self.t
        plan = erase_plan(addr, length)
        total = sum(s for s, _ in plan)
        done = 0
        self.progress("erase", 0, total)
        for size, a in plan:
            timeout = t.erase_4k if size == SECTOR else t.erase_64k
            why = ""
            for attempt in range(1, t.erase_tries + 1):
                rx = self._long(CMD_ERASE, bytes((ERASE_4K if size == SECTOR else ERASE_64K,))
                                + struct.pack("<I", a), 16, timeout, "Erase")
                if not isinstance(rx, str):
                    break
                why = rx
                if attempt < t.erase_tries:
                    t.sleep(t.erase_gap)
            else:
                raise EraseError(f"erasing {size // 1024} KiB at 0x{a:08X} failed after "
                                 f"{t.erase_tries} tries: {why}")
            self.result.erases.append((size, a))
            done += size
            self.progress("erase", done, total)

    def write(self, addr: int, data: bytes) -> None:
        t = self.t
        padded = pad_to_sector(data)
        total = len(padded) // SECTOR
        self.progress("write", 0, total)
        for i in range(total):
            a = addr + i * SECTOR
            frame = write_frame(a, padded[i * SECTOR:(i + 1) * SECTOR])
            why = ""
            for attempt in range(1, t.write_tries + 1):
                self._send(frame, "Write")
                rx = self._read(15, t.write, "Write")
                if len(rx) < 15:
                    why = f"{len(rx)} of 15 reply bytes within {t.write:g} s"
                elif rx[:3] != b"\x04\x0e\xff" or rx[9] != CMD_WRITE_4K or rx[10] != 0:
                    why = f"unexpected reply {rx.hex(' ')}"
                else:
                    echo = struct.unpack("<I", rx[11:15])[0]
                    if echo == a:
                        break
                    why = f"bootloader echoed address 0x{echo:08X}"
                if attempt < t.write_tries:
                    t.sleep(t.write_gap)
            else:
                raise WriteError(f"writing the 4 KiB sector at 0x{a:08X} failed after "
                                 f"{t.write_tries} tries: {why}")
            self.result.sectors += 1
            self.progress("write", i + 1, total)

    def check_crc(self, start: int, end_inclusive: int) -> int:
        self._send(crc_frame(start, end_inclusive), "CRC check")
        rx = self._read(11, self.t.crc, "CRC check")
        if len(rx) < 11 or rx[:2] != RX_SHORT or rx[3:6] != HDR or rx[6] != CMD_CHECK_CRC:
            raise VerifyError(f"no valid CRC reply for 0x{start:08X}..0x{end_inclusive:08X}: "
                              f"{rx.hex(' ') or 'nothing'}")
        return struct.unpack("<I", rx[7:11])[0]

    def verify(self, addr: int, data: bytes) -> str:
        padded = pad_to_sector(data)
        self.progress("verify", 0, 1)
        got = self.check_crc(addr, addr + len(padded) - 1)
        cands = crc_candidates(padded)
        self.result.crc = got
        for name, value in cands.items():
            if value == got:
                self.result.crc_variant = name
                self.log(f"CRC 0x{got:08X} matches {name}")
                self.progress("verify", 1, 1)
                return name
        expected = " or ".join(f"0x{v:08X} ({k})" for k, v in cands.items())
        raise VerifyError(f"flash CRC over 0x{addr:08X}..0x{addr + len(padded) - 1:08X} is "
                          f"0x{got:08X}, expected {expected}")

    def exit(self, reboot_cmd: bool = False) -> None:
        """Leave the ROM: optional Reboot, then DTR+RTS high for ``exit_hold``, then close."""
        try:
            if reboot_cmd:
                self._send(short_frame(CMD_REBOOT, b"\xa5"), "Reboot")
                self.t.sleep(self.t.reboot_wait)
            self._lines(1, 1)
            self.t.sleep(self.t.exit_hold)
        finally:
            try:
                self.port.close()
            except Exception:  # the port may already be gone; nothing left to do
                pass


def flash_image(isp: BkIsp, image: bytes, addr: int, *, baud: int, unprotect: bool = True,
                verify: bool = True, reboot_cmd: bool = False, stay_rom: bool = False,
                capacity_check: bool = True) -> FlashResult:
    """The whole script-only flash on an open port; closes the port (chip boots the app)."""
    if addr % SECTOR:
        raise FlashError(f"flash address 0x{addr:X} is not 4 KiB aligned")
    try:
        isp.connect()
        if stay_rom:
            isp.stay_rom()
        isp.set_baud(baud)
        mid = isp.flash_id()
        cap = flash_capacity(mid)
        end = addr + len(pad_to_sector(image))
        if capacity_check and cap is not None and end > cap:
            raise WrongChipError(
                f"flash MID 0x{mid:06X} holds {cap // 1024} KiB but the image ends at "
                f"0x{end:X}; this is not the expected module")
        isp.log(f"flash MID 0x{mid:06X}" + (f" ({cap // 1024} KiB)" if cap else ""))
        if unprotect:
            isp.unprotect(mid)
        isp.erase(addr, len(image))
        isp.write(addr, image)
        if verify:
            isp.verify(addr, image)
    except FlashError:
        try:
            isp.exit(False)
        except Exception:  # already failing; report the first error
            pass
        raise
    isp.exit(reboot_cmd)
    return isp.result
