"""The real-time clock: which epoch second virtual time 0 of this device is.

It outlives a boot (``rtc.set`` survives a soft reboot, as the RTC keeps running); each boot's
``os.time()`` reads it at start, and the rtc binding moves it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RtcClock:
    epoch_at_power_on: int  # the epoch second at virtual time 0

    def now_s(self, now_ms: int) -> int:
        return self.epoch_at_power_on + now_ms // 1000

    def set_now(self, epoch_s: int, now_ms: int) -> int:
        """Make ``now_ms`` be ``epoch_s``; returns the new epoch at virtual time 0."""
        self.epoch_at_power_on = epoch_s - now_ms // 1000
        return self.epoch_at_power_on
