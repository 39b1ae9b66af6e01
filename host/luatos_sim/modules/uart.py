"""uart: the Lua face of the UART part (platform/uart.py, ``dev.uart``).

Writes to the console UART come back in the device log as plain lines; the host's bytes
(``dut.write``) arrive through the part. The constant values below are UNCONFIRMED; scripts
use them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..cfunc import opt_integer
from ..platform.uart import Port
from .zbuff import ZBuff

if TYPE_CHECKING:
    from ..vm import Boot

UART_IDS = frozenset({0, 1, 2})
DEFAULT_RX_BUFFER = 1024
CONSTANTS = {"None": 0, "Even": 1, "Odd": 2, "LSB": 0, "MSB": 1, "VUART_0": 32}


def install(boot: Boot) -> None:
    bus = boot.platform.uart
    bus.attach(boot)

    def uid_of(v: Any) -> int:
        try:
            return int(v)
        except (TypeError, ValueError):
            return -1

    def setup(uid: Any = None, baud: Any = 115200, _databits: Any = 8, _stopbits: Any = 1,
              _parity: Any = 0, _order: Any = 0, buff_size: Any = DEFAULT_RX_BUFFER,
              *_: Any) -> int:
        i = uid_of(uid)
        if i not in UART_IDS and i != CONSTANTS["VUART_0"]:
            boot.log_c("E", "uart", f"uart id {uid!r} does not exist")
            return -1
        size = int(buff_size) if isinstance(buff_size, int | float) and buff_size > 0 \
            else DEFAULT_RX_BUFFER
        bus.ports[i] = Port(int(baud) if isinstance(baud, int | float) else 115200, size)
        return 0

    def write(uid: Any, data: Any = None, *_: Any) -> int:
        i = uid_of(uid)
        if data is None:
            return 0
        if isinstance(data, int | float):
            data = str(data).encode()
        if not isinstance(data, bytes):
            raise TypeError(f"bad argument #2 to 'write' (string expected, got "
                            f"{boot.lua_type(data).decode()})")
        if not bus.transmit(i, data, boot.now):
            return 0
        sent = bus.callbacks.get(i, {}).get("sent")
        if sent is not None:
            boot.post(0, sent, i)
        return len(data)

    def read(uid: Any, length: Any = None, *_: Any) -> bytes:
        return bus.read(uid_of(uid), None if length is None else opt_integer(length, 0, 2, "read"))

    def rx(uid: Any, zb: Any = None, *_: Any) -> int:
        """uart.rx(id, zbuff): everything received, appended at the zbuff's pointer."""
        port = bus.ports.get(uid_of(uid))
        if port is None or not isinstance(zb, ZBuff):
            return 0
        data = bytes(port.rx)
        port.rx.clear()
        zb.append(data)
        return len(data)

    def tx(uid: Any, zb: Any = None, start: Any = None, length: Any = None, *_: Any) -> Any:
        """uart.tx(id, zbuff[, start, len]): the zbuff's bytes (default: its used part)."""
        if not isinstance(zb, ZBuff):
            return False
        data = zb.query()
        if isinstance(start, int):
            data = bytes(zb.buf[start:start + (int(length) if isinstance(length, int)
                                               else len(zb.buf))])
        return write(uid, data) > 0 or not data

    def rx_size(uid: Any, *_: Any) -> int:
        port = bus.ports.get(uid_of(uid))
        return len(port.rx) if port is not None else 0

    def rx_clear(uid: Any, *_: Any) -> None:
        port = bus.ports.get(uid_of(uid))
        if port is not None:
            port.rx.clear()

    def on(uid: Any, event: Any = None, fn: Any = None, *_: Any) -> None:
        name = event.decode("utf-8", "replace") if isinstance(event, bytes) else str(event)
        if name in ("receive", "sent"):
            bus.callbacks.setdefault(uid_of(uid), {})[name] = fn

    def close(uid: Any, *_: Any) -> None:
        i = uid_of(uid)
        if i == bus.console:
            bus.flush_console(boot.now)
        bus.ports.pop(i, None)

    def exist(uid: Any, *_: Any) -> bool:
        i = uid_of(uid)
        return i in UART_IDS or i == CONSTANTS["VUART_0"]

    functions: dict[str, Callable[..., Any]] = {
        "setup": setup, "write": write, "read": read, "rxSize": rx_size, "rx": rx, "tx": tx,
        "rxClear": rx_clear, "on": on, "close": close, "exist": exist,
    }
    boot.firmware_module("uart", functions, CONSTANTS)
