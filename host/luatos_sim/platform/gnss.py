"""The GNSS part: a receiver wired to one UART, talking NMEA once a second in virtual time.

An Air780EG or Air8000 carries its GNSS receiver on a UART (the vendor's demos use UART 2 at
115200 baud); the script reads it with ``libgnss.bind(uart_id)`` or feeds ``libgnss.parse``
itself. A test puts a receiver on the bench and scripts what the sky gives it::

    rx = dev.gnss.attach(uart=2)                  # no fix until told otherwise
    rx.track([("30s", Fix(23.4067, 113.2311)),    # a fix 30 s from now
              ("5m", NO_FIX)])                    # lost again at 5 min

Every whole UTC second while a boot runs, the receiver sends one burst: GGA, GLL, GSA (one per
constellation), GSV (GPS and BeiDou), RMC, VTG, ZDA, each with its checksum, the time from the
virtual clock (``Device.epoch_at_power_on`` + virtual time: GNSS time is the sky's, not the
device's RTC). With a fix that has a speed, the position moves along the course each second.
Bytes reach the script only if it opened the UART, at the receiver's baud rate (at another
rate it reads line noise, as on a board). With nothing attached a UART gets nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING

from ..clock import ScheduledEvent
from ..duration import Duration
from ..nmea import sentence

if TYPE_CHECKING:
    from ..device import Device
    from .uart import UartBus

KNOTS_PER_KMH = 1 / 1.852
EARTH_RADIUS_M = 6_371_000.0
# Below this speed the receivers the vendor ships leave the course empty (libgnss.getVtg docs:
# "Air780EG and Air510U do not give the direction below 5 km/h").
COURSE_MIN_KMH = 5.0


@dataclass(frozen=True)
class Fix:
    """What the receiver reports while it has a fix. Degrees (WGS84, south / west negative),
    km/h, degrees from true north, metres above the geoid."""

    lat: float
    lng: float
    speed_kmh: float = 0.0
    course: float = 0.0
    altitude: float = 30.0
    satellites: int = 9  # used in the fix
    hdop: float = 0.9


NO_FIX: Fix | None = None

# The sky: (system, PRN, elevation, azimuth, SNR with a fix). Without a fix the same
# satellites are in view with weak signals.
_GPS = [(3, 42, 67, 35), (6, 55, 311, 38), (9, 20, 102, 31), (14, 33, 207, 29),
        (17, 71, 5, 41), (19, 48, 140, 36), (22, 12, 245, 24), (28, 39, 180, 33)]
_BDS = [(6, 58, 12, 37), (9, 44, 220, 34), (16, 66, 170, 40), (21, 25, 298, 27),
        (26, 31, 80, 30), (38, 15, 330, 22)]


def _ddmm(value: float, deg_digits: int) -> str:
    v = abs(value)
    degrees = int(v)
    minutes = round((v - degrees) * 60, 5)
    if minutes >= 60:
        degrees, minutes = degrees + 1, 0.0
    return f"{degrees:0{deg_digits}d}{minutes:08.5f}"


def _gsv(talker: str, sats: list[tuple[int, int, int, int]], fixed: bool) -> list[bytes]:
    groups = [sats[i:i + 4] for i in range(0, len(sats), 4)]
    out = []
    for n, group in enumerate(groups, 1):
        parts = [f"{talker}GSV", str(len(groups)), str(n), f"{len(sats):02d}"]
        for prn, elev, az, snr in group:
            parts += [f"{prn:02d}", f"{elev:02d}", f"{az:03d}", f"{snr:02d}" if fixed else ""]
        out.append(sentence(",".join(parts)))
    return out


def _gsa(used: list[int], fixed: bool, hdop: float, system: int) -> bytes:
    slots = [f"{prn:02d}" for prn in used[:12]] + [""] * (12 - min(12, len(used)))
    dops = (f"{hdop * 1.4:.2f}", f"{hdop:.2f}", f"{hdop * 1.1:.2f}") if fixed \
        else ("99.99", "99.99", "99.99")
    return sentence(",".join(["GNGSA", "A", "3" if fixed else "1", *slots, *dops,
                              str(system)]))


def nmea_burst(epoch_s: int, fix: Fix | None) -> bytes:
    """One second of receiver output for the UTC second ``epoch_s``."""
    tm = time.gmtime(epoch_s)
    hms = f"{tm.tm_hour:02d}{tm.tm_min:02d}{tm.tm_sec:02d}.000"
    dmy = f"{tm.tm_mday:02d}{tm.tm_mon:02d}{tm.tm_year % 100:02d}"
    out: list[bytes] = []
    if fix is None:
        out.append(sentence(f"GNGGA,{hms},,,,,0,00,99.99,,,,,,"))
        out.append(sentence(f"GNGLL,,,,,{hms},V,N"))
        out.append(_gsa([], False, 0, 1))
        out.append(_gsa([], False, 0, 4))
        out += _gsv("GP", _GPS, False) + _gsv("BD", _BDS, False)
        out.append(sentence(f"GNRMC,{hms},V,,,,,,,{dmy},,,N,V"))
        out.append(sentence("GNVTG,,,,,,,,,N"))
    else:
        lat = _ddmm(fix.lat, 2)
        lng = _ddmm(fix.lng, 3)
        ns = "N" if fix.lat >= 0 else "S"
        ew = "E" if fix.lng >= 0 else "W"
        knots = fix.speed_kmh * KNOTS_PER_KMH
        course = f"{fix.course % 360:.2f}" if fix.speed_kmh >= COURSE_MIN_KMH else ""
        n_gps = min(len(_GPS), max(0, fix.satellites - fix.satellites // 3))
        n_bds = min(len(_BDS), max(0, fix.satellites - n_gps))
        out.append(sentence(f"GNGGA,{hms},{lat},{ns},{lng},{ew},1,{fix.satellites:02d},"
                            f"{fix.hdop:.2f},{fix.altitude:.1f},M,0.0,M,,"))
        out.append(sentence(f"GNGLL,{lat},{ns},{lng},{ew},{hms},A,A"))
        out.append(_gsa([s[0] for s in _GPS[:n_gps]], True, fix.hdop, 1))
        out.append(_gsa([s[0] for s in _BDS[:n_bds]], True, fix.hdop, 4))
        out += _gsv("GP", _GPS, True) + _gsv("BD", _BDS, True)
        out.append(sentence(f"GNRMC,{hms},A,{lat},{ns},{lng},{ew},{knots:.3f},{course},"
                            f"{dmy},,,A,V"))
        out.append(sentence(f"GNVTG,{course},T,,M,{knots:.3f},N,{fix.speed_kmh:.3f},K,A"))
    out.append(sentence(f"GNZDA,{hms},{tm.tm_mday:02d},{tm.tm_mon:02d},{tm.tm_year},00,00"))
    return b"".join(out)


def moved(fix: Fix, seconds: float) -> Fix:
    """Where ``fix`` is after ``seconds`` at its speed and course (a flat-earth step: the
    receiver moves at most a few tens of metres a second)."""
    if fix.speed_kmh <= 0:
        return fix
    dist = fix.speed_kmh / 3.6 * seconds
    heading = math.radians(fix.course)
    dlat = dist * math.cos(heading) / EARTH_RADIUS_M
    dlng = dist * math.sin(heading) / (EARTH_RADIUS_M * max(1e-9, math.cos(math.radians(fix.lat))))
    lat = max(-89.999999, min(89.999999, fix.lat + math.degrees(dlat)))  # no track over a pole
    lng = (fix.lng + math.degrees(dlng) + 180.0) % 360.0 - 180.0  # across the antimeridian
    return replace(fix, lat=lat, lng=lng)


@dataclass
class GnssReceiver:
    """One receiver on ``uart``. ``state`` is what it reports now (None: no fix)."""

    device: Device
    bus: UartBus
    uart: int
    baud: int = 115200
    state: Fix | None = None
    sent: int = 0  # bursts that reached an open port
    lost: int = 0  # bursts sent while the script had the port closed (between boots the
    # receiver is not run at all: nothing could hear it, and a sleeping device costs nothing)
    _generation: int = 0
    _changes: list[ScheduledEvent] = field(default_factory=list)
    _noted_baud: bool = False

    def set(self, state: Fix | None) -> None:
        """From the next burst on, report ``state`` (a :class:`Fix` or ``NO_FIX``)."""
        self.state = state

    def track(self, steps: Iterable[tuple[Duration, Fix | None]]) -> None:
        """Script the sky: each ``(when, state)`` takes effect ``when`` from now (``"30s"``);
        until the first step the current state holds. Replaces an earlier script."""
        for event in self._changes:
            event.cancel()
        self._changes = []
        for when, state in steps:
            self._changes.append(self.device.schedule(
                when, partial(self.set, state), f"gnss uart{self.uart} track"))

    # -- UartPeer: the receiver talks while a boot has the ports ---------------------------------

    def boot_started(self) -> None:
        self._generation += 1
        self._post_next(self._generation)

    def boot_ended(self) -> None:
        self._generation += 1  # the boot's event loop, and the posted burst, are gone

    def _epoch_ms(self, now_ms: int) -> int:
        return self.device.epoch_at_power_on * 1000 + now_ms

    def _post_next(self, generation: int) -> None:
        # The bursts run inside the boot's event loop (in order with its timers), posted one
        # at a time: a boot that ends takes the next one with it.
        boot = self.bus.boot
        if boot is None:
            return
        now = boot.now
        boot.post_at(now + 1000 - self._epoch_ms(now) % 1000, self._send, generation)

    def _send(self, generation: int) -> None:
        boot = self.bus.boot
        if generation != self._generation or boot is None:
            return
        burst = nmea_burst(self._epoch_ms(boot.now) // 1000, self.state)
        if self.state is not None:
            self.state = moved(self.state, 1.0)
        self._post_next(generation)
        opened_at = self.bus.port_baud(self.uart)
        if opened_at is not None and opened_at != self.baud:
            if not self._noted_baud:
                self._noted_baud = True
                self.device.emit_sim(f"gnss: the receiver on uart{self.uart} talks at "
                                     f"{self.baud} baud; the script opened it at {opened_at}: "
                                     f"it reads line noise")
            burst = bytes((b * 7 + 0x80) & 0xFF for b in burst[: len(burst) * opened_at
                                                             // self.baud + 1])
        if self.bus.receive(self.uart, burst, quiet=True):
            self.sent += 1
        else:
            self.lost += 1


@dataclass
class GnssBench:
    """``dev.gnss``: the GNSS receivers wired to the device's UARTs."""

    device: Device
    bus: UartBus
    receivers: dict[int, GnssReceiver] = field(default_factory=dict)

    def attach(self, uart: int = 2, baud: int = 115200) -> GnssReceiver:
        """Wire a receiver to ``uart`` (the vendor's boards: UART 2, 115200 baud). It starts
        without a fix; see :meth:`GnssReceiver.track`."""
        if uart in self.receivers:
            raise ValueError(f"a GNSS receiver is already attached to uart{uart}")
        rx = GnssReceiver(self.device, self.bus, uart, baud)
        self.receivers[uart] = rx
        self.bus.peers.append(rx)
        if self.bus.boot is not None:
            rx.boot_started()
        return rx

    def __call__(self, uart: int = 2) -> GnssReceiver:
        """The receiver on ``uart``."""
        return self.receivers[uart]
