"""Ready I2C parts modelled on their data sheets, so vendor sensor demos read real numbers.

Each part behaves as the chip does where a script can tell the difference: command codes,
conversion times (a no-hold read before the conversion is done is NACKed, a read of the AHT10
while busy shows the busy bit), the data layout with its CRC, and the EEPROM's page wrap and
write cycle. Set ``temperature`` / ``humidity`` at any time; the next conversion uses them.
"""

from __future__ import annotations

from .i2c import I2cDevice


def crc8(data: bytes, init: int = 0xFF, poly: int = 0x31) -> int:
    """The Sensirion / Aosong CRC-8 (x^8 + x^5 + x^4 + 1)."""
    crc = init
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _clamp16(value: float) -> int:
    return max(0, min(0xFFFF, round(value)))


class SHT30(I2cDevice):
    """Sensirion SHT3x at 0x44: 16-bit commands, 6-byte result (T, CRC, RH, CRC).

    Single-shot with clock stretching (0x2C06/0x2C0D/0x2C10) answers as soon as it is read;
    without stretching (0x2400/0x240B/0x2416) a read inside the 15/6/4 ms conversion is
    NACKed. A result is read once; reading again without a new command is NACKed.
    """

    STRETCH = {0x2C06: 15, 0x2C0D: 6, 0x2C10: 4}
    NO_STRETCH = {0x2400: 15, 0x240B: 6, 0x2416: 4}

    def __init__(self, temperature: float = 25.0, humidity: float = 50.0) -> None:
        self.temperature = temperature
        self.humidity = humidity
        self._ready_at: int | None = None
        self._stretch = False
        self._result = b""
        self.status = 0x0000

    def measurement(self) -> bytes:
        t = _clamp16((self.temperature + 45.0) * 65535.0 / 175.0).to_bytes(2, "big")
        h = _clamp16(self.humidity * 65535.0 / 100.0).to_bytes(2, "big")
        return t + bytes([crc8(t)]) + h + bytes([crc8(h)])

    def on_write(self, data: bytes, now_ms: int) -> bool:
        if len(data) < 2:
            return True  # a command is two bytes; a lone byte is ACKed and ignored
        cmd = int.from_bytes(data[:2], "big")
        if cmd in self.STRETCH or cmd in self.NO_STRETCH:
            self._stretch = cmd in self.STRETCH
            self._ready_at = now_ms + (self.STRETCH.get(cmd) or self.NO_STRETCH[cmd])
            self._result = self.measurement()
        elif cmd == 0xF32D:  # read status
            s = self.status.to_bytes(2, "big")
            self._result, self._ready_at, self._stretch = s + bytes([crc8(s)]), now_ms, False
        elif cmd in (0x30A2, 0x3041):  # soft reset, clear status
            self._result, self._ready_at = b"", None
        return True

    def on_read(self, n: int, now_ms: int) -> bytes | None:
        if not self._result or self._ready_at is None:
            return None
        if now_ms < self._ready_at and not self._stretch:
            return None
        out, self._result, self._ready_at = self._result, b"", None
        return (out + b"\xff" * n)[:n]


class SHT20(I2cDevice):
    """Sensirion SHT2x / HTU21 at 0x40: one-byte commands, 2 data bytes + CRC.

    0xF3 / 0xF5 (no hold master): a read before the 85 ms (T) / 29 ms (RH) conversion ends is
    NACKed. 0xE3 / 0xE5 (hold master) stretch the clock, so the read always succeeds. The two
    low bits of the LSB are status (bit 1 set for humidity), as on the chip.
    """

    def __init__(self, temperature: float = 25.0, humidity: float = 50.0) -> None:
        self.temperature = temperature
        self.humidity = humidity
        self.user_register = 0x02
        self._result = b""
        self._ready_at: int | None = None
        self._hold = False

    def _raw(self, humidity: bool) -> bytes:
        if humidity:
            value = _clamp16((self.humidity + 6.0) * 65536.0 / 125.0) & 0xFFFC | 0x02
        else:
            value = _clamp16((self.temperature + 46.85) * 65536.0 / 175.72) & 0xFFFC
        b = value.to_bytes(2, "big")
        return b + bytes([crc8(b, init=0x00)])

    def on_write(self, data: bytes, now_ms: int) -> bool:
        if not data:
            return True
        cmd = data[0]
        if cmd in (0xE3, 0xF3):
            self._result, self._ready_at, self._hold = self._raw(False), now_ms + 85, cmd == 0xE3
        elif cmd in (0xE5, 0xF5):
            self._result, self._ready_at, self._hold = self._raw(True), now_ms + 29, cmd == 0xE5
        elif cmd == 0xE7:
            self._result, self._ready_at, self._hold = bytes([self.user_register]), now_ms, True
        elif cmd == 0xE6 and len(data) > 1:
            self.user_register = data[1]
        elif cmd == 0xFE:
            self._result, self._ready_at, self.user_register = b"", None, 0x02
        return True

    def on_read(self, n: int, now_ms: int) -> bytes | None:
        if not self._result or self._ready_at is None:
            return None
        if now_ms < self._ready_at and not self._hold:
            return None
        out, self._result, self._ready_at = self._result, b"", None
        return (out + b"\xff" * n)[:n]


class AHT10(I2cDevice):
    """Aosong AHT10/AHT20 at 0x38: 0xE1 (init/calibrate), 0xAC 0x33 0x00 (measure, 75 ms),
    0xBA (soft reset). A read returns the status byte (bit 7 busy, bit 3 calibrated) then
    20-bit humidity and 20-bit temperature; with ``crc=True`` (AHT20) a CRC byte follows."""

    MEASURE_MS = 75

    def __init__(self, temperature: float = 25.0, humidity: float = 50.0, *,
                 crc: bool = False) -> None:
        self.temperature = temperature
        self.humidity = humidity
        self.crc = crc
        self.calibrated = True
        self._busy_until = -1
        self._data = bytes(5)

    def on_write(self, data: bytes, now_ms: int) -> bool:
        if not data:
            return True
        if data[0] in (0xE1, 0xBE):
            self.calibrated = True
        elif data[0] == 0xAC:
            h = max(0, min(0xFFFFF, round(self.humidity / 100.0 * (1 << 20))))
            t = max(0, min(0xFFFFF, round((self.temperature + 50.0) / 200.0 * (1 << 20))))
            self._data = bytes([h >> 12, (h >> 4) & 0xFF, ((h & 0xF) << 4) | (t >> 16),
                                (t >> 8) & 0xFF, t & 0xFF])
            self._busy_until = now_ms + self.MEASURE_MS
        elif data[0] == 0xBA:
            self.calibrated, self._busy_until = False, -1
        return True

    def on_read(self, n: int, now_ms: int) -> bytes | None:
        status = (0x80 if now_ms < self._busy_until else 0) | (0x08 if self.calibrated else 0)
        out = bytes([status | 0x10]) + self._data
        if self.crc:
            out += bytes([crc8(out)])
        return (out + b"\xff" * n)[:n]


class EEPROM24C02(I2cDevice):
    """A 24C02-style EEPROM at 0x50: one address byte, 8-byte pages (a write wraps inside its
    page, as the chip does), sequential reads across the whole array, and a 5 ms write cycle
    during which the chip does not acknowledge its address."""

    def __init__(self, size: int = 256, page: int = 8, write_cycle_ms: int = 5,
                 fill: int = 0xFF) -> None:
        self.memory = bytearray([fill]) * size
        self.size = size
        self.page = page
        self.write_cycle_ms = write_cycle_ms
        self.pointer = 0
        self._busy_until = -1

    def on_write(self, data: bytes, now_ms: int) -> bool:
        if now_ms < self._busy_until:
            return False
        if not data:
            return True
        self.pointer = data[0] % self.size
        payload = data[1:]
        if payload:
            base = self.pointer - self.pointer % self.page
            offset = self.pointer % self.page
            for byte in payload:
                self.memory[base + offset] = byte
                offset = (offset + 1) % self.page
            self.pointer = base + offset
            self._busy_until = now_ms + self.write_cycle_ms
        return True

    def on_read(self, n: int, now_ms: int) -> bytes | None:
        if now_ms < self._busy_until:
            return None
        out = bytearray()
        for _ in range(n):
            out.append(self.memory[self.pointer])
            self.pointer = (self.pointer + 1) % self.size
        return bytes(out)
