"""The UART part: the serial ports a script opens, with the host's USB-serial adapter on one.

Tests talk to a board through the same cable that carries its log, so the emulator needs the
far end of that cable: :meth:`UartBus.host_write` is what ``dut.write`` calls, and whatever the
script writes to the console UART comes back in the device log as plain lines (as it would
arrive on the host's port, interleaved with the ``luat:`` lines). Writes to other UARTs are
kept per port in :attr:`UartBus.tx` for tests to inspect.

Which Air8101 UART the board's USB-serial chip is wired to, and whether a script may open it
while the firmware logs there, is UNCONFIRMED: the console UART defaults to 1 and is a
per-device setting (``dev.uart.console``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from luatos_common.logline import OTHER, LogRecord

if TYPE_CHECKING:
    from ..device import Device
    from ..vm import Boot

CONSOLE_UART = 1


@dataclass
class Port:
    baud: int
    buffer_size: int
    rx: bytearray = field(default_factory=bytearray)


@dataclass
class UartBus:
    """``dev.uart``: the ports of the running boot and the host's end of the cable. Ports
    close with each boot."""

    device: Device
    console: int = CONSOLE_UART
    ports: dict[int, Port] = field(default_factory=dict)
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
            self.flush_console(boot.now)
            self.boot = None
            self.ports = {}
            self.callbacks = {}

    def console_out(self, data: bytes, ms: int) -> None:
        """Bytes the script wrote to the console UART become log lines, one per ``\\n``."""
        self._line += data
        while b"\n" in self._line:
            raw, _, rest = bytes(self._line).partition(b"\n")
            self._line = bytearray(rest)
            self._emit_line(raw, ms)

    def flush_console(self, ms: int) -> None:
        if self._line:
            raw, self._line = bytes(self._line), bytearray()
            self._emit_line(raw, ms)

    def _emit_line(self, raw: bytes, ms: int) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        # A console line is neither Lua nor C output: it reaches the log as it is.
        self.device.emit_raw(LogRecord("", "", text, text, OTHER, ms))

    def host_write(self, data: bytes, uart_id: int | None = None) -> None:
        """The host sends ``data`` down the cable: it reaches the script at the device's next
        step. If the script has not opened that UART (or the device is between boots) the
        bytes are lost, as on a board, and an emulator diagnostic says so."""
        device = self.device

        def deliver() -> None:
            uid = self.console if uart_id is None else uart_id
            boot = self.boot
            port = self.ports.get(uid) if boot is not None else None
            if boot is None or port is None:
                self.dropped += len(data)
                device.emit_sim(f"uart{uid}: {len(data)} byte(s) from the host dropped: the "
                                f"script has not called uart.setup({uid}, ...)")
                return
            room = max(0, port.buffer_size - len(port.rx))
            if room < len(data):
                device.emit_sim(f"uart{uid}: receive buffer full ({port.buffer_size} bytes); "
                                f"{len(data) - room} byte(s) lost")
            port.rx += data[:room]
            device.trace_event("uart_rx", id=uid, bytes=len(data))
            cb = self.callbacks.get(uid, {}).get("receive")
            if cb is not None:
                boot.post(0, cb, uid, len(port.rx))

        device.schedule(0, deliver, "uart rx from host")
