"""pm: power management - reboot, the reset reason, deep sleep (PSM+) and the dtimers.

The binding over the power part (platform/power.py, ``dev.power``). Deep sleep follows the
PSM model of docs/behaviour.md ("pm"): ``pm.power(pm.WORK_MODE, 3)`` (or
``pm.request/force(pm.DEEP|pm.HIB)``) returns true and only *records* a request; the device
enters sleep at its next idle point (the calling task yielded and nothing is due at this
millisecond), so code after the call still runs until then, like the vendor demo's
``sys.wait(15000)``. Sleeping ends the boot (RAM, timers and tasks are gone; files, fskv and a
staged FOTA package stay). The earliest dtimer wakes the device with a full boot:
``pm.lastReson()`` gives ``1, 3, 0, 0``, ``pm.dtimerWkId()`` the timer id, and all dtimers are
cleared. With no dtimer the device sleeps until a test calls ``dev.power.wake()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def _int(v: Any, default: int | None = None) -> int | None:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int | float):
        return int(v)
    return default


def install(boot: Boot) -> None:
    reason = boot.last_reset.as_tuple()  # (wake source, state, detail, pad mask)
    ctl = boot.platform.power
    # This boot remembers what woke it; the dtimers are consumed.
    wake_id = ctl.new_boot(boot.reason)
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
            boot.trace("power_mode", mode=v)
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
        boot.trace("pm_request", mode=m)
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
        boot.trace("dtimer_start", id=i, ms=t)
        return True

    def dtimer_stop(tid: Any = None, *_: Any) -> None:
        i = _int(tid)
        if i is not None and ctl.dtimers.pop(i, None) is not None:
            boot.trace("dtimer_stop", id=i)

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
        ctl.shutdown(boot)

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
    boot.execute(b"""
      local H = ...
      local off = pm.shutdown
      pm.shutdown = function(...) off(...); error(H.halted_error, 0) end
    """, boot.H)
