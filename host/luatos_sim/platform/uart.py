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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

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


class UartPeer(Protocol):
    """Something wired to a UART that runs while a boot has the ports (a GNSS receiver)."""

    def boot_started(self) -> None: ...

    def boot_ended(self) -> None: ...


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
    # A firmware library that reads a UART itself (libgnss.bind): called instead of the
    # script's "receive" callback when bytes arrive. Per boot.
    app_receivers: dict[int, Callable[[], None]] = field(default_factory=dict)
    peers: list[UartPeer] = field(default_factory=list)  # parts wired to a UART
    dropped: int = 0  # host bytes that arrived while the console UART was closed
    boot: Boot | None = None
    _line: bytearray = field(default_factory=bytearray)

    def attach(self, boot: Boot) -> None:
        self.boot = boot
        self.ports = {}
        self.callbacks = {}
        self.app_receivers = {}
        boot.closers.append(lambda: self.detach(boot))
        for peer in self.peers:
            peer.boot_started()

    def add_peer(self, peer: UartPeer) -> None:
        """Wire ``peer`` to the bus; it starts at once when a boot is running."""
        self.peers.append(peer)
        if self.boot is not None:
            peer.boot_started()

    def set_app_receiver(self, uid: int, fn: Callable[[], None]) -> None:
        """A firmware library takes over UART ``uid``'s input for this boot: ``fn`` runs
        (posted) when bytes arrive, instead of the script's "receive" callback."""
        self.app_receivers[uid] = fn

    def detach(self, boot: Boot) -> None:
        if self.boot is boot:
            self.flush_console(boot.now)
            self.boot = None
            self.ports = {}
            self.callbacks = {}
            self.app_receivers = {}
            for peer in self.peers:
                peer.boot_ended()

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
        def deliver() -> None:
            self.receive(self.console if uart_id is None else uart_id, data)

        self.device.schedule(0, deliver, "uart rx from host")

    def port_baud(self, uart_id: int) -> int | None:
        """The baud rate the running boot opened ``uart_id`` at; None when it is closed."""
        port = self.ports.get(uart_id) if self.boot is not None else None
        return port.baud if port is not None else None

    def receive(self, uid: int, data: bytes, *, quiet: bool = False) -> bool:
        """Bytes arrive on the RX line of ``uid`` now. Lost (False) when the script has not
        opened the port or the device is between boots; ``quiet`` skips the diagnostic (a
        receiver that talks every second would repeat it)."""
        device = self.device
        boot = self.boot
        port = self.ports.get(uid) if boot is not None else None
        if boot is None or port is None:
            self.dropped += len(data)
            if not quiet:
                device.emit_sim(f"uart{uid}: {len(data)} byte(s) from the host dropped: the "
                                f"script has not called uart.setup({uid}, ...)")
            return False
        room = max(0, port.buffer_size - len(port.rx))
        if room < len(data):
            device.emit_sim(f"uart{uid}: receive buffer full ({port.buffer_size} bytes); "
                            f"{len(data) - room} byte(s) lost")
        port.rx += data[:room]
        device.trace_event("uart_rx", id=uid, bytes=len(data))
        app = self.app_receivers.get(uid)
        if app is not None:
            boot.post(0, app)
        else:
            cb = self.callbacks.get(uid, {}).get("receive")
            if cb is not None:
                boot.post(0, cb, uid, len(port.rx))
        return True

    def read(self, uid: int, limit: int | None = None) -> bytes:
        """Take up to ``limit`` received bytes (all when None) off the port's buffer."""
        port = self.ports.get(uid)
        if port is None:
            return b""
        n = len(port.rx) if limit is None else max(0, limit)
        out = bytes(port.rx[:n])
        del port.rx[:n]
        return out

    def transmit(self, uid: int, data: bytes, ms: int) -> bool:
        """The boot sends ``data`` out of ``uid`` (False: the port is not open)."""
        if uid not in self.ports:
            return False
        self.tx.setdefault(uid, bytearray()).extend(data)
        if uid == self.console:
            self.console_out(data, ms)
        return True
