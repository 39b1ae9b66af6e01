"""SPI buses and the chips a test wires to them, selected by their chip-select pin.

SPI has no acknowledge: a read with no chip selected (or nothing on the selected pin) clocks
in the idle MISO line, 0xFF with the usual pull-up. A chip sees a transaction as the bytes
exchanged while its CS is low: ``select()`` when CS falls, ``exchange(tx)`` for each clocked
chunk (it returns as many bytes as it got), ``deselect()`` when CS rises. CS is the ``cs``
given to ``spi.setup``/``spi.deviceSetup`` (the firmware drives it around each call) or a GPIO
the script drives itself (``gpio.setup(cs, 1)`` then ``cs(0)`` ... ``cs(1)``).

    dev.spi(1).attach(cs=3, chip=W25Q(jedec_id=0xEF4017))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..device import Device

IDLE_BYTE = 0xFF


class SpiChip:
    """A slave; override what the chip does. The default reads the idle line."""

    def select(self, now_ms: int) -> None:
        """CS went low: a new command starts."""

    def exchange(self, tx: bytes, now_ms: int) -> bytes:
        return bytes([IDLE_BYTE]) * len(tx)

    def deselect(self, now_ms: int) -> None:
        """CS went high: the command ends (a flash starts its page program here)."""


class W25Q(SpiChip):
    """A W25Qxx-style NOR flash: 0x9F JEDEC id, 0x06/0x04 write enable/disable, 0x05 status,
    0x03 read, 0x02 page program (256-byte pages, wraps inside the page, needs write enable,
    programming only clears bits), 0x20 4 KiB sector erase (needs write enable)."""

    def __init__(self, jedec_id: int = 0xEF4017, size: int = 8 * 1024 * 1024,
                 program_ms: int = 1, erase_ms: int = 45) -> None:
        self.jedec_id = jedec_id
        self.memory = bytearray(b"\xff") * size
        self.size = size
        self.program_ms = program_ms
        self.erase_ms = erase_ms
        self.write_enabled = False
        self._busy_until = -1
        self._cmd = bytearray()
        self._out = bytearray()

    def select(self, now_ms: int) -> None:
        self._cmd = bytearray()

    def exchange(self, tx: bytes, now_ms: int) -> bytes:
        out = bytearray()
        for byte in tx:
            self._cmd.append(byte)
            out.append(self._out_byte(now_ms))
        return bytes(out)

    def _out_byte(self, now_ms: int) -> int:
        op = self._cmd[0]
        i = len(self._cmd) - 1
        if op == 0x9F:
            return (b"\x00" + self.jedec_id.to_bytes(3, "big"))[i] if i < 4 else IDLE_BYTE
        if op == 0x05:
            return 0 if i == 0 else (1 if now_ms < self._busy_until else 0) | \
                (2 if self.write_enabled else 0)
        if op == 0x03 and i >= 4:
            addr = (int.from_bytes(self._cmd[1:4], "big") + i - 4) % self.size
            return self.memory[addr]
        return IDLE_BYTE

    def deselect(self, now_ms: int) -> None:
        cmd, self._cmd = self._cmd, bytearray()
        if not cmd or now_ms < self._busy_until:
            return
        op = cmd[0]
        if op == 0x06:
            self.write_enabled = True
        elif op == 0x04:
            self.write_enabled = False
        elif op == 0x02 and self.write_enabled and len(cmd) > 4:
            addr = int.from_bytes(cmd[1:4], "big") % self.size
            page = addr - addr % 256
            for k, byte in enumerate(cmd[4:4 + 256]):
                at = page + (addr + k) % 256
                self.memory[at] &= byte
            self.write_enabled = False
            self._busy_until = now_ms + self.program_ms
        elif op == 0x20 and self.write_enabled and len(cmd) >= 4:
            addr = int.from_bytes(cmd[1:4], "big") % self.size
            base = addr - addr % 4096
            self.memory[base:base + 4096] = b"\xff" * 4096
            self.write_enabled = False
            self._busy_until = now_ms + self.erase_ms


@dataclass
class SpiTransfer:
    ms: int
    cs: int | None
    tx: bytes
    rx: bytes
    read: bool = False  # the master only clocked dummy bytes to read (spi.recv)


@dataclass
class SpiBus:
    name: str
    device: Device
    chips: dict[int, SpiChip] = field(default_factory=dict)  # CS pin -> chip
    log: list[SpiTransfer] = field(default_factory=list)
    log_limit: int = 10_000
    _selected: set[int] = field(default_factory=set)

    def attach(self, cs: int, chip: SpiChip) -> SpiChip:
        self.chips[cs] = chip
        return chip

    def detach(self, cs: int) -> None:
        self.chips.pop(cs, None)
        self._selected.discard(cs)

    @property
    def tx(self) -> bytes:
        """Every byte the script sent on this bus, in order (not the dummy bytes of reads)."""
        return b"".join(t.tx for t in self.log if not t.read)

    def cs_changed(self, pin: int, level: int) -> None:
        """A GPIO the script drives changed: a chip on that pin is (de)selected."""
        chip = self.chips.get(pin)
        if chip is None:
            return
        now = self.device.current_ms()
        if level == 0 and pin not in self._selected:
            self._selected.add(pin)
            chip.select(now)
        elif level and pin in self._selected:
            self._selected.discard(pin)
            chip.deselect(now)

    def reset(self) -> None:
        """A new boot: every chip-select line is released."""
        self._selected.clear()

    def transaction(self, chunks: list[bytes], cs: int | None = None,
                    reads: tuple[bool, ...] = ()) -> list[bytes]:
        """Clock each chunk out (and as many bytes in), in one chip-select window. With ``cs``
        the firmware drives that pin low around the window; without, the chips the script
        selected by GPIO answer. ``reads`` marks chunks that are only dummy bytes clocked to
        read. Returns what came in for each chunk."""
        now = self.device.current_ms()
        own = self.chips.get(cs) if cs is not None else None
        if own is not None:
            own.select(now)
            answering = [own]
        else:
            answering = [self.chips[p] for p in sorted(self._selected) if p in self.chips]
        out = []
        for n, tx in enumerate(chunks):
            rx = bytes([IDLE_BYTE]) * len(tx)
            for chip in answering:  # two chips selected at once: the lines are wired-AND
                got = (chip.exchange(tx, now) + rx)[:len(tx)]
                rx = bytes(a & b for a, b in zip(rx, got, strict=True))
            if len(self.log) < self.log_limit:
                self.log.append(SpiTransfer(now, cs, bytes(tx), rx,
                                            n < len(reads) and reads[n]))
            out.append(rx)
        if own is not None:
            own.deselect(now)
        return out

    def answered_by(self, cs: int | None) -> bool:
        """Whether any chip is selected for a transfer with this ``cs``."""
        if cs is not None and cs in self.chips:
            return True
        return any(p in self.chips for p in self._selected)


class SpiBuses:
    """``dev.spi``: ``dev.spi(1)`` is hardware bus 1; ``dev.spi.soft(cs, mosi, miso, clk)``."""

    def __init__(self, device: Device, ids: frozenset[int] = frozenset({0, 1})) -> None:
        self.device = device
        self.ids = ids
        self._buses: dict[object, SpiBus] = {}

    def __call__(self, bus_id: int) -> SpiBus:
        if bus_id not in self.ids:
            raise ValueError(f"{self.device.profile.model} has no SPI bus {bus_id} "
                             f"(it has {sorted(self.ids)})")
        if bus_id not in self._buses:
            self._buses[bus_id] = SpiBus(f"spi{bus_id}", self.device)
        return self._buses[bus_id]

    def soft(self, mosi: int, miso: int, clk: int) -> SpiBus:
        key = ("soft", mosi, miso, clk)
        if key not in self._buses:
            self._buses[key] = SpiBus(f"soft spi (mosi {mosi}, miso {miso}, clk {clk})",
                                      self.device)
        return self._buses[key]

    def all(self) -> list[SpiBus]:
        return list(self._buses.values())

    def gpio_changed(self, pin: int, level: int) -> None:
        for bus in self._buses.values():
            bus.cs_changed(pin, level)
