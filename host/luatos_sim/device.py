"""The simulated device: its lifecycle, the run loop, and what outlives a boot.

A Device outlives its boots. It owns what survives a reboot on the module (the flashed script
image, and through its platform parts the filesystem, fskv, a staged FOTA package), the one
clock (``luat:`` milliseconds, :mod:`luatos_sim.clock`), and what a test wants to look at
afterwards (the log, the trace, the list of boots and why each ended). Each boot is a fresh VM
(:class:`luatos_sim.vm.Boot`). docs/architecture.md has the lifecycle.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from luatos_common.logline import SIM, LogRecord, c_record, lua_record

from .clock import ScheduledEvent, Timeline
from .duration import Duration, format_ms, parse_duration
from .fs import DeviceFS
from .fskv_store import FskvStore
from .lifecycle import (
    WAKE_BY_PAD,
    BootOutcome,
    BootReason,
    Crashed,
    Halted,
    Paused,
    ResetDetail,
    StepResult,
    WakeCause,
)
from .platform import Platform
from .platform.adc import AdcBench
from .platform.ble import BleRadio
from .platform.camera import CameraBench
from .platform.errdump import ErrDumpLogs
from .platform.fota_area import FotaArea
from .platform.gnss import GnssBench
from .platform.gpio import GpioBank
from .platform.i2c import I2cBuses
from .platform.network import Network
from .platform.power import PowerControl
from .platform.pwm import PwmBench
from .platform.screen import Screen, TouchPanel
from .platform.sms import SmsNetwork
from .platform.spi import SpiBuses
from .platform.uart import UartBus
from .profiles import ModelProfile, get_profile
from .scripts import ScriptError, load_lib_dir, load_project_files
from .upgrade_checks import UpgradeChecks
from .vm import Boot

# The reset detail each kind of boot reports (pm.lastReson()'s third value, the banner).
_DETAIL_OF = {BootReason.POWER_ON: ResetDetail.POWER_ON, BootReason.REBOOT: ResetDetail.SOFTWARE,
              BootReason.WATCHDOG: ResetDetail.WATCHDOG, BootReason.WAKE: ResetDetail.POWER_ON}


class RebootLoopError(AssertionError):
    """The device keeps failing to boot; raised by run_until so a test fails fast."""


class UntilTimeout(AssertionError):
    """run_until's pattern did not appear within the allowed virtual time."""


@dataclass
class DeviceOptions:
    """Knobs for points docs/behaviour.md leaves UNCONFIRMED, and for the emulator itself."""

    exit_reboot_delay_ms: int = 15_000  # LUAT_EXIT_REBOOT_DELAY
    lua_heap: int | None = None  # None: the profile's heap; 0: no cap
    # After a task dies of "not enough memory" its stack (and what it allocated) stays alive
    # for the traceback; the heap lends this much above the cap so the task error can still be
    # reported (docs/behaviour.md §2.5), until usage is back under the cap (0: no loan).
    oom_report_reserve: int = 65_536
    io_grace_ms: int = 2_000  # wall time to wait for real I/O before virtual time jumps
    # Lua without a yield before the guard resets the device like a watchdog (0: never).
    busy_loop_instructions: int = 100_000_000
    # The virtual cost of Lua: instructions per virtual ms (None: the model's nominal rate,
    # ModelProfile.lua_instructions_per_ms; 0: Lua takes no virtual time).
    lua_instructions_per_ms: int | None = None
    log_limit: int = 200_000  # records kept in memory
    reboot_loop_boots: int = 3  # failing boots in a row that make a reboot loop
    epoch_at_power_on: int | None = None  # os.time() before SNTP; None: the host clock
    # With a server_ca, http.request verifies the server's chain against it; whether the
    # device also matches the certificate's name to the host is UNCONFIRMED (default: no).
    tls_check_hostname: bool = False


@dataclass
class BootInfo:
    number: int
    reason: BootReason
    started_ms: int
    ended_ms: int | None = None
    outcome: BootOutcome | None = None
    error: str | None = None


@dataclass
class TraceEvent:
    ms: int
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)
    boot: int = 0


class Device:
    """An emulated LuatOS module running a project.

    >>> dev = Device("device/")            # doctest: +SKIP
    >>> dev.run_until("fota_result 0", within="10m")   # doctest: +SKIP
    """

    def __init__(self, project: str | os.PathLike[str] | None = None, *,
                 files: Mapping[str, bytes] | None = None,
                 model: str | ModelProfile = "Air8101",
                 lib_dirs: Iterable[str | os.PathLike[str]] = (),
                 state_dir: str | os.PathLike[str] | None = None,
                 options: DeviceOptions | None = None,
                 **profile_overrides: Any) -> None:
        profile = get_profile(model) if isinstance(model, str) else model
        self.profile = profile.with_overrides(**profile_overrides) if profile_overrides \
            else profile
        self.options = options or DeviceOptions()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="luatos-sim-")
            state_dir = self._tmp.name
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.image_dir = self.state_dir / "luadb"
        self.fs_root = self.state_dir / "fs"
        env_libs = [p for p in os.environ.get("LUATOS_SIM_LIB_DIRS", "").split(os.pathsep) if p]
        self._lib_layers = [load_lib_dir(d) for d in [*lib_dirs, *env_libs]]
        load_notes: list[str] = []  # e.g. byte-identical files under one name
        if project is not None or files is not None:
            self.flash(load_project_files(project, load_notes) if project is not None
                       else dict(files or {}))
        elif not self.image_dir.is_dir():
            raise ScriptError("no project: give a project directory, files, or a state_dir "
                              "that already holds a flashed image")
        self._image_cache: dict[str, bytes] | None = None

        self.epoch_at_power_on = self.options.epoch_at_power_on if \
            self.options.epoch_at_power_on is not None else int(time.time())
        self.clock = Timeline()  # virtual time and the host events scheduled on it
        self.log: deque[LogRecord] = deque(maxlen=self.options.log_limit)
        self.trace: list[TraceEvent] = []
        self.boots: list[BootInfo] = []
        self.boot: Boot | None = None
        self.last_reset = WakeCause()  # what pm.lastReson() reports in the running boot
        self.reboot_loop: str | None = None
        self.wall_in_vm = 0.0
        self._listeners: list[Callable[[LogRecord], None]] = []
        self._handed: list[ScheduledEvent] = []  # host events queued in the running boot
        self._power_bound: list[ScheduledEvent] = []  # events a power cut drops
        self._stop = False
        self._stepping = False  # inside boot.step(): lifecycle calls come from the boot
        self._failing_boots = 0
        self._last_error: str | None = None
        # Hooks for tools built on the emulator: before each boot's VM starts (after a staged
        # FOTA package is applied), and after each boot ends.
        self.before_boot: list[Callable[[Device, BootReason], None]] = []
        self.after_boot_ends: list[Callable[[Device, BootInfo], None]] = []
        # The device-level parts (docs/architecture.md): created here, and only here.
        self.platform = Platform.build(self)
        for note in load_notes:
            self.emit_sim(note, 0)
        self.power_on()

    # -- the platform's parts, for tests ------------------------------------------------------------

    @property
    def fs(self) -> DeviceFS:
        return self.platform.fs

    @property
    def fskv(self) -> FskvStore:
        return self.platform.fskv

    @property
    def power(self) -> PowerControl:
        """Deep sleep, dtimers, wakes (``dev.power.wake()``, ``psm_entry_fails``)."""
        return self.platform.power

    @property
    def gpio(self) -> GpioBank:
        """The world outside the pins (``dev.gpio.press(pin)``, ``level(pin)``)."""
        return self.platform.gpio

    @property
    def fota(self) -> FotaArea:
        """The FOTA partition (``staged_path``, ``cut_power_at``)."""
        return self.platform.fota

    @property
    def net(self) -> Network:
        """The simulated network: links, faults, address map."""
        return self.platform.net

    @property
    def uart(self) -> UartBus:
        """Serial ports and the host's end of the cable (``console``, ``tx``)."""
        return self.platform.uart

    @property
    def errdump(self) -> ErrDumpLogs:
        """errDump's logs in flash (``sys_log``, ``usr_log``)."""
        return self.platform.errdump

    @property
    def sms(self) -> SmsNetwork:
        """The cellular network's SMS side (``deliver``, ``sent``, ``remove_sim``)."""
        return self.platform.sms

    @property
    def spi(self) -> SpiBuses:
        """SPI buses and the chips on them (``dev.spi(1).attach(cs, chip)``)."""
        return self.platform.spi

    @property
    def i2c(self) -> I2cBuses:
        """I2C buses and the parts on them (``dev.i2c(0).attach(0x44, SHT30())``)."""
        return self.platform.i2c

    @property
    def adc(self) -> AdcBench:
        """Voltages on the ADC channels (``dev.adc.set(2, 1650)``)."""
        return self.platform.adc

    @property
    def pwm(self) -> PwmBench:
        """What each PWM channel drives (``state(ch)``, ``history``)."""
        return self.platform.pwm

    @property
    def lcd(self) -> Screen:
        """The LCD panel (``snapshot(path)``, ``pixel(x, y)``)."""
        return self.platform.lcd

    @property
    def oled(self) -> Screen:
        """The u8g2 (monochrome) display."""
        return self.platform.oled

    @property
    def touch(self) -> TouchPanel:
        """The touch controller and a finger on it (``attach()``, ``tap(x, y)``)."""
        return self.platform.touch

    @property
    def ble(self) -> BleRadio:
        """BLE peers around the device (``dev.ble.peer("phone")``)."""
        return self.platform.ble

    @property
    def camera(self) -> CameraBench:
        """What the camera sees (``attach(image)``)."""
        return self.platform.camera

    @property
    def gnss(self) -> GnssBench:
        """GNSS receivers on UARTs (``attach(uart=2).track([...])``)."""
        return self.platform.gnss

    @property
    def upgrade_checks(self) -> UpgradeChecks:
        """Findings about FOTA code that would fail in the field (``warnings``)."""
        return self.platform.upgrade_checks

    # -- state ------------------------------------------------------------------------------------

    def flash(self, files: Mapping[str, bytes]) -> None:
        """Replace the script image (what Luatools' script download does)."""
        tmp = self.state_dir / "luadb.new"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        old = self.state_dir / "luadb.old"
        if self.image_dir.exists():
            if old.exists():
                shutil.rmtree(old)
            self.image_dir.rename(old)
        tmp.rename(self.image_dir)
        if old.exists():
            shutil.rmtree(old)
        self._image_cache = None

    def image_files(self) -> dict[str, bytes]:
        if self._image_cache is None:
            self._image_cache = {p.name: p.read_bytes() for p in sorted(self.image_dir.iterdir())
                                 if p.is_file()}
        return self._image_cache

    def lib_layers(self) -> list[dict[str, bytes]]:
        return self._lib_layers

    def close(self) -> None:
        if self.boot is not None:
            self.boot.close()
            self.boot = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- log and trace ----------------------------------------------------------------------------

    def add_listener(self, fn: Callable[[LogRecord], None]) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[LogRecord], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def _record(self, rec: LogRecord) -> None:
        self.log.append(rec)
        for fn in self._listeners:
            fn(rec)

    @property
    def _boot_no(self) -> int:
        return self.boots[-1].number if self.boots else 0

    def emit_lua(self, line: str, ms: int, boot: Boot | None = None) -> None:
        self._record(lua_record(line, ms, boot=self._boot_no))
        if boot is not None and "attempt to call a nil value" in line:
            self._explain_missing(line, boot, ms)

    def emit_c(self, level: str, tag: str, text: str, ms: int | None = None) -> None:
        self._record(c_record(level, tag, text, self.clock.now if ms is None else ms,
                              boot=self._boot_no))

    def emit_sim(self, text: str, ms: int | None = None) -> None:
        boot = self.boot
        if ms is None and boot is not None and self.clock.off_boot_thread():
            # A note from an I/O thread (a refused connection) goes through the event loop:
            # stamped with the virtual time it is handled at, in order with the device's lines.
            boot.post_from_thread(self.emit_sim, text)
            return
        self._record(LogRecord("W", "luatos-sim", text, text, SIM,
                               self.clock.now if ms is None else ms, boot=self._boot_no))

    def emit_raw(self, record: LogRecord) -> None:
        """Add a record produced outside print/log (e.g. a script writing to the console UART)."""
        if record.boot is None:
            record.boot = self._boot_no
        self._record(record)

    def trace_event(self, kind: str, **detail: Any) -> None:
        ms = self.clock.now
        self.trace.append(TraceEvent(ms, kind, detail, self._boot_no))

    def _explain_missing(self, text: str, boot: Boot, ms: int) -> None:
        miss = boot.last_missing()
        m = re.search(r"attempt to call a nil value \((?:field|method) '([^']+)'\)", text)
        if miss and m and m[1] == miss[1]:
            self.emit_sim(f"{miss[0]}.{miss[1]} is not emulated by luatos-sim (model "
                          f"{self.profile.model}, core {self.profile.core}); the call failed "
                          "like a nil call on the device", ms)

    def lines(self, boot: int | None = None) -> list[str]:
        """The log as the device printed it (without UART prefixes)."""
        return [r.line for r in self.log if r.source != SIM and (boot is None or r.boot == boot)]

    # -- running -----------------------------------------------------------------------------------

    def run_for(self, duration: Duration) -> None:
        """Advance virtual time by ``duration``, running whatever the device does meanwhile."""
        self._run(self.current_ms() + parse_duration(duration))

    def run_until(self, pattern: str | re.Pattern[str] | Callable[[LogRecord], bool],
                  within: Duration = "10m", *, stop_on_reboot_loop: bool = True) -> LogRecord:
        """Run until a log record matches (regex searched in the device line), or fail.

        Raises :class:`UntilTimeout` when ``within`` virtual time passes first, and
        :class:`RebootLoopError` when the device falls into a reboot loop meanwhile.
        """
        if callable(pattern) and not isinstance(pattern, re.Pattern):
            match = pattern
        else:
            rx = re.compile(pattern) if isinstance(pattern, str) else pattern
            def match(rec: LogRecord) -> bool:
                return rx.search(rec.line) is not None
        found: list[LogRecord] = []
        loop_seen = [self.reboot_loop]

        def listener(rec: LogRecord) -> None:
            if not found and rec.source != SIM and match(rec):
                found.append(rec)
                self.request_stop()
            elif stop_on_reboot_loop and self.reboot_loop and self.reboot_loop != loop_seen[0]:
                self.request_stop()

        start = self.current_ms()
        self.add_listener(listener)
        try:
            self._run(start + parse_duration(within))
        finally:
            self.remove_listener(listener)
        if found:
            return found[0]
        if stop_on_reboot_loop and self.reboot_loop and self.reboot_loop != loop_seen[0]:
            raise RebootLoopError(self.reboot_loop)
        tail = "\n".join(f"  {format_ms(r.device_ms or 0)} {r.line}" for r in list(self.log)[-15:])
        pat = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
        raise UntilTimeout(f"{pat!r} did not appear within {format_ms(parse_duration(within))} "
                           "of virtual time "
                           f"(now {format_ms(self.current_ms())}); last lines:\n{tail}")

    def request_stop(self) -> None:
        """Pause at the next point where virtual time would advance."""
        self._stop = True
        if self.boot is not None:
            self.boot.set_deadline(self.boot.now)

    def current_ms(self) -> int:
        """The device's virtual time (the ``luat:`` ms counter)."""
        return self.clock.now

    def schedule(self, delay: Duration, action: Callable[[], None], label: str = "", *,
                 power_bound: bool = False) -> ScheduledEvent:
        """Run ``action`` at a virtual time from now (``"2s"``), whether or not a boot is
        running; inside a running boot it runs from the device's event loop. ``power_bound``
        events belong to the powered device (a pending reboot, an RTC wake): :meth:`power_off`
        drops them. Returns the handle that cancels it."""
        return self.schedule_at(self.current_ms() + parse_duration(delay), action, label,
                                power_bound=power_bound)

    def schedule_at(self, due_ms: int, action: Callable[[], None], label: str = "", *,
                    power_bound: bool = False) -> ScheduledEvent:
        """:meth:`schedule` at an absolute virtual time (ms since power-on)."""
        event = self.clock.at(due_ms, action, label or getattr(action, "__name__", "action"))
        if power_bound:
            self._power_bound = [e for e in self._power_bound if e.pending]
            self._power_bound.append(event)
        return event

    # -- the lifecycle ----------------------------------------------------------------------------

    def power_on(self, delay: Duration = 0) -> ScheduledEvent:
        """Switch the supply on (at ``delay`` from now): a power-on boot, unless the device is
        already running by then."""
        def on() -> None:
            if self.boot is None:
                self.start_boot(BootReason.POWER_ON)
        return self.schedule(delay, on, "power on")

    def power_off(self) -> None:
        """Cut the supply now: the running boot ends where it is (no further Lua), RAM is lost,
        flash (files, fskv, a staged package) is kept, and what the powered device had pending
        (a reboot, a dtimer wake) is dropped. The device stays off until :meth:`power_on`."""
        for event in self._power_bound:
            event.cancel()
        self._power_bound.clear()
        if self._end_running(BootOutcome.POWER_OFF, ResetDetail.POWER_ON):
            self.request_stop()  # run_for/run_until return at the cut

    def power_cycle(self) -> None:
        """Cut the power and switch it on again; the next boot says "power on". The ``luat:``
        ms counter keeps counting (virtual time stays monotonic)."""
        self.power_off()
        self.trace_event("power_cycle")
        self.power_on()

    def reboot(self, reason: BootReason = BootReason.REBOOT) -> None:
        """Reset the running device now, as ``rtos.reboot()`` does (or the watchdog, with
        ``BootReason.WATCHDOG``); the next boot starts at once."""
        if reason not in (BootReason.REBOOT, BootReason.WATCHDOG):
            raise ValueError(f"reboot({reason!r}): a reboot is REBOOT or WATCHDOG")
        outcome = BootOutcome.WATCHDOG if reason == BootReason.WATCHDOG else BootOutcome.REBOOT
        if self.boot is None:
            raise RuntimeError("reboot(): the device is not running")
        if not self._end_running(outcome, _DETAIL_OF[reason]):
            self._restart(reason)

    def wake(self, cause: WakeCause = WAKE_BY_PAD) -> None:
        """Deep sleep ends now: a wake boot (``pm.lastReson()`` reports ``cause``). The power
        part decides when (a dtimer, a wake pad, a test)."""
        self.start_boot(BootReason.WAKE, cause)

    def enter_sleep(self) -> None:
        """The running boot ends as deep sleep (or ``pm.shutdown``): nothing runs until a
        wake, which the power part arranges."""
        self._end_running(BootOutcome.SLEEP, ResetDetail.POWER_ON)

    def start_boot(self, reason: BootReason, cause: WakeCause | None = None) -> None:
        """Start a boot now: apply a staged package, print the banner, start the VM at the
        profile's ``main_ms``. The device must be between boots."""
        if self.boot is not None:
            raise RuntimeError(f"start_boot({reason}): boot {self.boot.number} is running")
        start = self.clock.now
        number = len(self.boots) + 1
        self.last_reset = cause or WakeCause(detail=_DETAIL_OF[reason])
        self.boots.append(BootInfo(number, reason, start))
        self.trace_event("boot", reason=reason, detail=self.last_reset.detail)
        self.platform.fota.apply_at_boot(reason)
        for fn in self.before_boot:
            fn(self, reason)
        self._banner(reason, start + self.profile.banner_ms)
        self.clock.advance_to(start + self.profile.main_ms)
        try:
            boot = Boot(self, number, reason, self.clock.now)
        except ScriptError as e:
            self.emit_c("E", "main", str(e))
            self.boots[-1].outcome = BootOutcome.ERROR
            self.boots[-1].error = str(e)
            return
        self.boot = boot
        self.clock.follow(boot.get_now, boot.set_now)
        self.boots[-1].outcome = BootOutcome.RUNNING

    def _end_running(self, outcome: BootOutcome, detail: ResetDetail) -> bool:
        """Halt the running boot. Called from inside it (a binding, an event it runs), the run
        loop ends it when the step returns (True); from outside, it ends here (False)."""
        if self.boot is None:
            return False
        self.boot.halt(outcome, detail)
        if self._stepping:
            return True
        self._end_boot(outcome)
        return False

    def _restart(self, reason: BootReason) -> None:
        self.schedule(0, lambda: self.start_boot(reason), str(reason), power_bound=True)

    # -- the run loop -----------------------------------------------------------------------------

    def _deliver(self, event: ScheduledEvent) -> Callable[[], None]:
        def run() -> None:
            if event in self._handed:
                self._handed.remove(event)
            event.fire()
        return run

    def _run(self, until: int) -> None:
        self._stop = False
        while not self._stop:
            if self.boot is None:
                event = self.clock.pop_due(until)
                if event is None:
                    self.clock.advance_to(until)
                    return
                self.clock.advance_to(event.due)
                event.fire()
                continue
            # Host events due while a boot runs are delivered into its event loop.
            while (event := self.clock.pop_due(until)) is not None:
                self._handed.append(event)  # back to the timeline if the boot ends first
                self.boot.post_at(event.due, self._deliver(event))
            self._stepping = True
            try:
                res = self.boot.step(until)
            finally:
                self._stepping = False
                self.clock.sync()
            self._handle(res, until)
            if isinstance(res, Paused) and self.clock.now >= until:
                return

    def _handle(self, res: StepResult, until: int) -> None:
        boot = self.boot
        assert boot is not None
        if isinstance(res, Paused):
            if res.idle and not self._stop:
                self.clock.now = until  # nothing to do before `until`: time jumps there
            return
        info = self.boots[-1]
        if isinstance(res, Halted):
            self._end_boot(res.outcome)
            if res.outcome in (BootOutcome.SLEEP, BootOutcome.POWER_OFF):
                return  # the power part arranged the wake; a power cut waits for power_on
            if res.outcome == BootOutcome.WATCHDOG:
                self._count_failure(info, "watchdog reset")
            self._restart(BootReason.WATCHDOG if res.detail == ResetDetail.WATCHDOG
                          else BootReason.REBOOT)
            return
        if isinstance(res, Crashed):
            text = boot.error_text(res.error)
            self.emit_c("E", "main", "Luat: ")
            self.emit_c("E", "main", text)
            self.platform.errdump.lua_error(text)  # report() saves it when errDump records
            self._explain_missing(text, boot, self.clock.now)
            info.error = text
            outcome = BootOutcome.ERROR
        else:
            outcome = BootOutcome.EXIT
        delay = self.options.exit_reboot_delay_ms
        self.emit_c("E", "main", f"Lua VM exit!! reboot in {delay}ms")
        self._end_boot(outcome)
        self._count_failure(info, info.error or "main returned")
        if info.error == "module 'main' not found":
            self._nag_missing_main(delay)
        self.schedule_at(self.clock.now + delay, lambda: self.start_boot(BootReason.REBOOT),
                         "reboot after exit", power_bound=True)

    def _nag_missing_main(self, delay: int) -> None:
        for t in range(1000, delay, 1000):
            self.schedule_at(self.clock.now + t, lambda: self.emit_c(
                "E", "main", "未找到main.lua,请刷入脚本以运行程序 / main.lua not found, "
                "please flash a script"), "missing main", power_bound=True)

    def _count_failure(self, info: BootInfo, error: str) -> None:
        self._failing_boots += 1
        self._last_error = error
        if self._failing_boots >= self.options.reboot_loop_boots and self.reboot_loop is None:
            self.reboot_loop = (f"device is in a reboot loop: {self._failing_boots} boots in a "
                                f"row failed; last error: {error}")
            self.emit_sim(self.reboot_loop)
            self.trace_event("reboot_loop", boots=self._failing_boots, error=error)

    def _end_boot(self, outcome: BootOutcome) -> None:
        boot = self.boot
        self.clock.unfollow()
        now = self.clock.now
        # Host events (a wake, a button press) that the ending boot never reached.
        for event in self._handed:
            if event.pending:
                event.due = max(event.due, now)
                self.clock.push(event)
        self._handed.clear()
        info = self.boots[-1]
        info.ended_ms = now
        info.outcome = outcome
        if outcome in (BootOutcome.REBOOT, BootOutcome.SLEEP):
            # A deliberate reboot or sleep is a boot that worked.
            self._failing_boots = 0
            self.reboot_loop = None
        self.trace_event("boot_end", outcome=outcome, error=info.error)
        if boot is not None:
            boot.close()
        self.boot = None
        for fn in self.after_boot_ends:
            fn(self, info)

    def _banner(self, reason: BootReason, ms: int) -> None:
        p = self.profile
        c = self.emit_c
        if reason == BootReason.POWER_ON:
            c("I", "pm", "reset native reason: 0", ms)
            c("D", "pm", "boot up by power on", ms)
            c("D", "pm", "poweron reason 0", ms)
        elif reason == BootReason.WAKE:
            c("I", "pm", "reset native reason: 0", ms)
            c("D", "pm", "boot up by deep sleep wakeup", ms)
            c("D", "pm", "poweron reason 0", ms)
        else:
            detail = _DETAIL_OF[reason]
            c("I", "pm", "reset native reason: 1", ms)
            c("D", "pm", "boot up by reboot", ms)
            c("D", "pm", "reset reason: " + ("WDT" if reason == BootReason.WATCHDOG
                                             else "SWRESET"), ms)
            c("D", "pm", f"poweron reason {int(detail)}", ms)
        if p.mac:
            c("D", "main", f"STA MAC: {p.mac_hex(0)}", ms)
            c("D", "main", f"AP  MAC: {p.mac_hex(1)}", ms)
            c("D", "main", f"BLE MAC: {p.mac_hex(2)}", ms)
        c("D", "main", "io voltage set to 3.3V", ms)
        c("D", "main", f"UID: {p.uid.hex().upper()}", ms)
        c("I", "main", f"LuatOS@{p.model} base {p.base} bsp {p.core} {p.bits}bit", ms)
        c("I", "main", f"ROM Build: {p.rom_build}", ms)
        c("W", "pins", f"/luadb/pins_{p.model.lower()}.json not exist!!", ms)
        c("D", "main", f"loadlibs luavm {p.lua_heap} 20560 20560", ms)
        c("D", "main", f"loadlibs sys   {p.sys_heap} 33384 33384", ms)
        if p.psram:
            c("D", "main", f"loadlibs psram {p.psram} 51472 69264", ms)

    # -- convenience -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.boot is not None
