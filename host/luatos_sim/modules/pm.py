"""pm: power management - reboot, the reset reason, deep sleep (PSM+) and the dtimers.

Deep sleep follows the reference's PSM model (§8.2): ``pm.power(pm.WORK_MODE, 3)`` (or
``pm.request/force(pm.DEEP|pm.HIB)``) returns true and only *records* a request; the device
enters sleep at its next idle point (the calling task yielded and nothing is due at this
millisecond), so code after the call still runs until then, like the vendor demo's
``sys.wait(15000)``. Sleeping ends the boot (RAM, timers and tasks are gone; files, fskv and a
staged FOTA package stay). The earliest dtimer wakes the device with a full boot:
``pm.lastReson()`` gives ``1, 3, 0, 0``, ``pm.dtimerWkId()`` the timer id, and all dtimers are
cleared. With no dtimer the device sleeps until a test calls ``dev.power.wake()``.

Device-level state (dtimers, the sleep request, the "PSM entry fails" switch) lives in
:class:`PowerControl`, reachable as ``dev.power``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..duration import format_ms

if TYPE_CHECKING:
    from ..device import Device
    from ..vm import Boot

CONSTANTS = {
    "NONE": 0, "IDLE": 1, "LIGHT": 2, "DEEP": 3, "HIB": 4,
    "USB": 0, "GPS": 1, "GPS_ANT": 2, "CAMERA": 3, "DAC_EN": 4, "PWK_MODE": 5,
    "WORK_MODE": 6, "LDO_CTL": 7, "WIFI_STA_DTIM": 8, "WIFI_AP_DTIM": 9, "WIFI": 10,
    "ID_NATIVE": 0, "ID_WIFI": 1,
}
WORK_MODE = 6
WORK_MODE_PSM = 3
DEEP, HIB = 3, 4
DTIMER_IDS = range(0, 6)
WAKE_BY_DTIMER = (1, 3, 0, 0)  # UNCONFIRMED on Air8101 -> the reference's default
WAKE_BY_PAD = (2, 3, 0, 0)


@dataclass
class PowerControl:
    """What survives a boot: armed dtimers (id -> due virtual ms) and how the device woke."""

    device: Device
    dtimers: dict[int, int] = field(default_factory=dict)
    psm_entry_fails: bool = False  # the demo's "进入PSM+失败,重启" path
    asleep: bool = False
    wake_id: int = -1  # dtimerWkId() of the current boot
    work_mode: int = 0
    requested: int = 0  # pm.request mode
    sleeps: int = 0
    sleep_gen: int = 0
    off: bool = False  # pm.shutdown(): only wake() (the power key) brings it back
    wakeup_pins: dict[int, int] = field(default_factory=dict)  # pin -> level that wakes

    def pin_changed(self, pin: int, level: int) -> None:
        """From the GPIO bench: a pad configured with pm.wakeupPin wakes a sleeping device."""
        if self.asleep and not self.off and self.wakeup_pins.get(pin) == level:
            self.device.trace_event("pad_wake", pin=pin, level=level)
            self._woken(-1)
            self.device._start_boot("wake", 0, WAKE_BY_PAD)

    def wake(self, delay: str | int = 0, reason: tuple[int, int, int, int] = WAKE_BY_PAD) -> None:
        """Wake a sleeping device (a pad/IO wake unless ``reason`` says otherwise)."""
        if not self.asleep:
            raise RuntimeError("the device is not in deep sleep")

        def go() -> None:
            if not self.asleep:
                return
            was_off, self.off = self.off, False
            self._woken(-1)
            if was_off:  # after pm.shutdown() the power key makes a power-on boot
                self.device._start_boot("power-on", 0)
            else:
                self.device._start_boot("wake", 0, reason)
        self.device.schedule(delay, go, "wake injected by test")

    def _woken(self, wake_id: int) -> None:
        self.asleep = False
        self.wake_id = wake_id
        self.dtimers.clear()
        self.device.trace_event("wake", dtimer=wake_id)

    def enter_sleep(self, boot: Boot, why: str) -> None:
        from .. import lint
        lint.check_sleep(boot)
        now = boot.now
        if self.psm_entry_fails:
            self.device.emit_sim(f"deep sleep ({why}) refused: the PSM entry failure switch is "
                                 "on, the device keeps running", now)
            self.device.trace_event("sleep_failed", why=why)
            return
        due_id = min(self.dtimers, key=lambda i: self.dtimers[i]) if self.dtimers else None
        wake_at = self.dtimers[due_id] if due_id is not None else None
        self.asleep = True
        self.sleeps += 1
        self.work_mode = 0
        self.requested = 0
        if wake_at is None:
            self.device.emit_sim(f"deep sleep ({why}): no dtimer armed, sleeping until a wake "
                                 "is injected", now)
        else:
            self.device.emit_sim(f"deep sleep ({why}): dtimer {due_id} wakes the device in "
                                 f"{format_ms(max(0, wake_at - now))}", now)
        self.device.trace_event("sleep", why=why, wake_at=wake_at, dtimer=due_id)
        wake_id = due_id if due_id is not None else -1
        self.sleep_gen += 1
        gen = self.sleep_gen
        self.device.sleep_until(None, WAKE_BY_DTIMER)  # our own wake below can be overtaken
        if wake_at is not None:
            def by_dtimer() -> None:
                if self.asleep and self.sleep_gen == gen:  # not already woken by a pad/test
                    self._woken(wake_id)
                    self.device._start_boot("wake", 0, WAKE_BY_DTIMER)
            self.device.schedule(max(0, wake_at - now), by_dtimer, "deep sleep wake-up")


def attach(device: Device) -> PowerControl:
    ctl = PowerControl(device)
    device.extensions["pm"] = ctl
    device.power = ctl  # type: ignore[attr-defined]
    return ctl


def power_control(device: Device) -> PowerControl:
    ctl = device.extensions.get("pm")
    return ctl if ctl is not None else attach(device)


def _int(v: Any, default: int | None = None) -> int | None:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int | float):
        return int(v)
    return default


def install(boot: Boot) -> None:
    reason = boot.device.last_reset  # (wake source, state, detail, pad mask)
    ctl = power_control(boot.device)
    dev = boot.device
    # This boot remembers what woke it; the dtimers are consumed (cleared on every boot: a
    # wake clears them all, and the RTC timers do not survive a reset either).
    wake_id = ctl.wake_id if boot.reason == "wake" else -1
    ctl.wake_id = -1
    ctl.dtimers.clear()
    ctl.asleep = False
    ctl.work_mode = 0
    ctl.requested = 0
    ctl.wakeup_pins.clear()
    next_due = boot.RT.next_due  # bound now: reading RT fields later is unsafe (lupa caveat)
    pending: dict[str, Any] = {"armed": False, "why": ""}

    def check_idle() -> None:
        pending["armed"] = False
        if not pending["why"]:
            return
        due = next_due()
        if due is not None and due <= boot.now:
            arm(pending["why"])  # other work is due at this millisecond: let it run first
            return
        why = pending["why"]
        pending["why"] = ""
        ctl.enter_sleep(boot, why)

    def arm(why: str) -> None:
        pending["why"] = why
        if not pending["armed"]:
            pending["armed"] = True
            boot.post(0, check_idle)

    def power(pid: Any = None, value: Any = None, *_: Any) -> bool:
        p = _int(pid)
        v = _int(value, 1 if value is True else 0)
        if p is None:
            return False
        if p == WORK_MODE:
            ctl.work_mode = v or 0
            dev.trace_event("power_mode", mode=v)
            if v == WORK_MODE_PSM:
                arm("pm.power(pm.WORK_MODE, 3)")
            else:
                pending["why"] = ""
        return True

    def request(mode: Any = None, *_: Any) -> bool:
        m = _int(mode)
        if m is None or not 0 <= m <= 4:
            return False
        ctl.requested = m
        dev.trace_event("pm_request", mode=m)
        if m in (DEEP, HIB):
            arm(f"pm.request({m})")
        else:
            pending["why"] = ""
        return True

    def force(mode: Any = None, *_: Any) -> bool:
        return request(mode)

    def check(*_: Any) -> tuple[bool, int, int]:
        return True, ctl.requested, ctl.work_mode

    def dtimer_start(tid: Any = None, ms: Any = None, *_: Any) -> bool:
        i, t = _int(tid), _int(ms)
        if i is None or i not in DTIMER_IDS or t is None or t <= 0:
            return False
        ctl.dtimers[i] = boot.now + t
        dev.trace_event("dtimer_start", id=i, ms=t)
        return True

    def dtimer_stop(tid: Any = None, *_: Any) -> None:
        i = _int(tid)
        if i is not None and ctl.dtimers.pop(i, None) is not None:
            dev.trace_event("dtimer_stop", id=i)

    def dtimer_check(tid: Any = None, *_: Any) -> Any:
        i = _int(tid)
        if i is None or i not in ctl.dtimers:
            return False
        remain = ctl.dtimers[i] - boot.now
        if remain <= 0:
            return False
        return True, remain

    def dtimer_list(*_: Any) -> Any:
        t = boot.lua.table()
        for i, due in sorted(ctl.dtimers.items()):
            if due > boot.now:
                t[i] = due - boot.now
        return t

    def shutdown(*_: Any) -> None:
        dev.trace_event("shutdown")
        dev.emit_sim("pm.shutdown(): the device is off until a test powers it on", boot.now)
        ctl.dtimers.clear()
        ctl.asleep = True  # only an injected wake (power key) brings it back
        ctl.off = True
        dev.sleep_until(None, (0, 0, 0, 0))

    def wakeup_pin(pin: Any = None, level: Any = 0, *_: Any) -> bool:
        p = _int(pin)
        if p is None:
            return False
        ctl.wakeup_pins[p] = 1 if _int(level) else 0
        return True

    boot.firmware_module("pm", {
        "lastReson": lambda *_: tuple(reason),
        "power": power,
        "request": request,
        "force": force,
        "check": check,
        "dtimerStart": dtimer_start,
        "dtimerStop": dtimer_stop,
        "dtimerCheck": dtimer_check,
        "dtimerList": dtimer_list,
        "dtimerWkId": lambda *_: wake_id,
        "shutdown": shutdown,
        "ioVol": lambda *_: True,
        "wakeupPin": wakeup_pin,
        "keep": lambda *_: True,
    }, CONSTANTS)
    boot.G.pm[b"reboot"] = boot.G.rtos[b"reboot"]
    # Like rtos.reboot, shutdown is immediate: nothing after it runs.
    boot.lua.execute(b"""
      local H = ...
      local off = pm.shutdown
      pm.shutdown = function(...) off(...); error(H.halted_error, 0) end
    """, boot.H)
