"""spi: hardware buses, soft buses and device objects, over the chips a test attaches.

LuatOS's exnetif opens the bus with ``spi.setup(...)`` before ``netdrv.setup`` and treats any
return other than 0 as "spi open error", and the vendor's flash demo drives chip-select from
a GPIO around ``spi.send``/``spi.recv``: both work here. With no chip selected, reads clock
in the idle MISO line (0xFF), as on a board with nothing on the bus; SPI has no acknowledge,
so the emulator notes once per bus when a script reads with nothing listening.

Return values follow the firmware: ``setup``/``close`` 0, ``send`` the count sent,
``recv``/``transfer`` the bytes (nil on failure), ``deviceSetup`` an ``SPI*`` object whose
``close`` returns true. Bus ids are 0-2 (an emulator choice; the model's real ids are
UNCONFIRMED, see docs/defaults.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..cfunc import lua_integer, require_ints
from ..platform.spi import SpiBus, SpiBuses
from .zbuff import ZBuff

if TYPE_CHECKING:
    from ..vm import Boot

NO_CS = 255
CONSTANTS = {"MSB": 1, "LSB": 0, "master": 1, "slave": 0, "full": 1, "half": 0,
             "SPI_0": 0, "SPI_1": 1, "SPI_2": 2, "SPI_3": 3, "SPI_4": 4, "HSPI_0": 5}


@dataclass
class _Port:
    """An open bus, a soft bus or a device object: where its bytes go and how."""

    bus: SpiBus
    bus_id: int | None
    cs: int | None  # driven by the firmware around each call; None: the script drives CS
    full_duplex: bool
    baud: int
    closed: bool = False


class _SoftPort(_Port):
    """``spi.createSoft``'s object: a bus of its own, used as the id (no methods)."""


def install(boot: Boot) -> None:
    buses: SpiBuses = boot.platform.spi  # reset at boot: Platform.begin_boot
    opened: dict[int, _Port] = {}
    noted: set[str] = set()

    def note(key: str, text: str) -> None:
        if key not in noted:
            noted.add(key)
            boot.note(text)

    def data_of(value: Any, from_cursor: bool = True) -> bytes | None:
        """A string, a zbuff (from its pointer to its end, as the firmware sends it), or a
        table of byte values; None for anything else."""
        if isinstance(value, bytes):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value).encode()
        if isinstance(value, ZBuff):
            return bytes(value.buf[value.used:]) if from_cursor else bytes(value.query())
        if value is None or boot.lua_type(value) != b"table":
            return None
        out = bytearray()
        i = 1
        while value[i] is not None:
            v = value[i]
            out.append(int(v) & 0xFF if isinstance(v, int | float) else 0)
            i += 1
        return bytes(out)

    def is_table(value: Any) -> bool:
        return value is not None and not isinstance(value, bytes | int | float | ZBuff) and \
            boot.lua_type(value) == b"table"

    def port_of(target: Any, fn: str) -> _Port | None:
        if isinstance(target, _Port):
            return target if not target.closed else None
        i = lua_integer(target)
        if i is None:
            raise TypeError(f"bad argument #1 to '{fn}' (number expected, got "
                            f"{boot.lua_type(target).decode()})")
        port = opened.get(i)
        if port is None:
            why = "does not exist on this model" if i not in buses.ids else \
                "was not opened with spi.setup"
            note(f"closed{i}", f"spi.{fn}: spi{i} {why}; the call fails as on the device")
        return port

    def run(port: _Port, chunks: list[bytes], reads: tuple[bool, ...] = ()) -> list[bytes]:
        if not port.bus.answered_by(port.cs) and any(chunks):
            note(f"idle{port.bus.name}", f"{port.bus.name}: no chip is selected "
                 "(attach one with dev.spi(...).attach(cs=..., chip=...)); reads see the idle "
                 "line 0xFF")
        return port.bus.transaction(chunks, port.cs, reads)

    def exchange(port: _Port, tx: bytes, recv_len: int) -> bytes:
        """Half duplex (or different lengths): send, then clock in; full duplex with equal
        lengths: what came in while sending."""
        if port.full_duplex and recv_len == len(tx):
            return run(port, [tx])[0]
        got = run(port, [tx, bytes([0xFF]) * recv_len], (False, True)) if tx else \
            run(port, [bytes([0xFF]) * recv_len], (True,))
        return got[-1]

    def cs_of(v: Any) -> int | None:
        c = lua_integer(v)
        return None if c is None or c == NO_CS else c

    def setup(bus_id: int, cs: Any = None, cpha: Any = 0, cpol: Any = 0, dataw: Any = 8,
              baud: Any = 2_000_000, bitdict: Any = 1, master: Any = 1, mode: Any = 1) -> int:
        require_ints(bus_id)
        if bus_id not in buses.ids:
            boot.log_c("E", "spi", f"spi id {bus_id} not support")
            return -1
        opened[bus_id] = _Port(buses(bus_id), bus_id, cs_of(cs), lua_integer(mode) != 0,
                               lua_integer(baud) or 2_000_000)
        boot.trace("spi_setup", id=bus_id, baud=opened[bus_id].baud,
                           cs=opened[bus_id].cs)
        return 0

    def create_soft(cs: Any = None, mosi: int = 0, miso: int = 0, clk: int = 0,
                    cpha: Any = 0, cpol: Any = 0, dataw: Any = 8, bitdict: Any = 1,
                    master: Any = 1, mode: Any = 0) -> Any:
        return _SoftPort(buses.soft(mosi, miso, clk), None, cs_of(cs), lua_integer(mode) == 1, 0)

    def close(target: Any = None, *_: Any) -> int:
        if isinstance(target, _Port):
            target.closed = True
            return 0
        i = lua_integer(target)
        if i is not None:
            opened.pop(i, None)
        return 0

    def transfer(target: Any, data: Any = None, send_len: Any = None,
                 recv_len: Any = 1) -> bytes | None:
        raw = data_of(data) if not is_table(data) else None
        if raw is None:
            raise TypeError("bad argument #2 to 'transfer' (string expected, got "
                            f"{boot.lua_type(data).decode()})")
        n = lua_integer(send_len)
        if n is not None and n <= len(raw):
            raw = raw[:n]
        if not raw:
            return b""
        port = port_of(target, "transfer")
        if port is None:
            return None
        want = lua_integer(recv_len)
        return exchange(port, raw, 1 if want is None else max(0, want)) or None

    def send(target: Any, data: Any = None, length: Any = None) -> int:
        raw = data_of(data) if not is_table(data) else None
        if raw is None:
            raise TypeError("bad argument #2 to 'send' (string expected, got "
                            f"{boot.lua_type(data).decode()})")
        n = lua_integer(length)
        if n is not None and n < len(raw):
            raw = raw[:n]
        if not raw:
            return 0
        port = port_of(target, "send")
        if port is None:
            return -1
        run(port, [raw])
        return len(raw)

    def recv(target: Any, size: Any = 1, buff: Any = None) -> Any:
        n = lua_integer(size)
        n = 1 if n is None else n
        if n <= 0:
            return None
        z = buff if isinstance(buff, ZBuff) else None
        if z is not None and z.capacity - z.used < n:
            boot.log_c("W", "spi", f"zbuff too small {z.capacity - z.used} {n}")
            return None
        port = port_of(target, "recv")
        if port is None:
            return None
        data = run(port, [bytes([0xFF]) * n], (True,))[0]
        if z is not None:
            z.buf[z.used:z.used + n] = data
            z.used += n
            return n
        return data

    def device_setup(bus_id: int, cs: Any = None, cpha: Any = 0, cpol: Any = 0,
                     dataw: Any = 8, baud: Any = 20_000_000, bitdict: Any = 1,
                     master: Any = 1, mode: Any = 1) -> Any:
        if bus_id not in buses.ids:
            boot.log_c("E", "spi", f"spi id {bus_id} not support")
            bus = buses.soft(-1, -1, -1)  # the object exists; nothing is wired behind it
        else:
            bus = buses(bus_id)
        port = _Port(bus, bus_id, cs_of(cs), lua_integer(mode) != 0, lua_integer(baud) or 20_000_000)
        boot.trace("spi_device_setup", id=bus_id, cs=port.cs, baud=port.baud)
        return port

    def d_close(port: _Port | None, *_: Any) -> bool:
        if port is not None:
            port.closed = True
        return True

    def d_transfer(port: _Port | None, data: Any = None, send_len: Any = None,
                   recv_len: Any = 1) -> bytes | None:
        raw = data_of(data)
        if raw is None:
            boot.log_c("E", "spi", "spi_device transfer first arg error")
            return None
        n = lua_integer(send_len)
        if n is not None:
            raw = raw[:max(0, n)]
        want = lua_integer(recv_len)
        want = 1 if want is None else want
        if want == 0:
            return b""
        if port is None or port.closed:
            return None
        return exchange(port, raw, max(0, want)) or None

    def d_send(port: _Port | None, data: Any = None, *_: Any) -> int | None:
        raw = data_of(data)
        if raw is None:
            boot.log_c("E", "spi", "spi_device transfer first arg error")
            return None
        if port is None or port.closed:
            return -1
        run(port, [raw])
        return len(raw)

    def d_recv(port: _Port | None, size: Any = 1, *_: Any) -> bytes | None:
        n = lua_integer(size)
        n = 1 if n is None else n
        if port is None or port.closed or n <= 0:
            return None
        return run(port, [bytes([0xFF]) * n], (True,))[0]

    def xfer(target: Any, tx: Any = None, rx: Any = None, length: Any = 0,
             topic: bytes = b"") -> bool:
        n = lua_integer(length) or 0
        txz = tx if isinstance(tx, ZBuff) else None
        rxz = rx if isinstance(rx, ZBuff) else None
        if (txz is None and rxz is None) or n <= 0:
            return False
        port = port_of(target, "xfer")
        if port is None:
            return False
        out = bytes(txz.buf[:n]) if txz is not None else bytes([0xFF]) * n
        got = run(port, [(out + b"\xff" * n)[:n]])[0]
        if rxz is not None:
            rxz.buf[:n] = got
        boot.post(1, boot.sys_pub, topic, lua_integer(target) if lua_integer(target) is not None else 0,
                  True, 0)
        return True

    methods: dict[str, Callable[..., Any]] = {
        "close": d_close, "transfer": d_transfer, "send": d_send, "recv": d_recv}
    boot.objects.define(_Port, "SPI*", methods=methods)
    boot.objects.define(_SoftPort, "ESPI*")

    def device_transfer(target: Any, *args: Any) -> Any:
        return d_transfer(target if isinstance(target, _Port) else None, *args)

    def device_send(target: Any, *args: Any) -> Any:
        return d_send(target if isinstance(target, _Port) else None, *args)

    boot.firmware_module("spi", {
        "setup": setup, "createSoft": create_soft, "close": close, "transfer": transfer,
        "send": send, "recv": recv, "deviceSetup": device_setup,
        "deviceTransfer": device_transfer, "deviceSend": device_send, "xfer": xfer,
    }, CONSTANTS)
