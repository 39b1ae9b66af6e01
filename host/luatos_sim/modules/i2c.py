"""i2c: hardware buses and soft (bit-banged) buses, over the slaves a test attaches.

Return values follow the firmware: ``setup`` 1/0, ``send``/``writeReg`` true/false,
``recv``/``readReg`` the bytes read or an empty string when the slave did not answer,
``transfer`` (ok, data). A bus with nothing at the address NACKs, so a script sees exactly what
a board with an unpopulated socket gives it; the emulator adds one note per address and boot
naming the bus and how to attach a slave.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..cfunc import lua_integer, require_ints
from ..platform.i2c import I2cBus, I2cBuses
from .zbuff import ZBuff

if TYPE_CHECKING:
    from ..vm import Boot

CONSTANTS = {"SLOW": 0, "FAST": 1, "PLUS": 2, "HSMODE": 3}
SOFT_TYPE = "EI2C*"


class _Soft:
    def __init__(self, bus: I2cBus) -> None:
        self.bus = bus


def install(boot: Boot) -> None:
    buses: I2cBuses = boot.platform.i2c
    opened: set[int] = set()
    noted: set[tuple[str, int]] = set()
    boot.objects.define(_Soft, SOFT_TYPE)

    def bus_of(bus_id: Any, fn: str) -> I2cBus | None:
        if isinstance(bus_id, _Soft):
            return bus_id.bus
        i = lua_integer(bus_id)
        if i is None:
            raise TypeError(f"bad argument #1 to '{fn}' (number expected, got "
                            f"{boot.lua_type(bus_id).decode()})")
        if i not in buses.ids or i not in opened:
            key = (f"closed{i}", -1)
            if key not in noted:
                noted.add(key)
                why = "does not exist on this model" if i not in buses.ids else \
                    "was not opened with i2c.setup"
                boot.note(f"i2c.{fn}: i2c{i} {why}; the transfer fails as on the device")
            return None
        return buses(i)

    def nack(bus: I2cBus, addr: int, what: str) -> None:
        if addr in bus.slaves:
            return  # the slave itself refused (busy, no data): its own behaviour, no note
        key = (bus.name, addr)
        if key not in noted:
            noted.add(key)
            boot.note(f"{bus.name}: nothing answers at address {addr:#04x} ({what} NACKed);"
                            f" attach a slave with dev.i2c(...).attach({addr:#04x}, ...)")

    def payload(data: Any) -> bytes:
        if data is None:
            return b""
        if isinstance(data, bool):
            return b""
        if isinstance(data, int):
            return bytes([data & 0xFF])
        if isinstance(data, float):
            return bytes([int(data) & 0xFF])
        if isinstance(data, bytes):
            return data
        if isinstance(data, ZBuff):
            return bytes(data.query())
        if boot.lua_type(data) == b"table":
            out = bytearray()
            i = 1
            while data[i] is not None:
                v = data[i]
                out.append(int(v) & 0xFF if isinstance(v, int | float) else 0)
                i += 1
            return bytes(out)
        return b""

    def do_write(bus: I2cBus | None, addr: int, data: bytes) -> bool:
        if bus is None:
            return False
        ok = bus.write(addr, data)
        if not ok:
            nack(bus, addr, "write")
        return ok

    def do_read(bus: I2cBus | None, addr: int, n: int) -> bytes | None:
        if bus is None:
            return None
        data = bus.read(addr, max(0, n))
        if data is None:
            nack(bus, addr, "read")
        return data

    def exist(bus_id: int) -> bool:
        require_ints(bus_id)
        return bus_id in buses.ids

    def setup(bus_id: int, speed: int | None = 0, *_: Any) -> int:
        require_ints(bus_id, *(() if speed is None else (speed,)))
        if bus_id not in buses.ids:
            boot.log_c("E", "i2c", f"no such i2c id {bus_id}")
            return 0
        opened.add(bus_id)
        boot.trace("i2c_setup", id=bus_id, speed=speed)
        return 1

    def create_soft(scl: int, sda: int, *_: Any) -> Any:
        return _Soft(buses.soft(scl, sda))

    def close(bus_id: Any = None, *_: Any) -> None:
        i = lua_integer(bus_id)
        if i is None:
            raise TypeError("bad argument #1 to 'close' (number expected, got "
                            f"{boot.lua_type(bus_id).decode()})")
        opened.discard(i)

    def send(bus_id: Any, addr: int, data: Any = None, stop: Any = 1) -> bool:
        return do_write(bus_of(bus_id, "send"), addr, payload(data))

    def recv(bus_id: Any, addr: int, length: int) -> bytes:
        data = do_read(bus_of(bus_id, "recv"), addr, length)
        if data is None:
            boot.log_c("D", "i2c", "i2c receive result -1")
            return b""
        return data

    def write_reg(bus_id: Any, addr: int, reg: int, data: bytes, stop: Any = 1) -> bool:
        return do_write(bus_of(bus_id, "writeReg"), addr, bytes([reg & 0xFF]) + data)

    def read_reg(bus_id: Any, addr: int, reg: int, length: int, stop: Any = 0) -> bytes:
        bus = bus_of(bus_id, "readReg")
        if not do_write(bus, addr, bytes([reg & 0xFF])):
            boot.log_c("D", "i2c", "i2c send result -1")
            return b""
        data = do_read(bus, addr, length)
        if data is None:
            boot.log_c("D", "i2c", "i2c receive result -1")
            return b""
        return data

    def transfer(bus_id: Any, addr: int, tx: Any = None, rx_buff: Any = None,
                 rx_len: Any = None) -> tuple[bool, Any]:
        bus = bus_of(bus_id, "transfer")
        out = payload(tx)
        n = lua_integer(rx_len) or 0
        if n <= 0:
            return do_write(bus, addr, out), None
        if out and not do_write(bus, addr, out):
            return False, None
        data = do_read(bus, addr, n)
        if data is None:
            return False, None
        if isinstance(rx_buff, ZBuff):
            rx_buff.append(data)
            return True, None
        return True, data

    def xfer(bus_id: Any, addr: int, tx: Any = None, rx_buff: Any = None, rx_len: Any = None,
             topic: bytes = b"", timeout: Any = 100) -> bool:
        bus = bus_of(bus_id, "xfer")
        if bus is None:
            return False
        out = payload(tx)
        n = lua_integer(rx_len) or 0
        ok = do_write(bus, addr, out) if out or n <= 0 else True
        data = do_read(bus, addr, n) if ok and n > 0 else b""
        ok = ok and data is not None
        if ok and data and isinstance(rx_buff, ZBuff):
            rx_buff.buf[:len(data)] = data
            rx_buff.used = len(data)
        boot.post(1, boot.sys_pub, topic, bus_id, ok, 0 if ok else -1)
        return True

    def read_dht12(bus_id: Any, addr: int = 0x5C) -> Any:
        bus = bus_of(bus_id, "readDHT12")
        if not do_write(bus, addr, b"\x00"):
            boot.log_c("D", "i2c", "DHT12 i2c bus write fail")
            return False
        b = do_read(bus, addr, 5)
        if b is None or not any(b):
            return False
        if (b[0] + b[1] + b[2] + b[3]) & 0xFF != b[4]:
            boot.log_c("D", "i2c", "DATA12 DATA crc not ok")
            return False
        temp = (b[2] - 128) * -10 + b[3] if b[2] > 127 else b[2] * 10 + b[3]
        return True, b[0] * 10 + b[1], temp

    def read_sht30(bus_id: Any = 0, addr: int = 0x44) -> Any:
        bus = bus_of(bus_id, "readSHT30")
        if bus is not None:
            bus.write(addr, b"\x2c\x06")
        b = do_read(bus, addr, 6)
        if b is None or not any(b[:5]):
            return False
        temp = ((b[0] * 256 + b[1]) * 175) / 6553.5 - 450
        hum = ((b[3] * 256 + b[4]) * 100) / 6553.5
        return True, int(hum), int(temp)

    boot.firmware_module("i2c", {
        "exist": exist, "setup": setup, "createSoft": create_soft, "close": close,
        "send": send, "recv": recv, "writeReg": write_reg, "readReg": read_reg,
        "transfer": transfer, "xfer": xfer, "readDHT12": read_dht12, "readSHT30": read_sht30,
    }, CONSTANTS)
