"""libgnss: the firmware's NMEA parser, fed by ``libgnss.parse`` or by a bound UART.

Written from the LuatOS API documentation of libgnss and the behaviour of its C library
(components/minmea: luat_lib_libgnss.c over luat_gnss.c and minmea), docs/defaults.md, "libgnss".
The receiver on the bench is platform/gnss.py; sentence rules are nmea.py.

What a script can tell apart, and is therefore kept:

- Input is a byte stream: a line ends at LF, a partial line waits for the next chunk (parse and
  bind share one 120-byte line buffer, which starts over when it overflows). Lines that fail
  the checksum, are not ``$`` sentences or are of an unknown type are dropped without a word.
- RMC drives the fix: a valid RMC stores the frame; the first one after no fix logs
  ``Fixed <lat> <lng>`` and publishes ``GNSS_STATE`` ``FIXED`` with the ms tick; an invalid RMC
  after a fix logs ``Lose`` and publishes ``LOSE``. An invalid RMC keeps the last position
  (only ``valid`` drops), so ``locStr`` still reports it.
- GGA, GLL, VTG, ZDA and TXT are stored as text and parsed when read; GSA and GSV are kept per
  sentence with their arrival time and read only while fresh (GSA 1 s / 1.5 s, GSV 3.5 s).
- Numbers keep minmea's fixed point and the firmware's single-precision conversions; an empty
  or zero field reads as the integer 0.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..cfunc import opt_integer
from ..nmea import Clock, Date, Fixed, f32, scan, sentence_type
from .zbuff import ZBuff

if TYPE_CHECKING:
    from ..vm import Boot

TAG = "gnss"
LINE_BUFFER = 120  # the stream's line buffer (luat_gnss.c)
# Longest line parsed, and the sentence slots kept: UNCONFIRMED for current firmware
# (docs/defaults.md); the values of the last published header.
MAX_LINE = 82 + 2
GSA_SLOTS = 6
GSV_SLOTS = 5
READ_CHUNK = 2047  # what one UART read takes (RECV_BUFF_SIZE - 1)
RTC_RESET_MS = 600_000  # rtcAuto sets the clock again after this long without a new fix
UART_IDS = frozenset({0, 1, 2})


@dataclass
class Stored:
    """One sentence as the firmware keeps it: the text and the tick it arrived at (0: cleared)."""

    text: str = ""
    tm: int = 0

    def fresh(self, timeout_ms: int, now: int) -> bool:
        return self.tm != 0 and now - self.tm <= timeout_ms


@dataclass
class Rmc:
    valid: bool = False
    lat: Fixed = Fixed()
    lng: Fixed = Fixed()
    speed: Fixed = Fixed()
    course: Fixed = Fixed()
    variation: Fixed = Fixed()
    date: Date = Date(0, 0, 0)  # the zeroed C struct
    time: Clock = Clock(0, 0, 0, 0)


@dataclass
class GnssState:
    """The library's C state: one per boot."""

    rmc: Rmc = field(default_factory=Rmc)
    fix_at: int = 0  # tick of the last valid RMC; 0 while there is no fix
    rtc_auto: bool = False
    debug: bool = False
    lines: dict[str, Stored | None] = field(default_factory=lambda: dict.fromkeys(
        ("RMC", "GGA", "GLL", "GST", "VTG", "ZDA", "TXT")))
    gsa: list[Stored | None] = field(default_factory=lambda: [None] * GSA_SLOTS)
    gsa_next: int = 0
    gsv: list[Stored | None] = field(default_factory=lambda: [None] * GSV_SLOTS)
    partial: bytearray = field(default_factory=bytearray)
    callbacks: dict[str, Any] = field(default_factory=dict)  # "raw", "txt", "other"
    route_uart: int = -1

    def clear(self) -> None:
        """libgnss.clear: the frame and every stored sentence, not the fix tick or settings."""
        self.rmc = Rmc()
        for key, kept in self.lines.items():
            if kept is not None:
                self.lines[key] = Stored()
        self.gsa = [Stored() if s is not None else None for s in self.gsa]
        self.gsv = [Stored() if s is not None else None for s in self.gsv]


def datetime_of(date: Date, clock: Clock) -> tuple[int, int, int, int, int, int]:
    """minmea_getdatetime as the getters show it: all zero (month 1) when date or time is
    missing; a two-digit year below 80 is 20xx."""
    if date.year == -1 or clock.hours == -1:
        return 0, 1, 0, 0, 0, 0
    year = date.year
    if year < 80:
        year += 2000
    elif year < 1900:
        year += 1900
    return year, date.month, date.day, clock.hours, clock.minutes, clock.seconds


def gnss_value(f: Fixed | None, mode: int) -> int | float:
    """push_gnss_value: 0 for an empty or zero field; mode 0 the number, 1 degrees x 10^7
    (integer), 2 and others decimal degrees."""
    if f is None or f.value == 0:
        return 0
    if mode == 0:
        return f.to_float()
    if mode == 1:
        return f.to_coord_e7()
    return f.to_coord()


def _fixed(v: object) -> Fixed:
    return v if isinstance(v, Fixed) else Fixed()


def _int(v: object) -> int:
    return v if isinstance(v, int) else 0


def _char(v: object) -> bytes:
    return v.encode("latin-1") if isinstance(v, str) and v else b"\x00"


def _tail(buf: bytearray) -> bytearray:
    n = len(buf)
    return buf if n <= LINE_BUFFER else buf[n - ((n - 1) % LINE_BUFFER + 1):]


def install(boot: Boot) -> None:
    st = GnssState()
    bus = boot.platform.uart

    def publish(event: bytes) -> None:
        ticks = boot.now

        def deliver() -> None:
            if boot.lua_type(boot.G[b"sys_pub"]) == b"function":
                boot.sys_pub(b"GNSS_STATE", event, ticks)
        boot.post(0, deliver)

    def call_back(kind: str, data: bytes) -> None:
        fn = st.callbacks.get(kind)
        if fn is not None:
            boot.post(0, fn, data)

    # -- parsing ---------------------------------------------------------------------------------

    def on_rmc(line: str) -> None:
        values, ok = scan(line, "TcfdfdffDfd")
        if not ok:
            return
        (clock, validity, lat, lat_dir, lng, lng_dir, speed, course, date, variation,
         var_dir) = values
        st.lines["RMC"] = Stored(line, boot.now)
        assert isinstance(clock, Clock) and isinstance(date, Date)
        if validity == "A":
            st.rmc = Rmc(True, _fixed(lat).signed(_int(lat_dir)),
                         _fixed(lng).signed(_int(lng_dir)), _fixed(speed), _fixed(course),
                         _fixed(variation).signed(_int(var_dir)), date, clock)
            now = boot.now
            if st.rtc_auto and (st.fix_at == 0 or now - st.fix_at > RTC_RESET_MS):
                boot.log_c("I", TAG, "Auto-Set RTC by GNSS RMC")
                set_rtc(datetime_of(date, clock))
            if st.fix_at == 0:
                boot.log_c("I", TAG, f"Fixed {st.rmc.lat.value} {st.rmc.lng.value}")
                publish(b"FIXED")
            st.fix_at = now or 1
        else:
            if st.fix_at and st.rmc.valid:
                boot.log_c("I", TAG, "Lose")
                publish(b"LOSE")
            st.fix_at = 0
            st.rmc.valid = False
            st.rmc.date, st.rmc.time = date, clock

    def set_rtc(dt: tuple[int, int, int, int, int, int]) -> None:
        try:
            epoch = calendar.timegm((*dt, 0, 0, 0))
        except (ValueError, OverflowError):
            return
        boot.RT.set_epoch(boot.platform.rtc.set_now(epoch, boot.now))
        boot.trace("rtc_set", epoch=epoch, by="libgnss")

    def on_gsa(line: str) -> None:
        if not scan(line, "ciiiiiiiiiiiiifff;i")[1]:
            return
        now = boot.now
        st.gsa[st.gsa_next] = Stored(line, now)
        st.gsa_next = (st.gsa_next + 1) % GSA_SLOTS
        for i, slot in enumerate(st.gsa):
            if slot is not None and slot.text and now - slot.tm > 950:
                st.gsa[i] = Stored()

    def on_gsv(line: str) -> None:
        values, ok = scan(line, "iii;iiiiiiiiiiiiiiii")
        if not ok:
            return
        if values[1] == 1:  # a new cycle of this talker: forget its previous one
            for i, slot in enumerate(st.gsv):
                if slot is not None and slot.text and slot.text[:6] == line[:6]:
                    st.gsv[i] = Stored()
        for i, slot in enumerate(st.gsv):
            if slot is None or not slot.text:
                st.gsv[i] = Stored(line, boot.now)
                break

    def parse_line(raw: bytes) -> None:
        raw = raw.split(b"\0", 1)[0]
        if len(raw) > MAX_LINE - 1:
            return
        line = raw.decode("latin-1")
        kind = sentence_type(line)
        if not kind:  # dropped, or a type the firmware does not know
            return
        if kind == "RMC":
            on_rmc(line)
        elif kind == "GSA":
            on_gsa(line)
        elif kind == "GSV":
            on_gsv(line)
        elif kind == "TXT":
            call_back("txt", raw)
            st.lines["TXT"] = Stored(line, boot.now)
        elif kind in st.lines:
            st.lines[kind] = Stored(line, boot.now)
        else:
            call_back("other", raw)

    def parse_data(data: bytes) -> None:
        # The firmware's line buffer: bytes up to LF; one that would be the 121st starts the
        # buffer over, so an overlong run keeps only its tail.
        buf = st.partial
        if b"\0" in buf:
            del buf[buf.index(b"\0"):]
        *lines, rest = data.split(b"\n")
        for segment in lines:
            buf += segment
            parse_line(bytes(_tail(buf)))
            buf.clear()
        buf += rest
        kept = _tail(buf)
        if len(kept) != len(buf):
            st.partial = bytearray(kept)

    def uart_received(uid: int) -> None:
        while True:
            chunk = bus.read(uid, READ_CHUNK)
            if not chunk:
                return
            if st.route_uart > 0:
                bus.transmit(st.route_uart, chunk, boot.now)
            call_back("raw", chunk)
            if st.debug:
                boot.log_c("D", TAG, ">> " + chunk.decode("latin-1"))
            parse_data(chunk)

    # -- the Lua functions -----------------------------------------------------------------------

    def parse(data: Any = None, *_: Any) -> None:
        if isinstance(data, bytes):
            parse_data(data)
        elif isinstance(data, ZBuff):
            parse_data(data.query())  # its used part

    def is_fix(*_: Any) -> bool:
        return st.rmc.valid

    def get_int_location(speed_type: Any = None, *_: Any) -> tuple[Any, Any, Any]:
        if not st.rmc.valid:
            return 0, 0, 0
        mode = opt_integer(speed_type, 0, 1, "getIntLocation")
        knots = st.rmc.speed.to_float()
        speed: int | float
        if mode == 1:
            speed = f32(f32(knots * 1852) / 3600)
        elif mode == 2:
            speed = knots * 1.852
        elif mode == 3:
            speed = knots
        else:
            speed = int(f32(knots * 1852))
        return st.rmc.lat.value, st.rmc.lng.value, speed

    def get_rmc(data_mode: Any = None, *_: Any) -> Any:
        mode = opt_integer(data_mode, 0, 1, "getRmc")
        if mode == 3:
            kept = st.lines["RMC"]
            return kept.text.encode("latin-1") if kept is not None else None
        r = st.rmc
        year, month, day, hour, minute, sec = datetime_of(r.date, r.time)
        return boot.table(
            valid=r.valid,
            lat=gnss_value(r.lat, mode) if r.valid else 0,
            lng=gnss_value(r.lng, mode) if r.valid else 0,
            speed=gnss_value(r.speed, 0) if r.valid else 0,
            course=gnss_value(r.course, 0) if r.valid else 0,
            variation=gnss_value(r.variation, 0) if r.valid else 0,
            year=year, month=month, day=day, hour=hour, min=minute, sec=sec)

    def get_gsv(*_: Any) -> Any:
        now = boot.now
        sats = boot.table()
        count = 0
        for slot in st.gsv:
            if slot is None or not slot.fresh(3500, now):
                continue
            values, ok = scan(slot.text, "iii;iiiiiiiiiiiiiiii")
            if not ok:
                continue
            tp = {"GP": 0, "GL": 2, "GA": 3, "BD": 1, "GB": 1, "QZ": 4}.get(slot.text[1:3], 0)
            for j in range(4):
                nr, elevation, azimuth, snr = (_int(v) for v in values[3 + 4 * j: 7 + 4 * j])
                if not nr:
                    continue
                count += 1
                sats[count] = boot.table(nr=nr, snr=snr, elevation=elevation,
                                         azimuth=azimuth, tp=tp, tpstr=slot.text[1:3])
        return boot.table(sats=sats, total_sats=count)

    def gsa_fields(values: list[object]) -> dict[str, Any]:
        return {"fix_type": _int(values[1]), "pdop": gnss_value(_fixed(values[14]), 0),
                "hdop": gnss_value(_fixed(values[15]), 0),
                "vdop": gnss_value(_fixed(values[16]), 0), "sysid": _int(values[17])}

    def gsa_sats(values: list[object]) -> list[int]:
        return [n for n in (_int(v) for v in values[2:14]) if n]

    def get_gsa(data_mode: Any = None, *_: Any) -> Any:
        mode = opt_integer(data_mode, 0, 1, "getGsa")
        now = boot.now
        parsed = []
        for slot in st.gsa:
            if slot is None or not slot.text:
                continue
            values, ok = scan(slot.text, "ciiiiiiiiiiiiifff;i")
            if ok:
                parsed.append((slot, values))
        if mode == 1:
            out = boot.table()
            for n, (_slot, values) in enumerate(
                    ((s, v) for s, v in parsed if now - s.tm <= 1000), 1):
                out[n] = boot.table(**gsa_fields(values), sats=boot.table(*gsa_sats(values)))
            return out
        head: dict[str, Any] = {}
        for slot, values in parsed:
            if slot.fresh(1500, now):
                head = gsa_fields(values)
                break
        used = [n for slot, values in parsed if now - slot.tm <= 1000
                for n in gsa_sats(values)]
        return boot.table(**head, sats=boot.table(*used))

    def stored(kind: str) -> Stored | None:
        return st.lines[kind]

    def get_vtg(data_mode: Any = None, *_: Any) -> Any:
        mode = opt_integer(data_mode, 0, 1, "getVtg")
        kept = stored("VTG")
        if kept is None:
            return None
        if mode == 3:
            return kept.text.encode("latin-1")
        values, _ok = scan(kept.text, ";fcfcfcfcc")
        units = ("T", "M", "N", "K")
        nums = []
        for k in range(4):
            num = _fixed(values[2 * k])
            if values[2 * k + 1] != units[k]:
                num = Fixed(num.value, 0)  # a value without its unit letter does not count
            nums.append(gnss_value(num, 0))
        return boot.table(true_track_degrees=nums[0], magnetic_track_degrees=nums[1],
                          speed_knots=nums[2], speed_kph=nums[3])

    def get_gga(data_mode: Any = None, *_: Any) -> Any:
        mode = opt_integer(data_mode, 0, 1, "getGga")
        kept = stored("GGA")
        if kept is None:
            return None
        if mode == 3:
            return kept.text.encode("latin-1")
        v, _ok = scan(kept.text, "Tfdfdiiffcfcf_")
        return boot.table(
            altitude=gnss_value(_fixed(v[8]), 0),
            latitude=gnss_value(_fixed(v[1]).signed(_int(v[2])), mode),
            longitude=gnss_value(_fixed(v[3]).signed(_int(v[4])), mode),
            fix_quality=_int(v[5]), satellites_tracked=_int(v[6]),
            hdop=gnss_value(_fixed(v[7]), 0), height=gnss_value(_fixed(v[10]), 0),
            dgps_age=gnss_value(_fixed(v[12]), 0))

    def get_gll(data_mode: Any = None, *_: Any) -> Any:
        mode = opt_integer(data_mode, 0, 1, "getGll")
        kept = stored("GLL")
        if kept is None:
            return None
        if mode == 3:  # the firmware hands back the VTG text here
            vtg = stored("VTG")
            return vtg.text.encode("latin-1") if vtg is not None else None
        v, _ok = scan(kept.text, "fdfdTc;c")
        clock = v[4] if isinstance(v[4], Clock) else Clock(0, 0, 0, 0)
        return boot.table(
            latitude=gnss_value(_fixed(v[0]).signed(_int(v[1])), mode),
            longitude=gnss_value(_fixed(v[2]).signed(_int(v[3])), mode),
            mode=_char(v[6]), status=_char(v[5]), hour=clock.hours, us=clock.microseconds,
            min=clock.minutes, sec=clock.seconds)

    def get_zda(*_: Any) -> Any:
        kept = stored("ZDA")
        if kept is None:
            return boot.table()
        v, _ok = scan(kept.text, "Tiiiii")
        clock = v[0] if isinstance(v[0], Clock) else Clock(0, 0, 0, 0)
        date = Date(_int(v[1]), _int(v[2]), _int(v[3]))
        year, month, day, hour, minute, sec = datetime_of(date, clock)
        return boot.table(hour_offset=_int(v[4]), minute_offset=_int(v[5]), year=year,
                          month=month, day=day, hour=hour, min=minute, sec=sec)

    def get_txt(*_: Any) -> bytes:
        kept = stored("TXT")
        if kept is None:
            return b""
        v, _ok = scan(kept.text, "___s")
        return str(v[3] or "").encode("latin-1")

    def loc_str(mode: Any = None, *_: Any) -> bytes:
        m = opt_integer(mode, 0, 1, "locStr")
        lat, lng = st.rmc.lat, st.rmc.lng
        if m == 0:
            lat_f, lng_f = lat.to_float(), lng.to_float()
            return (f"{abs(lat_f):.7g},{'N' if lat_f > 0 else 'S'},"
                    f"{abs(lng_f):.7g},{'E' if lng_f > 0 else 'W'},1.0").encode()
        if m == 1:
            return f"{lat.value},{lng.value}".encode()
        return b""

    def rtc_auto(enable: Any = None, *_: Any) -> None:
        st.rtc_auto = enable is True
        boot.log_c("D", TAG, f"GNSS->RTC Auto-Set now is {'ON' if st.rtc_auto else 'OFF'}")

    def debug(enable: Any = None, *_: Any) -> None:
        st.debug = enable is True
        boot.log_c("D", TAG, "Debug ON" if st.debug else "Debug OFF")

    def clear(*_: Any) -> None:
        st.clear()

    def bind(uart_id: Any = None, next_id: Any = None, *_: Any) -> None:
        if isinstance(uart_id, bool) or not isinstance(uart_id, int | float) or \
                (isinstance(uart_id, float) and not uart_id.is_integer()):
            raise TypeError(f"bad argument #1 to 'bind' (number expected, got "
                            f"{boot.lua_type(uart_id).decode()})")
        uid = int(uart_id)
        st.clear()
        if uid in UART_IDS:
            bus.app_receivers[uid] = lambda: uart_received(uid)
        if isinstance(next_id, int) and not isinstance(next_id, bool):
            st.route_uart = next_id

    def on(kind: Any = None, fn: Any = None, *_: Any) -> None:
        if not isinstance(kind, bytes):
            raise TypeError(f"bad argument #1 to 'on' (string expected, got "
                            f"{boot.lua_type(kind).decode()})")
        name = kind.decode("latin-1")
        if name in ("raw", "txt", "other"):
            st.callbacks.pop(name, None)
            if boot.lua_type(fn) == b"function":
                st.callbacks[name] = fn

    boot.firmware_module("libgnss", {
        "parse": parse, "isFix": is_fix, "getIntLocation": get_int_location,
        "getRmc": get_rmc, "getGsv": get_gsv, "getGsa": get_gsa, "getVtg": get_vtg,
        "getGga": get_gga, "getGll": get_gll, "getZda": get_zda, "getTxt": get_txt,
        "locStr": loc_str, "rtcAuto": rtc_auto, "debug": debug, "clear": clear, "bind": bind,
        "on": on,
    })
