"""uart: the serial ports a script opens, with the host's USB-serial adapter on one of them.

Tests talk to a board through the same cable that carries its log, so the emulator needs the
far end of that cable: :func:`host_write` is what ``dut.write`` calls, and whatever the script
writes to the console UART comes back in the device log as plain lines (as it would arrive
on the host's port, interleaved with the ``luat:`` lines). Writes to other UARTs are kept per
port in :attr:`UartBus.tx` for tests to inspect.

Which Air8101 UART the board's USB-serial chip is wired to, and whether a script may open it
while the firmware logs there, is UNCONFIRMED: the console UART defaults to 1 and is a
per-device setting (``UartBus.console``). The constant values below are UNCONFIRMED too;
scripts use them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from luatos_common.logline import OTHER, LogRecord

if TYPE_CHECKING:
    from ..device import Device
    from ..vm import Boot

CONSOLE_UART = 1
UART_IDS = frozenset({0, 1, 2})
DEFAULT_RX_BUFFER = 1024
CONSTANTS = {"None": 0, "Even": 1, "Odd": 2, "LSB": 0, "MSB": 1, "VUART_0": 32}


@dataclass
class _Port:
    baud: int
    buffer_size: int
    rx: bytearray = field(default_factory=bytearray)


@dataclass
class UartBus:
    """Per-device UART state: ``device.extensions["uart"]``. Ports close with each boot."""

    console: int = CONSOLE_UART
    ports: dict[int, _Port] = field(default_factory=dict)
    # uart.on callbacks (Lua functions) per id and event; may be set before uart.setup
    callbacks: dict[int, dict[str, Any]] = field(default_factory=dict)
    tx: dict[int, bytearray] = field(default_factory=dict)  # everything written, per UART
    dropped: int = 0  # host bytes that arrived while the console UART was closed
    boot: Boot | None = None
    _line: bytearray = field(default_factory=bytearray)

    def attach(self, boot: Boot) -> None:
        self.boot = boot
        self.ports = {}
        self.callbacks = {}
        boot.closers.append(lambda: self.detach(boot))

    def detach(self, boot: Boot) -> None:
        if self.boot is boot:
            self.flush_console(boot.device, boot.now)
            self.boot = None
            self.ports = {}
            self.callbacks = {}

    def console_out(self, device: Device, data: bytes, ms: int) -> None:
        """Bytes the script wrote to the console UART become log lines, one per ``\\n``."""
        self._line += data
        while b"\n" in self._line:
            raw, _, rest = bytes(self._line).partition(b"\n")
            self._line = bytearray(rest)
            _emit_line(device, raw, ms)

    def flush_console(self, device: Device, ms: int) -> None:
        if self._line:
            raw, self._line = bytes(self._line), bytearray()
            _emit_line(device, raw, ms)


def _emit_line(device: Device, raw: bytes, ms: int) -> None:
    text = raw.decode("utf-8", "replace").rstrip("\r")
    # A console line is neither Lua nor C output: it reaches the log as it is.
    device.emit_raw(LogRecord("", "", text, text, OTHER, ms))


def bus_of(device: Device) -> UartBus:
    bus = device.extensions.get("uart")
    if not isinstance(bus, UartBus):
        bus = UartBus()
        device.extensions["uart"] = bus
    return bus


def host_write(device: Device, data: bytes, uart_id: int | None = None) -> None:
    """The host sends ``data`` down the cable: it reaches the script at the device's next step.

    If the script has not opened that UART (or the device is between boots) the bytes are
    lost, as on a board, and an emulator diagnostic says so.
    """
    bus = bus_of(device)

    def deliver() -> None:
        uid = bus.console if uart_id is None else uart_id
        boot = bus.boot
        port = bus.ports.get(uid) if boot is not None else None
        if boot is None or port is None:
            bus.dropped += len(data)
            device.emit_sim(f"uart{uid}: {len(data)} byte(s) from the host dropped: the script "
                            f"has not called uart.setup({uid}, ...)")
            return
        room = max(0, port.buffer_size - len(port.rx))
        if room < len(data):
            device.emit_sim(f"uart{uid}: receive buffer full ({port.buffer_size} bytes); "
                            f"{len(data) - room} byte(s) lost")
        port.rx += data[:room]
        device.trace_event("uart_rx", id=uid, bytes=len(data))
        cb = bus.callbacks.get(uid, {}).get("receive")
        if cb is not None:
            boot.post(0, cb, uid, len(port.rx))

    device.schedule(0, deliver, "uart rx from host")


def install(boot: Boot) -> None:
    device = boot.device
    bus = bus_of(device)
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
        bus.ports[i] = _Port(int(baud) if isinstance(baud, int | float) else 115200, size)
        return 0

    def write(uid: Any, data: Any = None, *_: Any) -> int:
        i = uid_of(uid)
        port = bus.ports.get(i)
        if data is None:
            return 0
        if isinstance(data, int | float):
            data = str(data).encode()
        if not isinstance(data, bytes):
            raise TypeError(f"bad argument #2 to 'write' (string expected, got "
                            f"{boot.lua_type(data).decode()})")
        if port is None:
            return 0
        bus.tx.setdefault(i, bytearray()).extend(data)
        if i == bus.console:
            bus.console_out(device, data, boot.now)
        sent = bus.callbacks.get(i, {}).get("sent")
        if sent is not None:
            boot.post(0, sent, i)
        return len(data)

    def read(uid: Any, length: Any = None, *_: Any) -> bytes:
        port = bus.ports.get(uid_of(uid))
        if port is None:
            return b""
        n = len(port.rx) if not isinstance(length, int | float) else max(0, int(length))
        out = bytes(port.rx[:n])
        del port.rx[:n]
        return out

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
            bus.flush_console(device, boot.now)
        bus.ports.pop(i, None)

    def exist(uid: Any, *_: Any) -> bool:
        i = uid_of(uid)
        return i in UART_IDS or i == CONSTANTS["VUART_0"]

    functions: dict[str, Callable[..., Any]] = {
        "setup": setup, "write": write, "read": read, "rxSize": rx_size,
        "rxClear": rx_clear, "on": on, "close": close, "exist": exist,
    }
    boot.firmware_module("uart", functions, CONSTANTS)
