"""I2C buses and the slaves a test wires to them.

A bus has slaves at 7-bit addresses. Each transaction the script makes reaches the slave as a
write (the bytes after the address) or a read (how many bytes the master clocks in), with the
virtual time, so a sensor can be busy converting. A slave NACKs by returning False / None,
and an address nobody answers is a NACK too: the firmware call then fails the way it fails on
a board with nothing soldered there (``i2c.send`` false, ``i2c.recv`` an empty string).

    dev.i2c(0).attach(0x44, SHT30(temperature=21.5))
    dev.i2c(0).attach(0x50, RegisterDevice({0x00: 0x12}))
    dev.i2c.soft(20, 21).attach(0x40, SHT20())   # i2c.createSoft(20, 21)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..device import Device


class I2cDevice:
    """A slave. Override ``on_write`` / ``on_read``; the defaults ACK and read 0xFF."""

    def on_write(self, data: bytes, now_ms: int) -> bool:
        """The master wrote ``data`` after our address; False NACKs (the transfer fails)."""
        return True

    def on_read(self, n: int, now_ms: int) -> bytes | None:
        """The master reads ``n`` bytes; None NACKs the address (the read fails)."""
        return b"\xff" * n


class RegisterDevice(I2cDevice):
    """A register map behind an auto-incrementing pointer: the first ``reg_bytes`` of a write
    set the pointer, further bytes are stored from there; a read continues at the pointer.
    This is how most sensors, RTCs and EEPROMs answer ``i2c.writeReg`` / ``i2c.readReg``."""

    def __init__(self, registers: Mapping[int, int] | bytes | None = None, *, size: int = 256,
                 reg_bytes: int = 1, read_only: bool = False) -> None:
        self.size = size
        self.reg_bytes = reg_bytes
        self.read_only = read_only
        self.memory = bytearray(size)
        if isinstance(registers, bytes | bytearray):
            self.memory[:len(registers)] = registers[:size]
        elif registers:
            for reg, value in registers.items():
                self.memory[reg % size] = value & 0xFF
        self.pointer = 0

    def __getitem__(self, reg: int) -> int:
        return self.memory[reg % self.size]

    def __setitem__(self, reg: int, value: int) -> None:
        self.memory[reg % self.size] = value & 0xFF

    def on_write(self, data: bytes, now_ms: int) -> bool:
        if len(data) < self.reg_bytes:
            return True
        self.pointer = int.from_bytes(data[:self.reg_bytes], "big") % self.size
        for byte in data[self.reg_bytes:]:
            if not self.read_only:
                self.memory[self.pointer] = byte
            self.pointer = (self.pointer + 1) % self.size
        return True

    def on_read(self, n: int, now_ms: int) -> bytes | None:
        out = bytearray()
        for _ in range(n):
            out.append(self.memory[self.pointer])
            self.pointer = (self.pointer + 1) % self.size
        return bytes(out)


class CallbackDevice(I2cDevice):
    """A slave made of two functions, for protocols no ready model covers."""

    def __init__(self, on_write: Callable[[bytes], bool | None] | None = None,
                 on_read: Callable[[int], bytes | None] | None = None) -> None:
        self._write = on_write
        self._read = on_read

    def on_write(self, data: bytes, now_ms: int) -> bool:
        return True if self._write is None else self._write(data) is not False

    def on_read(self, n: int, now_ms: int) -> bytes | None:
        if self._read is None:
            return b"\xff" * n
        data = self._read(n)
        return None if data is None else (bytes(data) + b"\xff" * n)[:n]


@dataclass
class I2cTransaction:
    ms: int
    addr: int
    kind: str  # "write" | "read"
    data: bytes
    ok: bool


@dataclass
class I2cBus:
    """One bus (hardware id or a soft bus on two pins) and what hangs on it."""

    name: str
    device: Device
    slaves: dict[int, I2cDevice] = field(default_factory=dict)
    log: list[I2cTransaction] = field(default_factory=list)
    log_limit: int = 10_000

    def attach(self, addr: int, slave: I2cDevice) -> I2cDevice:
        if not 0 <= addr <= 0x7F:
            raise ValueError(f"{self.name}: address {addr:#x} is not a 7-bit I2C address")
        self.slaves[addr] = slave
        return slave

    def detach(self, addr: int) -> None:
        self.slaves.pop(addr, None)

    def _note(self, addr: int, kind: str, data: bytes, ok: bool) -> None:
        if len(self.log) < self.log_limit:
            self.log.append(I2cTransaction(self.device.current_ms(), addr, kind, data, ok))

    def write(self, addr: int, data: bytes) -> bool:
        """An addressed write; False when the address or a byte was NACKed."""
        slave = self.slaves.get(addr & 0x7F)
        ok = slave is not None and slave.on_write(bytes(data), self.device.current_ms())
        self._note(addr, "write", bytes(data), ok)
        return ok

    def read(self, addr: int, n: int) -> bytes | None:
        """An addressed read of ``n`` bytes; None when the address was NACKed."""
        slave = self.slaves.get(addr & 0x7F)
        data = None if slave is None else slave.on_read(n, self.device.current_ms())
        if data is not None:
            data = (bytes(data) + b"\xff" * n)[:n]
        self._note(addr, "read", data or b"", data is not None)
        return data

    def writes(self, addr: int | None = None) -> list[bytes]:
        """The data of every acknowledged write (to ``addr``), oldest first."""
        return [t.data for t in self.log if t.kind == "write" and t.ok
                and (addr is None or t.addr == addr)]


class I2cBuses:
    """``dev.i2c``: ``dev.i2c(0)`` is hardware bus 0, ``dev.i2c.soft(scl, sda)`` a soft bus."""

    def __init__(self, device: Device, ids: frozenset[int] = frozenset({0, 1})) -> None:
        self.device = device
        self.ids = ids  # hardware bus ids the model has (i2c.exist)
        self._hw: dict[int, I2cBus] = {}
        self._soft: dict[tuple[int, int], I2cBus] = {}

    def __call__(self, bus_id: int) -> I2cBus:
        if bus_id not in self.ids:
            raise ValueError(f"{self.device.profile.model} has no I2C bus {bus_id} "
                             f"(it has {sorted(self.ids)})")
        if bus_id not in self._hw:
            self._hw[bus_id] = I2cBus(f"i2c{bus_id}", self.device)
        return self._hw[bus_id]

    def soft(self, scl: int, sda: int) -> I2cBus:
        """The bus a script opens with ``i2c.createSoft(scl, sda)``."""
        key = (scl, sda)
        if key not in self._soft:
            self._soft[key] = I2cBus(f"soft i2c (scl {scl}, sda {sda})", self.device)
        return self._soft[key]
