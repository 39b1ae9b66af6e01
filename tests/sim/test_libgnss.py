"""libgnss over a simulated GNSS receiver on a UART, in virtual time (docs/defaults.md, "libgnss").

Expected numbers are worked out here from the NMEA text, not read back from the emulator:
checksums by an XOR over the bytes, coordinates from the DDMM.MMMMM fields.
"""

from __future__ import annotations

import json
import operator
import struct
from functools import reduce

import pytest

from luatos_sim import Device, DeviceOptions
from luatos_sim.platform.gnss import NO_FIX, Fix, moved, nmea_burst

EPOCH = 1_700_000_000  # 2023-11-14 22:13:20 UTC


def nmea(body: str) -> str:
    """A sentence with its checksum, computed independently of the emulator's."""
    return f"${body}*{reduce(operator.xor, body.encode('ascii'), 0):02X}\r\n"


def lua_str(text: str) -> str:
    """``text`` as a Lua string literal."""
    return '"' + "".join(f"\\{b}" for b in text.encode("latin-1")) + '"'


def f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def user(dev: Device, tag: str) -> list[str]:
    return [ln.split(" ", 1)[1] if " " in ln else "" for ln in dev.lines()
            if ln.startswith(f"I/user.{tag} ") or ln == f"I/user.{tag}"]


def events(dev: Device) -> list[tuple[str, int]]:
    out = []
    for line in user(dev, "state"):
        name, ticks = line.split()
        out.append((name, int(ticks)))
    return out


TRACKER = """
    PROJECT = "tracker"
    VERSION = "1.0.0"
    sys = require("sys")
    sys.subscribe("GNSS_STATE", function(event, ticks) log.info("state", event, ticks) end)
    sys.taskInit(function()
        uart.setup(2, 115200)
        libgnss.bind(2)
        log.info("boot_fix", libgnss.isFix())
        while not sys.waitUntil("GNSS_STATE", 60000) do
            log.info("waiting", libgnss.isFix())
        end
        log.info("fixed", libgnss.isFix())
        log.info("rmc2", json.encode(libgnss.getRmc(2)))
        log.info("rmc1", json.encode(libgnss.getRmc(1)))
        log.info("rmc0", json.encode(libgnss.getRmc(0)))
        log.info("int", libgnss.getIntLocation())
        log.info("int_kmh", libgnss.getIntLocation(2))
        log.info("gga", json.encode(libgnss.getGga(2)))
        log.info("gsa", json.encode(libgnss.getGsa()))
        log.info("gsv", libgnss.getGsv().total_sats)
        log.info("vtg", json.encode(libgnss.getVtg()))
        log.info("zda", json.encode(libgnss.getZda()))
        log.info("locstr", libgnss.locStr(0), libgnss.locStr(1))
    end)
    sys.run()
"""


def test_tracker_waits_for_fix_then_reads_the_track(boot):
    dev = boot(TRACKER, model="Air780E")
    rx = dev.gnss.attach(uart=2)
    rx.track([("30s", Fix(23.4067, 113.2311, speed_kmh=36.0, course=90.0, altitude=12.5))])
    dev.run_for("45s")

    # No fix for 30 s: nothing published, then exactly one FIXED in the burst at 30 s.
    assert user(dev, "boot_fix") == ["false"]
    assert [e for e, _ in events(dev)] == ["FIXED"]
    ticks = events(dev)[0][1]
    assert 30_000 <= ticks < 31_000
    assert user(dev, "fixed") == ["true"]
    fixed_lines = [r.text for r in dev.log if r.tag == "gnss"]
    # 23.4067 deg = 23 deg 24.40200 min; 113.2311 deg = 113 deg 13.86600 min
    assert fixed_lines == ["Fixed 232440200 1131386600"]

    rmc2 = json.loads(user(dev, "rmc2")[0])
    assert rmc2["valid"] is True
    assert rmc2["lat"] == pytest.approx(23.4067, abs=2e-6)  # single precision on the device
    assert rmc2["lng"] == pytest.approx(113.2311, abs=1e-5)
    assert rmc2["speed"] == pytest.approx(36 / 1.852, abs=1e-3)  # knots
    assert rmc2["course"] == pytest.approx(90.0)
    # the RMC read first after the FIXED event is the one of second 30 (22:13:50)
    assert (rmc2["year"], rmc2["month"], rmc2["day"]) == (2023, 11, 14)
    assert (rmc2["hour"], rmc2["min"], rmc2["sec"]) == (22, 13, 50)
    rmc1 = json.loads(user(dev, "rmc1")[0])
    # degrees x 10^7 as an integer (the minutes part goes through a float)
    assert isinstance(rmc1["lat"], int) and abs(rmc1["lat"] - 234067000) <= 2
    assert isinstance(rmc1["lng"], int) and abs(rmc1["lng"] - 1132311000) <= 8
    rmc0 = json.loads(user(dev, "rmc0")[0])
    # DDMM.MMMM as sent, through minmea_tofloat: (float)232440200 / (float)100000 loses the
    # last digits (float has 24 bits), so the device shows 2324.40186, not 2324.402
    assert rmc0["lat"] == pytest.approx(f32(f32(232440200) / f32(100000)), rel=1e-9)
    assert rmc0["lat"] != pytest.approx(2324.402, rel=1e-8)
    lat, lng, speed = (int(v) for v in user(dev, "int")[0].split())
    assert (lat, lng) == (232440200, 1131386600)
    assert speed == int(f32(f32(round(36 / 1.852, 3)) * 1852))  # m/h from the knots field
    assert float(user(dev, "int_kmh")[0].split()[2]) == pytest.approx(36.0, abs=1e-3)

    gga = json.loads(user(dev, "gga")[0])
    assert gga["fix_quality"] == 1 and gga["satellites_tracked"] == 9
    assert gga["altitude"] == pytest.approx(12.5)
    assert gga["latitude"] == pytest.approx(23.4067, abs=2e-6)
    gsa = json.loads(user(dev, "gsa")[0])
    assert gsa["fix_type"] == 3 and len(gsa["sats"]) == 9
    assert int(user(dev, "gsv")[0]) == 14
    vtg = json.loads(user(dev, "vtg")[0])
    assert vtg["speed_kph"] == pytest.approx(36.0) and vtg["true_track_degrees"] == 90
    zda = json.loads(user(dev, "zda")[0])
    assert (zda["year"], zda["month"], zda["day"], zda["hour_offset"]) == (2023, 11, 14, 0)
    assert user(dev, "locstr") == ["2324.402,N,11313.87,E,1.0 232440200,1131386600"]
    assert rx.sent == 45 and rx.lost == 0  # one burst a second, from the first second on


def test_no_fix_means_no_event_and_receiver_time_only(boot):
    dev = boot("""
        sys = require("sys")
        sys.subscribe("GNSS_STATE", function(event, ticks) log.info("state", event, ticks) end)
        sys.taskInit(function()
            uart.setup(2, 115200)
            libgnss.bind(2)
            sys.wait(60000)
            log.info("fix", libgnss.isFix(), libgnss.getIntLocation())
            local rmc = libgnss.getRmc(2)
            log.info("rmc", rmc.valid, rmc.lat, rmc.lng, rmc.year, rmc.hour, rmc.min, rmc.sec)
            log.info("gga", libgnss.getGga().fix_quality, libgnss.getGsa().fix_type)
            log.info("snr", libgnss.getGsv().sats[1].snr)
        end)
        sys.run()
    """, model="Air8000")
    dev.gnss.attach(uart=2)
    dev.run_for("61s")
    assert events(dev) == []
    assert user(dev, "fix") == ["false 0 0 0"]
    # the no-fix RMC carries the receiver's clock: 22:13:20 + 60 s
    assert user(dev, "rmc") == ["false 0 0 2023 22 14 20"]
    assert user(dev, "gga") == ["0 1"]
    assert user(dev, "snr") == ["0"]  # in view, not tracked


def test_nothing_attached_gets_nothing(boot):
    dev = boot("""
        sys = require("sys")
        sys.taskInit(function()
            uart.setup(2, 115200)
            libgnss.bind(2)
            sys.wait(10000)
            local rmc = libgnss.getRmc()
            log.info("rmc", rmc.valid, rmc.lat, rmc.year, rmc.month, rmc.day)
            log.info("rest", libgnss.isFix(), libgnss.getGga(), libgnss.getVtg(), uart.rxSize(2))
            log.info("zda", json.encode(libgnss.getZda()), libgnss.getGsv().total_sats)
        end)
        sys.run()
    """, model="Air780E")
    dev.run_for("11s")
    # the zeroed C frame: year 2000, month 0
    assert user(dev, "rmc") == ["false 0 2000 0 0"]
    assert user(dev, "rest") == ["false nil nil 0"]
    assert user(dev, "zda") == ["{} 0"]
    assert not any(e.kind == "uart_rx" for e in dev.trace)


def test_parse_hand_written_sentences(boot):
    rmc_south = "$GPRMC,081836,A,3751.65,S,14507.36,E,000.0,360.0,130998,011.3,E*62\r\n"
    gga = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"
    rmc_north = nmea("GNRMC,080313.00,A,2324.40756,N,11313.86184,E,0.284,,010720,,,A")
    dev = boot(f"""
        sys = require("sys")
        sys.subscribe("GNSS_STATE", function(event) log.info("state", event, 0) end)
        sys.taskInit(function()
            libgnss.parse({lua_str(gga)})
            local g = libgnss.getGga(2)
            log.info("gga", g.latitude, g.longitude, g.altitude, g.height, g.satellites_tracked)
            log.info("ggaraw", libgnss.getGga(3))
            libgnss.parse({lua_str(rmc_south)})
            local r = libgnss.getRmc(2)
            log.info("south", r.valid, r.lat, r.lng, r.year, r.month, r.day, r.variation)
            log.info("south1", libgnss.getRmc(1).lat, libgnss.getRmc(0).lat)
            -- a sentence split across two calls, as UART reads split it
            libgnss.parse({lua_str(rmc_north[:30])})
            log.info("half", libgnss.getIntLocation())
            libgnss.parse({lua_str(rmc_north[30:])})
            log.info("whole", libgnss.getIntLocation())
            log.info("str", libgnss.locStr(0), libgnss.locStr(1), libgnss.locStr(7) == "")
            sys.wait(10)
        end)
        sys.run()
    """, model="Air780E")
    dev.run_for("2s")
    lat, lng, alt, height, sats = user(dev, "gga")[0].split()
    assert float(lat) == pytest.approx(48 + 7.038 / 60, abs=1e-5)
    assert float(lng) == pytest.approx(11 + 31 / 60, abs=1e-5)
    assert (float(alt), float(height), sats) == (pytest.approx(545.4), pytest.approx(46.9), "8")
    assert user(dev, "ggaraw") == [gga.rstrip("\n")]  # mode 3: the stored line, CR and all
    south = user(dev, "south")[0].split()
    assert south[0] == "true"
    assert float(south[1]) == pytest.approx(-(37 + 51.65 / 60), abs=1e-5)
    assert float(south[2]) == pytest.approx(145 + 7.36 / 60, abs=1e-5)
    assert south[3:6] == ["1998", "9", "13"]
    assert float(south[6]) == pytest.approx(11.3)
    # mode 1 of a southern latitude: -37 x 10^7 as a uint32 (the minutes part saturates to 0)
    assert user(dev, "south1")[0].split()[0] == str((-37 * 10**7) % 2**32)
    assert float(user(dev, "south1")[0].split()[1]) == pytest.approx(-3751.65, abs=1e-3)
    # the half line changed nothing: still the southern fix
    assert user(dev, "half") == ["-375165 1450736 0"]
    # speed 0.284 kn -> (int)(0.284 * 1852) m/h
    assert user(dev, "whole") == [f"232440756 1131386184 {int(f32(f32(0.284) * 1852))}"]
    # locStr(0): "%.7g" of the raw DDMM.MMMMM floats (single precision)
    lat_f = f32(f32(232440756) / f32(100000))
    lng_f = f32(f32(1131386184) / f32(100000))
    assert f"{lat_f:.7g}" == "2324.407"  # 2324.40756 does not survive the float
    assert user(dev, "str") == [f"{lat_f:.7g},N,{lng_f:.7g},E,1.0 232440756,1131386184 true"]
    assert events(dev) == [("FIXED", 0)]  # the second valid RMC is not a new fix


def test_bad_sentences_are_ignored_without_a_traceback(boot):
    good = nmea("GNRMC,101010.00,A,3000.00000,N,12000.00000,E,1.000,45.0,020324,,,A")
    body, _, tail = good.partition("*")
    wrong = f"{body}*{int(tail[:2], 16) ^ 0x01:02X}\r\n"
    assert wrong != good  # the checksum differs in its last bit
    no_sum = body + "\r\n"
    dev = boot(f"""
        sys = require("sys")
        sys.taskInit(function()
            libgnss.parse({lua_str(wrong)})
            log.info("wrong", libgnss.isFix())
            libgnss.parse("\\0\\255garbage\\r\\n$$$,,*ZZ\\r\\n$GPRMC,,A,1,N*\\r\\n" .. string.rep("x", 500) .. "\\n")
            libgnss.parse(nil) libgnss.parse(42) libgnss.parse("")
            log.info("garbage", libgnss.isFix())
            libgnss.parse({lua_str(wrong.replace(",A,", ",A,,", 1))})
            log.info("fields", libgnss.isFix())
            libgnss.parse({lua_str(no_sum)})
            log.info("nosum", libgnss.isFix())
            libgnss.parse({lua_str(good)})
            log.info("good", libgnss.isFix(), libgnss.getIntLocation())
            log.info("badarg", pcall(libgnss.getRmc, "x"))
        end)
        sys.run()
    """, model="Air780E")
    dev.run_for("1s")
    assert user(dev, "wrong") == ["false"]
    assert user(dev, "garbage") == ["false"]
    assert user(dev, "fields") == ["false"]
    # the checksum is optional in the firmware's (non-strict) check
    assert user(dev, "nosum") == ["true"]
    assert user(dev, "good") == ["true 300000000 1200000000 1852"]
    assert user(dev, "badarg")[0].startswith("false ")
    assert "number expected, got string" in user(dev, "badarg")[0]
    assert not any("Traceback" in r.text for r in dev.log)


def test_lost_fix_publishes_lose_and_keeps_the_last_position(boot):
    dev = boot("""
        sys = require("sys")
        sys.subscribe("GNSS_STATE", function(event, ticks) log.info("state", event, ticks) end)
        sys.taskInit(function()
            uart.setup(2, 115200)
            libgnss.bind(2)
            sys.waitUntil("GNSS_STATE")
            sys.waitUntil("GNSS_STATE")
            log.info("after", libgnss.isFix(), libgnss.getIntLocation())
            log.info("last", libgnss.locStr(1), libgnss.getRmc().valid)
        end)
        sys.run()
    """, model="Air780E")
    rx = dev.gnss.attach(uart=2)
    rx.track([("5s", Fix(-33.8568, 151.2153)), ("20s", NO_FIX), ("40s", Fix(1.0, 2.0))])
    dev.run_for("50s")
    names = [e for e, _ in events(dev)]
    assert names == ["FIXED", "LOSE", "FIXED"]
    t_fixed, t_lose = events(dev)[0][1], events(dev)[1][1]
    assert 5_000 <= t_fixed < 6_000 and 20_000 <= t_lose < 21_000
    assert user(dev, "after") == ["false 0 0 0"]
    # 33 deg 51.40800 min S, 151 deg 12.91800 min E
    assert user(dev, "last") == ["-335140800,1511291800 false"]
    assert [r.text for r in dev.log if r.tag == "gnss"] == [
        "Fixed -335140800 1511291800", "Lose", "Fixed 10000000 20000000"]


def test_rtc_auto_sets_the_clock_from_the_fix(boot):
    dev = boot("""
        sys = require("sys")
        sys.taskInit(function()
            rtc.set(946684800)   -- 2000-01-01: a clock that never synced
            uart.setup(2, 115200)
            libgnss.bind(2)
            libgnss.rtcAuto(true)
            sys.waitUntil("GNSS_STATE")
            sys.wait(100)
            log.info("time", os.time())
        end)
        sys.run()
    """, model="Air780E")
    dev.gnss.attach(uart=2).track([("10s", Fix(10.0, 20.0))])
    dev.run_for("12s")
    [t] = user(dev, "time")
    assert abs(int(t) - (EPOCH + 10)) <= 1
    assert "gnss:Auto-Set RTC by GNSS RMC" in dev.lines()
    assert "gnss:GNSS->RTC Auto-Set now is ON" in dev.lines()


def test_bind_raw_callback_route_and_debug(boot):
    dev = boot("""
        sys = require("sys")
        local raw = 0
        sys.taskInit(function()
            uart.setup(2, 115200)
            uart.setup(uart.VUART_0, 115200)
            libgnss.on("raw", function(data) raw = raw + #data end)
            libgnss.bind(2, uart.VUART_0)
            libgnss.debug(true)
            sys.wait(3500)
            log.info("raw", raw)
        end)
        sys.run()
    """, model="Air780E")
    rx = dev.gnss.attach(uart=2)
    dev.run_for("4500ms")
    # everything the receiver sent was forwarded to the virtual UART (next_id) and handed to
    # the raw callback
    routed = bytes(dev.uart.tx.get(32, b""))
    assert routed.startswith(b"$GNGGA,") and routed.count(b"$GNRMC,") == rx.sent == 4
    assert user(dev, "raw") == [str(len(routed))]
    assert "gnss:Debug ON" in dev.lines()
    assert sum(1 for r in dev.log if r.tag == "gnss" and r.text.startswith(">> $GNGGA")) == 4


def test_wrong_baud_reads_noise(boot):
    dev = boot("""
        sys = require("sys")
        sys.taskInit(function()
            uart.setup(2, 9600)
            libgnss.bind(2)
            sys.wait(5000)
            log.info("fix", libgnss.isFix(), libgnss.getGga())
        end)
        sys.run()
    """, model="Air780E")
    dev.gnss.attach(uart=2).set(Fix(1.0, 2.0))
    dev.run_for("6s")
    assert user(dev, "fix") == ["false nil"]
    assert any("115200 baud" in r.text for r in dev.log if r.tag == "luatos-sim")


@pytest.mark.parametrize("model,present", [("Air8101", False), ("Air780E", True),
                                           ("Air8000", True)])
def test_which_models_have_libgnss(boot, model, present):
    dev = boot("""
        log.info("has", type(libgnss), libgnss and type(libgnss.parse))
    """, model=model)
    dev.run_for("1s")
    assert user(dev, "has") == (["table function"] if present else ["nil nil"])


def test_receiver_sentences_are_well_formed():
    for fix in (None, Fix(-12.5, -77.25, speed_kmh=3.0), Fix(89.99999, 179.99999, 120.0, 359.9)):
        burst = nmea_burst(EPOCH, fix).decode("ascii")
        lines = burst.split("\r\n")
        assert lines[-1] == ""
        kinds = [ln[3:6] for ln in lines[:-1]]
        assert {"RMC", "GGA", "GSA", "GSV", "VTG", "ZDA"} <= set(kinds)
        for line in lines[:-1]:
            assert len(line) + 2 <= 82, line
            body, _, crc = line[1:].partition("*")
            assert line[0] == "$" and nmea(body) == line + "\r\n"
    rmc = [ln for ln in nmea_burst(EPOCH, Fix(-12.5, -77.25, speed_kmh=3.0)).decode().split()
           if ln.startswith("$GNRMC")][0]
    fields = rmc.split(",")
    assert fields[1:7] == ["221320.000", "A", "1230.00000", "S", "07715.00000", "W"]
    assert fields[8] == ""  # below 5 km/h the course stays empty
    assert fields[9] == "141123"


def test_gnss_bench_refuses_a_second_receiver_on_a_uart(boot):
    dev = boot("log.info('x')", model="Air780E")
    dev.gnss.attach(uart=2)
    with pytest.raises(ValueError, match="already attached to uart2"):
        dev.gnss.attach(uart=2)
    assert dev.gnss(2).uart == 2


def test_device_options_epoch_is_the_receivers_time(boot):
    dev = boot("""
        sys = require("sys")
        sys.taskInit(function()
            uart.setup(2, 115200)
            libgnss.bind(2)
            sys.wait(1500)
            local z = libgnss.getZda()
            log.info("zda", z.year, z.month, z.day, z.hour, z.min, z.sec)
            local r = libgnss.getRmc()
            log.info("rmc", r.year)
        end)
        sys.run()
    """, model="Air8000", options=DeviceOptions(epoch_at_power_on=0))
    dev.gnss.attach(uart=2)
    dev.run_for("3s")
    assert user(dev, "zda") == ["1970 1 1 0 0 2"]
    # RMC's two-digit year 70 is read as 2070 (below 80 is 20xx, as minmea does)
    assert user(dev, "rmc") == ["2070"]


def test_receiver_talks_to_each_boot_and_libgnss_starts_over(boot):
    dev = boot("""
        sys = require("sys")
        sys.subscribe("GNSS_STATE", function(event, ticks) log.info("state", event, ticks) end)
        sys.taskInit(function()
            log.info("start", libgnss.isFix())
            uart.setup(2, 115200)
            libgnss.bind(2)
            sys.waitUntil("GNSS_STATE")
            sys.wait(2000)
            rtos.reboot()
        end)
        sys.run()
    """, model="Air780E")
    rx = dev.gnss.attach(uart=2)
    rx.set(Fix(10.0, 20.0))
    dev.run_for("12s")
    # every boot starts without a fix and gets its own FIXED from the same receiver
    assert len(dev.boots) >= 2
    assert user(dev, "start")[:2] == ["false", "false"]
    assert [e for e, _ in events(dev)][:2] == ["FIXED", "FIXED"]
    assert rx.sent >= 8 and rx.lost == 0


def test_the_other_getters_and_clear(boot):
    txt = "$GPTXT,01,01,01,ANTENNA OK*35\r\n"  # the libgnss documentation's example
    assert nmea("GPTXT,01,01,01,ANTENNA OK") == txt
    gll = nmea("GNGLL,4916.45,N,12311.12,W,225444.50,A,A")
    zda = nmea("GPZDA,201530.00,04,07,2002,05,30")
    vtg = nmea("GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A")
    dev = boot(f"""
        sys = require("sys")
        sys.taskInit(function()
            libgnss.on("txt", function(line) log.info("txtcb", line) end)
            libgnss.parse({lua_str(txt + gll + zda + vtg)})
            log.info("txt", libgnss.getTxt())
            local g = libgnss.getGll(2)
            log.info("gll", g.latitude, g.longitude, g.status, g.mode, g.hour, g.min, g.sec, g.us)
            local z = libgnss.getZda()
            log.info("zda", z.year, z.month, z.day, z.hour, z.min, z.sec, z.hour_offset,
                     z.minute_offset)
            local v = libgnss.getVtg()
            log.info("vtg", v.true_track_degrees, v.magnetic_track_degrees, v.speed_knots,
                     v.speed_kph, #libgnss.getVtg(3))
            log.info("gsa_before", libgnss.getGsa(1)[1], #libgnss.getGsa().sats)
            uart.setup(2, 115200)
            libgnss.bind(2)   -- clears what parse stored
            log.info("cleared", libgnss.getTxt() == "", libgnss.getGga(), libgnss.getVtg(3) == "",
                     libgnss.getZda().year)
            sys.wait(1600)
            local sets = libgnss.getGsa(1)
            log.info("gsa1", #sets, sets[1].sysid, #sets[1].sats, sets[2].sysid, #sets[2].sats,
                     sets[1].fix_type)
        end)
        sys.run()
    """, model="Air780E")
    dev.gnss.attach(uart=2).set(Fix(1.0, 2.0, satellites=12))
    dev.run_for("3s")
    assert user(dev, "txt") == ["ANTENNA OK"]
    assert user(dev, "txtcb") == [txt.rstrip("\n")]
    lat, lng, *rest = user(dev, "gll")[0].split()
    assert float(lat) == pytest.approx(49 + 16.45 / 60, abs=1e-5)
    assert float(lng) == pytest.approx(-(123 + 11.12 / 60), abs=1e-5)
    assert rest == ["A", "A", "22", "54", "44", "500000"]
    assert user(dev, "zda") == ["2002 7 4 20 15 30 5 30"]
    t, m, kn, kph, raw_len = user(dev, "vtg")[0].split()
    assert (float(t), float(m), float(kn), float(kph)) == (
        pytest.approx(54.7), pytest.approx(34.4), pytest.approx(5.5), pytest.approx(10.2))
    assert int(raw_len) == len(vtg) - 1  # the stored line keeps its CR
    assert user(dev, "gsa_before") == ["nil 0"]
    # bind clears the stored sentences but keeps their slots: a getter parses the empty text
    # (getZda: the zeroed frame, year 2000), while getGga, never fed a GGA, is still nil
    assert user(dev, "cleared") == ["true nil true 2000"]
    # one GSA per constellation in the last second: 8 GPS + 4 BeiDou satellites used
    assert user(dev, "gsa1") == ["2 1 8 4 4 3"]


def test_oversized_and_malformed_number_fields_never_reach_the_script_as_python_errors(boot):
    """minmea reads an integer field with strtol: it saturates at the 32-bit long of the core,
    and a field with anything after its digits stops the scan there. A huge float field is no
    error either."""
    zda_big = nmea("GNZDA,123519.00,99999999999999999999,11,2024,00,00")
    zda_under = nmea("GNZDA,123519.00,1_2,11,2024,00,00")
    zda_trail = nmea("GNZDA,123519.00,12 ,11,2024,00,00")
    gga_big = nmea("GNGGA,123519.00,2324.40200,N,11322.87500,E,1,99999999999,1.0,"
                   "99999999999999999999.5,M,0.0,M,,")
    dev = boot(f"""
        libgnss.parse({lua_str(zda_big)})
        local z = libgnss.getZda()
        log.info("big", z.day, z.month)
        libgnss.parse({lua_str(zda_under + zda_trail)})
        z = libgnss.getZda()
        log.info("kept", z.day)
        libgnss.parse({lua_str(gga_big)})
        local g = libgnss.getGga()
        log.info("gga", g ~= nil and math.type(g.satellites_tracked) or "nil")
        log.info("done")
    """, model="Air780E")
    dev.run_for("1s")
    assert user(dev, "big") == [f"{2**31 - 1} 11"]
    # the last ZDA is kept as text and scanned when read: the scan stops at the bad field, which
    # reads 0 (not 12, as Python's int("1_2") or int("12 ") would have it)
    assert user(dev, "kept") == ["0"]
    assert len(user(dev, "gga")) == 1 and user(dev, "done") == [""]
    assert not [r for r in dev.log if "Error" in r.line]


def test_an_eastbound_track_crosses_the_antimeridian():
    fix = Fix(lat=10.0, lng=179.9999, speed_kmh=3600.0, course=90.0)  # 1 km/s east
    later = moved(fix, 60.0)
    assert -180.0 <= later.lng < -179.0  # 60 km on: the other side of the date line
    assert abs(later.lat - 10.0) < 1e-6
