"""The words of a device's life: why a boot started, how it ended, what one VM step returned.

They are string enums so a trace, a report or a test reads ``"power-on"`` as before, while the
code can only name values that exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any


class BootReason(StrEnum):
    """Why a boot started (``BootInfo.reason``; the banner's "boot up by ...")."""

    POWER_ON = "power-on"
    REBOOT = "reboot"  # rtos.reboot / pm.reboot, or main ended and the firmware restarted
    WATCHDOG = "watchdog"  # the watchdog (or the busy-loop guard) reset the device
    WAKE = "wake"  # deep sleep ended (dtimer, wake pad, or a test's wake)


class BootOutcome(StrEnum):
    """How a boot ended (``BootInfo.outcome``)."""

    RUNNING = "running"  # not ended yet
    REBOOT = "reboot"
    WATCHDOG = "watchdog"
    ERROR = "error"  # main raised; the firmware restarts after exit_reboot_delay_ms
    EXIT = "exit"  # main returned
    SLEEP = "sleep"  # deep sleep or pm.shutdown: the device waits for a wake
    POWER_OFF = "power-off"  # the supply went away (power_off, power_cycle, a power cut)
    INTERRUPTED = "interrupted"  # Ctrl-C reached the emulator inside a firmware call


class ResetDetail(IntEnum):
    """The detail code of ``pm.lastReson()`` (third value) and of the banner."""

    POWER_ON = 0
    SOFTWARE = 3
    WATCHDOG = 8


@dataclass(frozen=True)
class WakeCause:
    """``pm.lastReson()``: (wake source, boot state, reset detail, wake pad mask)."""

    source: int = 0
    state: int = 0
    detail: int = 0
    pads: int = 0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.source, self.state, self.detail, self.pads)


WAKE_BY_DTIMER = WakeCause(1, 3, 0, 0)  # UNCONFIRMED on Air8101: docs/defaults.md
WAKE_BY_PAD = WakeCause(2, 3, 0, 0)


# -- one VM step ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paused:
    """The step stopped at its deadline (``idle`` False) or found nothing to do (True)."""

    idle: bool


@dataclass(frozen=True)
class Halted:
    """The boot was halted by the firmware (reboot, watchdog, sleep, power off)."""

    outcome: BootOutcome
    detail: ResetDetail


@dataclass(frozen=True)
class Crashed:
    """``main`` (or the event loop) raised: ``error`` is the Lua error value."""

    error: Any


@dataclass(frozen=True)
class Returned:
    """``main`` returned (the vendor's sys.run() never does)."""


StepResult = Paused | Halted | Crashed | Returned
