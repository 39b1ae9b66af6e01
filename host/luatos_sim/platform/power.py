"""The power part: deep sleep (PSM+), the dtimers, wake sources and the power key.

What survives a boot lives here (armed dtimers, the sleep request, the "PSM entry fails"
switch); the ``pm`` binding (modules/pm.py) is the Lua face of it. Sleeping ends the boot
(RAM, timers and tasks are gone; files, fskv and a staged FOTA package stay). The earliest
dtimer wakes the device with a full boot; with no dtimer the device sleeps until a test calls
``dev.power.wake()``. docs/behaviour.md, "pm", has the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..clock import ScheduledEvent
from ..duration import Duration, format_ms
from ..lifecycle import WAKE_BY_DTIMER, WAKE_BY_PAD, BootReason, WakeCause

if TYPE_CHECKING:
    from ..device import Device
    from ..vm import Boot


@dataclass
class PowerControl:
    """``dev.power``: armed dtimers (id -> due virtual ms) and how the device sleeps and wakes."""

    device: Device
    dtimers: dict[int, int] = field(default_factory=dict)
    psm_entry_fails: bool = False  # the demo's "进入PSM+失败,重启" path
    asleep: bool = False
    wake_id: int = -1  # dtimerWkId() of the current boot
    work_mode: int = 0
    requested: int = 0  # pm.request mode
    sleeps: int = 0
    off: bool = False  # pm.shutdown(): only wake() (the power key) brings it back
    wakeup_pins: dict[int, int] = field(default_factory=dict)  # pin -> level that wakes
    _dtimer_wake: ScheduledEvent | None = None

    # -- test API ---------------------------------------------------------------------------------

    def wake(self, delay: Duration = 0, reason: WakeCause = WAKE_BY_PAD) -> None:
        """Wake a sleeping device (a pad/IO wake unless ``reason`` says otherwise); after
        ``pm.shutdown()`` this is the power key, and the boot is a power-on."""
        if not self.asleep:
            raise RuntimeError("the device is not in deep sleep")

        def go() -> None:
            if not self.asleep:
                return
            was_off, self.off = self.off, False
            self._woken(-1)
            if was_off:
                self.device.start_boot(BootReason.POWER_ON)
            else:
                self.device.wake(reason)
        self.device.schedule(delay, go, "wake injected by test")

    # -- platform interface -----------------------------------------------------------------------

    def new_boot(self, reason: BootReason) -> int:
        """A boot starts: the dtimers are consumed (a wake clears them all, and the RTC timers do
        not survive a reset either). Returns this boot's ``pm.dtimerWkId()``."""
        wake_id = self.wake_id if reason == BootReason.WAKE else -1
        self.wake_id = -1
        self.dtimers.clear()
        self.asleep = False
        self.work_mode = 0
        self.requested = 0
        self.wakeup_pins.clear()
        return wake_id

    def pin_changed(self, pin: int, level: int) -> None:
        """From the GPIO bench: a pad configured with pm.wakeupPin wakes a sleeping device."""
        if self.asleep and not self.off and self.wakeup_pins.get(pin) == level:
            self.device.trace_event("pad_wake", pin=pin, level=level)
            self._woken(-1)
            self.device.wake(WAKE_BY_PAD)

    def enter_sleep(self, boot: Boot, why: str) -> None:
        """The boot asked for deep sleep and reached an idle point: end it and arm the wake."""
        from ..upgrade_checks import check_sleep
        check_sleep(boot)
        now = boot.now
        if self.psm_entry_fails:
            boot.note(f"deep sleep ({why}) refused: the PSM entry failure switch is on, the "
                      "device keeps running")
            boot.trace("sleep_failed", why=why)
            return
        due_id = min(self.dtimers, key=lambda i: self.dtimers[i]) if self.dtimers else None
        wake_at = self.dtimers[due_id] if due_id is not None else None
        self.asleep = True
        self.sleeps += 1
        self.work_mode = 0
        self.requested = 0
        if wake_at is None:
            boot.note(f"deep sleep ({why}): no dtimer armed, sleeping until a wake is injected")
        else:
            boot.note(f"deep sleep ({why}): dtimer {due_id} wakes the device in "
                      f"{format_ms(max(0, wake_at - now))}")
        boot.trace("sleep", why=why, wake_at=wake_at, dtimer=due_id)
        wake_id = due_id if due_id is not None else -1
        self.device.enter_sleep()
        if wake_at is not None:
            def by_dtimer() -> None:
                self._woken(wake_id)
                self.device.wake(WAKE_BY_DTIMER)
            # A power cut while asleep loses the RTC timer: the event goes with the power.
            self._dtimer_wake = self.device.schedule_at(max(now, wake_at), by_dtimer,
                                                        "deep sleep wake-up", power_bound=True)

    def shutdown(self, boot: Boot) -> None:
        """pm.shutdown(): off until the power key (``wake()``)."""
        boot.trace("shutdown")
        boot.note("pm.shutdown(): the device is off until a test powers it on")
        self.dtimers.clear()
        self.asleep = True
        self.off = True
        self.device.enter_sleep()

    def _woken(self, wake_id: int) -> None:
        if self._dtimer_wake is not None:
            self._dtimer_wake.cancel()  # woken otherwise (a pad, a test): the dtimer is moot
            self._dtimer_wake = None
        self.asleep = False
        self.wake_id = wake_id
        self.dtimers.clear()
        self.device.trace_event("wake", dtimer=wake_id)
