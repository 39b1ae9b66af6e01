"""spi: the bus a CH390H Ethernet chip (or any SPI peripheral) hangs off.

Exists because LuatOS's own exnetif opens the bus with ``spi.setup(...)`` before
``netdrv.setup(adapter, netdrv.CH390, {spi=, cs=})`` and treats any return other than 0 as
"spi open error". The emulator has no SPI peripherals to talk to: a bus that is open accepts
writes (kept per bus in ``dev.spi.tx`` for tests) and reads back idle-line bytes (0xFF).
The bus ids and constant values are not in the reference: they are emulator choices that
follow the usual LuatOS numbering (MSB=1, master=1, full duplex=1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .zbuff import ZBuff

if TYPE_CHECKING:
    from ..vm import Boot

SPI_IDS = frozenset({0, 1, 2})
IDLE_BYTE = 0xFF
CONSTANTS = {"MSB": 1, "LSB": 0, "master": 1, "slave": 0, "full": 1, "half": 0,
             "SPI_0": 0, "SPI_1": 1, "SPI_2": 2}


def install(boot: Boot) -> None:
    bus = boot.platform.spi
    bus.open = {}
    boot.closers.append(bus.open.clear)

    def data_of(value: Any) -> bytes | None:
        """A string, or a zbuff's used bytes, or None."""
        if isinstance(value, bytes):
            return value
        if isinstance(value, ZBuff):
            return bytes(value.query())
        return None

    def setup(spi_id: Any = None, cs: Any = None, cpha: Any = 0, cpol: Any = 0,
              data_width: Any = 8, baud: Any = 2_000_000, *_: Any) -> int:
        """0 when the bus opened, -1 for an id the module does not have."""
        if not isinstance(spi_id, int) or spi_id not in SPI_IDS:
            boot.log_c("E", "spi", f"spi id {spi_id!r} not support")
            return -1
        bus.open[spi_id] = {
            "cs": cs if isinstance(cs, int) else -1, "cpha": int(cpha or 0),
            "cpol": int(cpol or 0), "width": int(data_width or 8), "baud": int(baud or 0)}
        boot.trace("spi_setup", id=spi_id, baud=bus.open[spi_id]["baud"])
        return 0

    def close(spi_id: Any = None) -> int:
        bus.open.pop(spi_id, None)
        return 0

    def send(spi_id: Any = None, data: Any = None, length: Any = None) -> int:
        raw = data_of(data)
        if spi_id not in bus.open or raw is None:
            return -1
        if isinstance(length, int) and 0 <= length < len(raw):
            raw = raw[:length]
        bus.tx.setdefault(spi_id, bytearray()).extend(raw)
        return len(raw)

    def recv(spi_id: Any = None, size: Any = None, *_: Any) -> Any:
        if spi_id not in bus.open or not isinstance(size, int) or size < 0:
            return None
        return bytes([IDLE_BYTE]) * size

    def transfer(spi_id: Any = None, data: Any = None, send_len: Any = None,
                 recv_len: Any = None) -> Any:
        sent = send(spi_id, data, send_len)
        if sent < 0:
            return None
        return recv(spi_id, recv_len if isinstance(recv_len, int) else sent)

    boot.firmware_module("spi", {
        "setup": setup, "close": close, "send": send, "recv": recv, "transfer": transfer,
    }, CONSTANTS)
