"""The device under test, the same to a test whether it is the emulator or a board on a cable.

One stream of log records per device, one cursor into it: :meth:`Dut.expect` searches the
records after the previous match (the habit of pytest-embedded), so a test reads like the
boot it describes. On the emulator a timeout is *virtual* time and the device runs until the
pattern appears; on a board it is wall time spent reading the port.

Timeouts and durations are strings (``"500ms"``, ``"10s"``, ``"4h"``) or numbers of seconds.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luatos_common.logline import SIM, LogRecord
from luatos_sim.duration import Duration, format_ms, parse_duration

if TYPE_CHECKING:
    from luatos_sim.device import Device
    from luatos_sim.profiles import ModelProfile

HOST = "host"  # records the DUT itself adds (port notices); never printed by a device
_NOT_DEVICE = (SIM, HOST)
TAIL_LINES = 12


class DutError(Exception):
    """The DUT cannot do what was asked (wrong backend, port gone, bad argument)."""


class ExpectTimeout(AssertionError):
    """``expect`` did not see its pattern in time; the message carries the last log lines."""


def timeout_ms(value: Duration) -> int:
    """``"10s"`` -> 10000. A timeout is a duration like any other (duration.py): a bare number
    is refused rather than guessed (pytest-embedded reads it as seconds, the emulator's own
    API used to read it as milliseconds)."""
    return parse_duration(value)


def _compile(pattern: str | bytes | re.Pattern[str]) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    if isinstance(pattern, bytes):
        pattern = pattern.decode("utf-8")
    return re.compile(pattern)


class Dut:
    """What every backend offers. Subclasses feed :attr:`log` and implement the I/O."""

    backend = "?"

    def __init__(self) -> None:
        self.log: list[LogRecord] = []
        self.last_record: LogRecord | None = None
        self._cursor = 0

    # -- reading ----------------------------------------------------------------------------------

    def _search(self, rx: re.Pattern[str]) -> re.Match[str] | None:
        """Find ``rx`` in the records after the cursor; a match moves the cursor past it."""
        log = self.log
        for i in range(self._cursor, len(log)):
            rec = log[i]
            if rec.source in _NOT_DEVICE:
                continue
            m = rx.search(rec.line)
            if m is not None:
                self._cursor = i + 1
                self.last_record = rec
                return m
        return None

    def expect(self, pattern: str | bytes | re.Pattern[str],
               timeout: Duration = "10s") -> re.Match[str]:
        """Wait for a log line matching ``pattern`` (a regex searched in the device line, e.g.
        ``I/user.main ...`` or ``pm:boot up by reboot``) and return the match."""
        __tracebackhide__ = True
        rx = _compile(pattern)
        ms = timeout_ms(timeout)
        m = self._search(rx)
        if m is None:
            m = self._wait_for(rx, ms)
        if m is None:
            raise ExpectTimeout(f"{self.backend}: {rx.pattern!r} did not appear within "
                                f"{format_ms(ms)} ({self._clock_name()}); last lines:\n"
                                + self.log_text(last=TAIL_LINES))
        return m

    def expect_exact(self, text: str, timeout: Duration = "10s") -> re.Match[str]:
        """``expect`` for a literal piece of text."""
        __tracebackhide__ = True
        return self.expect(re.escape(text), timeout)

    def lines(self) -> list[str]:
        """Every line the device printed, as printed (no UART prefixes, no host notices)."""
        return [r.line for r in self.log if r.source not in _NOT_DEVICE]

    def format_record(self, rec: LogRecord) -> str:
        return rec.uart()

    def log_text(self, last: int | None = None) -> str:
        recs = self.log if last is None else self.log[-last:]
        return "\n".join(self.format_record(r) for r in recs)

    def save_log(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.log_text() + "\n", encoding="utf-8")
        return p

    # -- backend parts ----------------------------------------------------------------------------

    def _wait_for(self, rx: re.Pattern[str], ms: int) -> re.Match[str] | None:
        raise NotImplementedError

    def _clock_name(self) -> str:
        return "wall time"

    def write(self, data: bytes | str) -> None:
        """Send bytes to the device's console UART (the port the host is connected to)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Power-cycle (emulator) or pulse RESET (board). Unread output is discarded."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Dut:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _host_note(text: str, device_ms: int | None = None) -> LogRecord:
    """A line in the DUT's log that the host wrote (``host> ...``), for failure reports."""
    return LogRecord("I", "host", text, text, HOST, device_ms, time.time())


def _shown(data: bytes) -> str:
    return "host> " + data.decode("utf-8", "backslashreplace").rstrip("\r\n") \
        .replace("\r", "\\r").replace("\n", "\\n")


def _data(data: bytes | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"dut.write: expected bytes or str, got {type(data).__name__}")


# -- the emulator ---------------------------------------------------------------------------------


def profile_with_uart(model: str) -> ModelProfile:
    """The model's profile; ``dut.write`` needs the ``uart`` module, which every profile lists.
    Raises ValueError for an unknown model."""
    from luatos_sim.profiles import get_profile

    profile = get_profile(model)
    if "uart" not in profile.modules:
        raise ValueError(f"model {model!r} has no uart module; dut.write needs one")
    return profile


class SimDut(Dut):
    """A :class:`luatos_sim.Device` behind the DUT API. Timeouts are virtual time."""

    backend = "sim"

    def __init__(self, device: Device, *, lib_dirs: Iterable[str | Path] = (),
                 console_uart: int | None = None, owns_device: bool = False) -> None:
        super().__init__()
        self.device = device
        self.lib_dirs = tuple(lib_dirs)
        self.console_uart = console_uart
        self.owns_device = owns_device
        self.resets = 0
        self.log.extend(device.log)
        self._attach(device)

    @classmethod
    def for_project(cls, project: str | Path, *, model: str = "Air8101",
                    lib_dirs: Iterable[str | Path] = (), state_dir: str | Path | None = None,
                    console_uart: int | None = None, **device_kwargs: Any) -> SimDut:
        """A new emulated device running ``project``; closing the DUT closes the device."""
        from luatos_sim.device import Device

        libs = tuple(lib_dirs)
        device = Device(project, model=profile_with_uart(model), lib_dirs=libs,
                        state_dir=state_dir, **device_kwargs)
        return cls(device, lib_dirs=libs, console_uart=console_uart, owns_device=True)

    def _attach(self, device: Device) -> None:
        device.add_listener(self.log.append)
        if self.console_uart is not None:
            device.uart.console = self.console_uart

    def _clock_name(self) -> str:
        return f"virtual time, device clock now {format_ms(self.device.current_ms())}"

    def format_record(self, rec: LogRecord) -> str:
        boot = f"#{rec.boot} " if rec.boot else ""
        return f"{format_ms(rec.device_ms or 0):>10} {boot}{rec.uart()}"

    def _wait_for(self, rx: re.Pattern[str], ms: int) -> re.Match[str] | None:
        from luatos_sim.device import RebootLoopError, UntilTimeout

        try:
            self.device.run_until(lambda rec: rx.search(rec.line) is not None,
                                  within=f"{ms}ms")
        except UntilTimeout:
            return None
        except RebootLoopError as e:
            raise ExpectTimeout(f"sim: waiting for {rx.pattern!r}: {e}; last lines:\n"
                                + self.log_text(last=TAIL_LINES)) from None
        return self._search(rx)

    def write(self, data: bytes | str) -> None:
        payload = _data(data)
        self.log.append(_host_note(_shown(payload), self.device.current_ms()))
        self.device.uart.host_write(payload)

    def run_for(self, duration: Duration, *, allow_wall_clock: bool = False) -> None:
        """Advance virtual time (``"4h"`` costs milliseconds)."""
        self.device.run_for(duration)

    def reset(self) -> None:
        """Power-cycle: the flash (script image, fs, fskv) survives, everything else restarts."""
        self.resets += 1
        self._cursor = len(self.log)
        self.device.power_cycle()

    def close(self) -> None:
        self.device.remove_listener(self.log.append)
        if self.owns_device:
            self.device.close()


# -- a board on a serial port -----------------------------------------------------------------------


class SerialDut(Dut):
    """A board on a serial port (a device path or any pyserial URL: ``socket://``, ``loop://``).

    A reader thread turns the byte stream into records (``luatos_tools.serial_log``); the port
    is reopened if it vanishes (USB re-enumeration). Opening leaves DTR/RTS released, because
    on the Air8101 board DTR drives RESET and RTS drives BOOT.
    """

    backend = "serial"
    RESET_PULSE_S = 0.1

    def __init__(self, port: str, baud: int = 921_600, *, reset_on_start: bool = False,
                 raw_log: str | Path | None = None, read_timeout: float = 0.05,
                 open_retries: int = 3, reopen_retries: int = 30) -> None:
        super().__init__()
        from luatos_tools.serial_log import LogDecoder, PortFollower, PortGone

        self.port = port
        self.baud = baud
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._error: str | None = None
        self._raw = open(raw_log, "a", encoding="utf-8") if raw_log else None  # noqa: SIM115
        self._decoder = LogDecoder(on_line=self._raw_line)
        self._port_gone = PortGone
        self._follower = PortFollower(port, baud, retries=open_retries, delay=0.1,
                                      max_delay=1.0, read_timeout=read_timeout,
                                      notice=self._notice, sleep=self._sleep)
        try:
            self._follower.open()
        except PortGone as e:
            raise DutError(f"cannot open serial port {port}: {e}") from None
        # Once open, a vanishing port is a reboot re-enumerating USB: wait longer for it.
        self._follower.retries = reopen_retries
        self._thread = threading.Thread(target=self._reader, name=f"luatos-dut-{port}",
                                        daemon=True)
        self._thread.start()
        if reset_on_start:
            self.reset()

    def _raw_line(self, line: str) -> None:
        if self._raw is not None:
            self._raw.write(line + "\n")

    def _sleep(self, seconds: float) -> None:
        """Back-off between reopen attempts that a close() interrupts at once."""
        self._stop.wait(seconds)

    def _notice(self, text: str) -> None:
        self._add([LogRecord("W", "luatos-dut", text, text, HOST, None, time.time())])

    def _add(self, recs: list[LogRecord]) -> None:
        if recs:
            with self._cond:
                self.log.extend(recs)
                self._cond.notify_all()

    def _reader(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._follower.read()
            except self._port_gone as e:
                self._error = f"serial port {self.port} is gone: {e}"
                break
            except Exception as e:  # noqa: BLE001 - report, never die silently
                self._error = f"reading {self.port} failed: {type(e).__name__}: {e}"
                break
            now = time.time()
            with self._cond:  # reset() swaps the decoder's state under the same lock
                recs = self._decoder.feed(data, now) if data else self._decoder.idle(now)
                if recs:
                    self.log.extend(recs)
                    self._cond.notify_all()
        with self._cond:
            self.log.extend(self._decoder.flush(time.time()))
            self._cond.notify_all()

    def format_record(self, rec: LogRecord) -> str:
        if rec.host_time is None:
            return rec.uart()
        lt = time.localtime(rec.host_time)
        stamp = time.strftime("%H:%M:%S", lt) + f".{int(rec.host_time % 1 * 1000):03d}"
        return f"{stamp} {rec.uart()}"

    def _wait_for(self, rx: re.Pattern[str], ms: int) -> re.Match[str] | None:
        __tracebackhide__ = True
        deadline = time.monotonic() + ms / 1000
        with self._cond:
            while True:
                m = self._search(rx)
                if m is not None:
                    return m
                if self._error is not None or not self._thread.is_alive():
                    raise DutError(f"{self._error or 'the port reader stopped'} while waiting "
                                   f"for {rx.pattern!r}; last lines:\n"
                                   + self.log_text(last=TAIL_LINES))
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))

    def _serial(self) -> Any:
        ser = self._follower.ser
        if ser is None:
            raise DutError(f"serial port {self.port} is not open (reconnecting?)")
        return ser

    def write(self, data: bytes | str) -> None:
        payload = _data(data)
        self._add([_host_note(_shown(payload))])
        try:
            ser = self._serial()
            ser.write(payload)
            ser.flush()
        except DutError:
            raise
        except Exception as e:  # noqa: BLE001 - pyserial raises SerialException or OSError
            raise DutError(f"writing {len(payload)} byte(s) to {self.port} failed: {e}") from e

    def reset(self) -> None:
        """Pulse RESET through DTR (asserted = RESET low), keeping BOOT (RTS) released."""
        ser = self._serial()
        try:
            ser.rts = False
            ser.dtr = True
            time.sleep(self.RESET_PULSE_S)
            with self._cond:
                self._cursor = len(self.log)
                self._decoder.reset()
            ser.dtr = False
        except Exception as e:  # noqa: BLE001
            raise DutError(f"cannot pulse DTR/RTS on {self.port} to reset the board: {e}. "
                           "Reset it by hand, or run with --luatos-no-reset") from e

    def run_for(self, duration: Duration, *, allow_wall_clock: bool = False) -> None:
        """On a board time is real: sleeping needs ``allow_wall_clock=True`` (the log keeps
        being read meanwhile)."""
        ms = timeout_ms(duration)
        if not allow_wall_clock:
            raise DutError(f"run_for({duration!r}) on a board would wait {format_ms(ms)} of wall "
                           "time; pass allow_wall_clock=True if that is intended, or mark the "
                           "test sim-only")
        self._stop.wait(ms / 1000)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._follower.close()
        if self._raw is not None:
            self._raw.close()
            self._raw = None
