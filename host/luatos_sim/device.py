"""The simulated device: persistent state, the virtual clock across boots, and the run loop.

A Device outlives its boots. It owns what survives a reboot on the module (the filesystem, fskv,
the flashed script image, a staged FOTA package, the ``luat:`` millisecond counter) and what a
test wants to look at afterwards (the log, the trace, the list of boots and why each ended).
Each boot is a fresh VM (:class:`luatos_sim.vm.Boot`).
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

from .duration import format_ms, parse_duration
from .fs import DeviceFS
from .fskv_store import FskvStore
from .profiles import ModelProfile, get_profile
from .scripts import ScriptError, load_lib_dir, load_project_files
from .vm import Boot, StepResult

# pm.lastReson() detail codes
RESET_POWER_ON = 0
RESET_SOFTWARE = 3
RESET_WATCHDOG = 8


class RebootLoopError(AssertionError):
    """The device keeps failing to boot; raised by run_until so a test fails fast."""


class UntilTimeout(AssertionError):
    """run_until's pattern did not appear within the allowed virtual time."""


@dataclass
class DeviceOptions:
    """Knobs for points the reference leaves UNCONFIRMED, and for the emulator itself."""

    exit_reboot_delay_ms: int = 15_000  # LUAT_EXIT_REBOOT_DELAY
    lua_heap: int | None = None  # None: the profile's heap; 0: no cap
    io_grace_ms: int = 2_000  # wall time to wait for real I/O before virtual time jumps
    busy_loop_instructions: int = 200_000_000  # Lua without a yield before a watchdog reset
    log_limit: int = 200_000  # records kept in memory
    reboot_loop_boots: int = 3  # failing boots in a row that make a reboot loop
    epoch_at_power_on: int | None = None  # os.time() before SNTP; None: the host clock
    # With a server_ca, http.request verifies the server's chain against it; whether the
    # device also matches the certificate's name to the host is UNCONFIRMED (default: no).
    tls_check_hostname: bool = False


@dataclass
class BootInfo:
    number: int
    reason: str  # "power-on", "reboot", "watchdog", "error", "wake", ...
    started_ms: int
    ended_ms: int | None = None
    outcome: str | None = None  # "reboot", "error", "exit", "watchdog", "sleep", "running"
    error: str | None = None


@dataclass
class TraceEvent:
    ms: int
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)
    boot: int = 0


@dataclass
class _Timeline:
    due: int
    action: Callable[[], None]
    label: str


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
        self.fs = DeviceFS(self.fs_root, self.image_dir)
        self.fskv = FskvStore(self.state_dir / "fskv.json")
        env_libs = [p for p in os.environ.get("LUATOS_SIM_LIB_DIRS", "").split(os.pathsep) if p]
        self._lib_layers = [load_lib_dir(d) for d in [*lib_dirs, *env_libs]]
        if project is not None or files is not None:
            self.flash(load_project_files(project) if project is not None else dict(files or {}))
        elif not self.image_dir.is_dir():
            raise ScriptError("no project: give a project directory, files, or a state_dir "
                              "that already holds a flashed image")
        self._image_cache: dict[str, bytes] | None = None

        self.epoch_at_power_on = self.options.epoch_at_power_on if \
            self.options.epoch_at_power_on is not None else int(time.time())
        self.now = 0
        self.log: deque[LogRecord] = deque(maxlen=self.options.log_limit)
        self.trace: list[TraceEvent] = []
        self.boots: list[BootInfo] = []
        self.boot: Boot | None = None
        self.last_reset: tuple[int, int, int, int] = (0, 0, RESET_POWER_ON, 0)
        self.reboot_loop: str | None = None
        self.wall_in_vm = 0.0
        self._listeners: list[Callable[[LogRecord], None]] = []
        self._timeline: list[_Timeline] = []
        self._handed: list[_Timeline] = []  # timeline items queued in the running boot
        self._stop = False
        self._failing_boots = 0
        self._last_error: str | None = None
        self.before_boot: list[Callable[[Device, str], None]] = []  # e.g. apply a FOTA package
        self.after_boot_ends: list[Callable[[Device, BootInfo], None]] = []
        self.extensions: dict[str, Any] = {}  # state kept by optional layers (network, fota)
        from .layers import attach_layers  # FOTA area, power control, GPIO test bench
        attach_layers(self)
        self._schedule(0, lambda: self._start_boot("power-on", RESET_POWER_ON), "power on")

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
        self._record(c_record(level, tag, text, self.now if ms is None else ms,
                              boot=self._boot_no))

    def emit_sim(self, text: str, ms: int | None = None) -> None:
        self._record(LogRecord("W", "luatos-sim", text, text, SIM,
                               self.now if ms is None else ms, boot=self._boot_no))

    def note_reboot_call(self, ms: int) -> None:
        """rtos.reboot()/pm.reboot() was called (traced; the boot halts right after)."""
        self.trace_event("reboot_request")

    def emit_raw(self, record: LogRecord) -> None:
        """Add a record produced outside print/log (e.g. a script writing to the console UART)."""
        if record.boot is None:
            record.boot = self._boot_no
        self._record(record)

    def trace_event(self, kind: str, **detail: Any) -> None:
        ms = self.boot.now if self.boot is not None else self.now
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

    def run_for(self, duration: str | int) -> None:
        """Advance virtual time by ``duration``, running whatever the device does meanwhile."""
        self._run(self.current_ms() + parse_duration(duration))

    def run_until(self, pattern: str | re.Pattern[str] | Callable[[LogRecord], bool],
                  within: str | int = "10m", *, stop_on_reboot_loop: bool = True) -> LogRecord:
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
        return self.boot.now if self.boot is not None else self.now

    def _schedule(self, due: int, action: Callable[[], None], label: str) -> None:
        self._timeline.append(_Timeline(due, action, label))
        self._timeline.sort(key=lambda t: t.due)

    def schedule(self, delay: str | int, action: Callable[[], None], label: str = "") -> None:
        """Run ``action`` at a virtual time from now, whether or not a boot is running.
        Inside a running boot it runs from the device's event loop."""
        due = self.current_ms() + parse_duration(delay)
        self._schedule(due, action, label or getattr(action, "__name__", "action"))

    def _deliver(self, item: _Timeline) -> Callable[[], None]:
        def run() -> None:
            if item in self._handed:
                self._handed.remove(item)
            item.action()
        return run

    def _run(self, until: int) -> None:
        self._stop = False
        while not self._stop:
            if self.boot is None:
                if not self._timeline or self._timeline[0].due > until:
                    self.now = max(self.now, until)
                    return
                item = self._timeline.pop(0)
                self.now = max(self.now, item.due)
                item.action()
                continue
            # Device-level actions due while a boot runs are delivered into its event loop.
            while self._timeline and self._timeline[0].due <= until:
                item = self._timeline.pop(0)
                self._handed.append(item)  # back to the timeline if the boot ends first
                self.boot.post_at(item.due, self._deliver(item))
            res = self.boot.step(until)
            self.now = self.boot.now if self.boot is not None else self.now
            self._handle(res, until)
            if res.kind == "pause" and self.now >= until:
                return

    def _handle(self, res: StepResult, until: int) -> None:
        boot = self.boot
        assert boot is not None
        if res.kind == "pause":
            if res.detail == "idle":
                self.now = until if not self._stop else boot.now
                boot.now = self.now
            return
        self.now = boot.now
        info = self.boots[-1]
        if res.kind == "halt":
            kind, detail = res.detail
            self._end_boot(kind)
            if kind == "sleep":
                return  # the sleep layer scheduled the wake-up
            reason = "watchdog" if detail == RESET_WATCHDOG else "reboot"
            if kind == "watchdog":
                self._count_failure(info, "watchdog reset")
            self._schedule(self.now, lambda: self._start_boot(reason, detail), reason)
            return
        if res.kind == "error":
            text = boot.error_text(res.detail)
            self.emit_c("E", "main", "Luat: ")
            self.emit_c("E", "main", text)
            self._explain_missing(text, boot, self.now)
            info.error = text
            outcome = "error"
        else:
            outcome = "exit"
        delay = self.options.exit_reboot_delay_ms
        self.emit_c("E", "main", f"Lua VM exit!! reboot in {delay}ms")
        self._end_boot(outcome)
        self._count_failure(info, info.error or "main returned")
        if info.error == "module 'main' not found":
            self._nag_missing_main(delay)
        self._schedule(self.now + delay,
                       lambda: self._start_boot("reboot", RESET_SOFTWARE), "reboot after exit")

    def _nag_missing_main(self, delay: int) -> None:
        for t in range(1000, delay, 1000):
            self._schedule(self.now + t, lambda: self.emit_c(
                "E", "main", "未找到main.lua,请刷入脚本以运行程序 / main.lua not found, "
                "please flash a script"), "missing main")

    def _count_failure(self, info: BootInfo, error: str) -> None:
        self._failing_boots += 1
        self._last_error = error
        if self._failing_boots >= self.options.reboot_loop_boots and self.reboot_loop is None:
            self.reboot_loop = (f"device is in a reboot loop: {self._failing_boots} boots in a "
                                f"row failed; last error: {error}")
            self.emit_sim(self.reboot_loop)
            self.trace_event("reboot_loop", boots=self._failing_boots, error=error)

    def _end_boot(self, outcome: str) -> None:
        # Device-level actions (a wake, a button press) that the ending boot never reached.
        for item in self._handed:
            self._schedule(max(item.due, self.now), item.action, item.label)
        self._handed.clear()
        boot = self.boot
        info = self.boots[-1]
        info.ended_ms = self.now
        info.outcome = outcome
        if outcome in ("reboot", "sleep"):
            # A deliberate reboot or sleep is a boot that worked.
            self._failing_boots = 0
            self.reboot_loop = None
        self.trace_event("boot_end", outcome=outcome, error=info.error)
        if boot is not None:
            boot.close()
        self.boot = None
        for fn in self.after_boot_ends:
            fn(self, info)

    def _start_boot(self, reason: str, detail: int,
                    wake: tuple[int, int, int, int] | None = None) -> None:
        start = self.now
        number = len(self.boots) + 1
        self.last_reset = wake or ((0, 0, detail, 0))
        self.boots.append(BootInfo(number, reason, start))
        self.trace_event("boot", reason=reason, detail=detail)
        for fn in self.before_boot:
            fn(self, reason)
        self._banner(reason, detail, start + self.profile.banner_ms)
        self.now = start + self.profile.main_ms
        try:
            self.boot = Boot(self, number, reason, self.now)
        except ScriptError as e:
            self.emit_c("E", "main", str(e))
            self.boot = None
            self.boots[-1].outcome = "error"
            self.boots[-1].error = str(e)
            return
        self.boots[-1].outcome = "running"

    def _banner(self, reason: str, detail: int, ms: int) -> None:
        p = self.profile
        c = self.emit_c
        if reason == "power-on":
            c("I", "pm", "reset native reason: 0", ms)
            c("D", "pm", "boot up by power on", ms)
            c("D", "pm", "poweron reason 0", ms)
        elif reason == "wake":
            c("I", "pm", "reset native reason: 0", ms)
            c("D", "pm", "boot up by deep sleep wakeup", ms)
            c("D", "pm", "poweron reason 0", ms)
        else:
            c("I", "pm", "reset native reason: 1", ms)
            c("D", "pm", "boot up by reboot", ms)
            c("D", "pm", "reset reason: " + ("WDT" if detail == RESET_WATCHDOG else "SWRESET"), ms)
            c("D", "pm", f"poweron reason {detail}", ms)
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

    def power_cycle(self) -> None:
        """Cut the power and switch it on again: the running boot ends where it is (no further
        Lua), RAM is lost, flash (files, fskv, a staged package) is kept, and the next boot says
        "power on". The ``luat:`` ms counter keeps counting (virtual time stays monotonic)."""
        if self.boot is not None:
            self.now = self.boot.now
            self.boot.halt("power-off", RESET_POWER_ON)
            self._end_boot("power-off")
        self._timeline = [t for t in self._timeline if t.label not in
                          ("reboot", "watchdog", "reboot after exit", "missing main",
                           "deep sleep wake-up")]
        self.trace_event("power_cycle")
        self._schedule(self.now, lambda: self._start_boot("power-on", RESET_POWER_ON), "power on")

    # -- convenience -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.boot is not None

    @property
    def net(self) -> Any:
        """The simulated network: links, faults, address map (luatos_sim.network.Network)."""
        from .network import network_of
        return network_of(self)

    def sleep_until(self, wake_at: int | None, wake_reason: tuple[int, int, int, int],
                    on_wake: Callable[[], None] | None = None) -> None:
        """Used by the sleep layer: end the current boot as deep sleep, wake later (or never)."""
        if self.boot is not None:
            self.boot.halt("sleep", 0)
        if wake_at is not None:
            def wake() -> None:
                if on_wake:
                    on_wake()
                self._start_boot("wake", 0, wake_reason)
            self._schedule(wake_at, wake, "deep sleep wake-up")
