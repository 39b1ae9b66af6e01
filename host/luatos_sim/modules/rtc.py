"""rtc: the real-time clock on the virtual clock (rtc.set moves os.time, alarms fire in
virtual time as ``RTC_IRQ``).

The clock is the device's: a set survives a soft reboot (the RTC keeps running). ``rtc.get`` and ``rtc.set`` work in UTC,
as the firmware's do; ``rtc.timezone`` stores the zone (``RtcClock.zone_quarters``): the script
reads it back, and C code that asks for local time (iotauth.iotda) uses it.
"""

from __future__ import annotations

import calendar
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..vm import Boot

_FIELDS = (b"year", b"mon", b"day", b"hour", b"min", b"sec")


def install(boot: Boot) -> None:
    clock = boot.platform.rtc
    set_epoch = boot.RT.set_epoch
    alarm_gen = [0]

    def now_s() -> int:
        return clock.now_s(boot.now)

    def seconds_of(t: Any) -> int | None:
        if isinstance(t, int | float) and not isinstance(t, bool):
            return int(t)
        if boot.lua_type(t) != b"table":
            return None
        vals = [t[k] for k in _FIELDS]
        if any(not isinstance(v, int | float) for v in vals):
            return None
        year, mon, day, hour, minute, sec = (int(v) for v in vals)
        try:
            return calendar.timegm((year, mon, day, hour, minute, sec, 0, 0, 0))
        except (ValueError, OverflowError):
            return None

    def rtc_set(t: Any = None, *_: Any) -> bool:
        sec = seconds_of(t)
        if sec is None:
            return False
        set_epoch(clock.set_now(sec, boot.now))
        boot.trace("rtc_set", epoch=sec)
        return True

    def rtc_get(*_: Any) -> Any:
        tm = time.gmtime(now_s())
        return boot.table(year=tm.tm_year, mon=tm.tm_mon, day=tm.tm_mday, hour=tm.tm_hour,
                          min=tm.tm_min, sec=tm.tm_sec)

    def timer_start(_id: Any = 0, t: Any = None, *_: Any) -> bool:
        at = seconds_of(t)
        if at is None or at <= now_s():
            return False
        alarm_gen[0] += 1
        gen = alarm_gen[0]

        def ring() -> None:
            if gen == alarm_gen[0]:
                boot.sys_pub(b"RTC_IRQ")
        boot.post((at - now_s()) * 1000, ring)
        return True

    def timer_stop(*_: Any) -> bool:
        alarm_gen[0] += 1
        return True

    def timezone(tz: Any = None, *_: Any) -> int:
        if isinstance(tz, int) and not isinstance(tz, bool) and -48 <= tz <= 56:
            clock.zone_quarters = tz
        return int(clock.zone_quarters)

    boot.firmware_module("rtc", {
        "set": rtc_set, "get": rtc_get, "timerStart": timer_start, "timerStop": timer_stop,
        "setBaseYear": lambda *_: None, "timezone": timezone,
    })
