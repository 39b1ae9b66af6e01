"""The real-time clock: which epoch second virtual time 0 of this device is, and the time zone
the firmware's C ``localtime`` works in.

The epoch outlives a boot (``rtc.set`` survives a soft reboot, as the RTC keeps running); each
boot's ``os.time()`` reads it at start, and the rtc binding moves it. The zone is per boot
(``rtc.timezone`` sets it; ``Platform.begin_boot`` puts it back to UTC+8)."""

from __future__ import annotations

from dataclasses import dataclass

# Quarter hours east of UTC until rtc.timezone sets another (docs/defaults.md: UTC+8).
DEFAULT_ZONE_QUARTERS = 32


@dataclass
class RtcClock:
    epoch_at_power_on: int  # the epoch second at virtual time 0
    zone_quarters: int = DEFAULT_ZONE_QUARTERS  # rtc.timezone()

    def local_offset_s(self) -> int:
        """Seconds to add to a UTC epoch for the firmware's ``localtime``."""
        return self.zone_quarters * 900

    def now_s(self, now_ms: int) -> int:
        return self.epoch_at_power_on + now_ms // 1000

    def set_now(self, epoch_s: int, now_ms: int) -> int:
        """Make ``now_ms`` be ``epoch_s``; returns the new epoch at virtual time 0."""
        self.epoch_at_power_on = epoch_s - now_ms // 1000
        return self.epoch_at_power_on
