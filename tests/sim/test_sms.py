"""sms on the Cat.1 models: an SMS-forwarding script fed by the bench's network in virtual time
(forwarded to a real loopback HTTP server), long Chinese texts reassembled from their parts,
sending read back from the network (7-bit, UCS-2, long), no SIM, and nil on the Air8101."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from luatos_common.loopback_http import start_loopback_http
from luatos_sim import Device
from luatos_sim.sms_pdu import DeliverPart, deliver_pdu, read_submit

HEAD = """
PROJECT = "smsfwd"
VERSION = "1.0.0"
sys = require("sys")
"""

FORWARDER = HEAD + """
sms.setNewSmsCb(function(num, txt, metas)
    log.info("sms", "from", num, "len", #txt, metas.maxNum, metas.year, metas.mon, metas.tz)
    sys.taskInit(function()
        local body = json.encode({from = num, text = txt})
        local code = http.request("POST", "http://hook.example.com/sms",
            {["Content-Type"] = "application/json"}, body).wait()
        log.info("fwd", code)
    end)
end)
sys.run()
"""


class Hook:
    """A web hook on loopback that keeps every JSON body it is posted."""

    def __init__(self) -> None:
        got: list[dict[str, str]] = []
        self.got = got
        self.lock = threading.Lock()
        lock = self.lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                n = int(self.headers.get("Content-Length", "0"))
                with lock:
                    got.append(json.loads(self.rfile.read(n)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass
        self.server = start_loopback_http(Handler, "sms-hook")
        self.port = int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def _user(dev: Device, prefix: str) -> list[str]:
    return [ln for ln in dev.lines() if ln.startswith(prefix)]


def test_forwarder_posts_each_sms_to_the_web_hook(boot: Callable[..., Device], hook: Hook) -> None:
    dev = boot(FORWARDER, model="Air780E")
    dev.net.map_address("hook.example.com", f"127.0.0.1:{hook.port}")
    dev.sms.deliver("+8613900139000", "Your code is 123456", at="10s")
    long_text = "尊敬的用户，您的账户余额不足，请及时充值。" * 8  # 168 characters: 3 parts
    parts = dev.sms.deliver("10086", long_text, at="20s", order=[2, 3, 1])
    assert parts == 3
    dev.run_until("fwd 200", within="40s")
    dev.run_for("20s")
    assert hook.got[0] == {"from": "+8613900139000", "text": "Your code is 123456"}
    assert hook.got[1] == {"from": "10086", "text": long_text}
    assert len(hook.got) == 2  # the parts were one SMS
    lines = dev.lines()
    assert "sms:long-sms, wait more frags 2/3" in lines
    assert "sms:long-sms, wait more frags 3/3" in lines
    assert "sms:long-sms is ok" in lines
    # metas of the completing part: 3 parts, a two-digit year, +08:00 in quarter hours
    info = _user(dev, "I/user.sms from 10086")[0].split()
    assert info[-4:-3] == ["3"] and info[-1] == "32"


def test_sms_inc_subscribers_get_phone_text_and_metas(boot: Callable[..., Device]) -> None:
    dev = boot(HEAD + """
sys.subscribe("SMS_INC", function(num, txt, metas)
    log.info("inc", num, txt, metas.refNum, metas.seqNum, metas.maxNum,
             metas.year, metas.mon, metas.day, metas.hour, metas.min, metas.sec, metas.tz)
end)
sys.run()
""", model="Air8000")
    from datetime import UTC, datetime
    dev.sms.deliver("1065800", "Hi [ok] ~$5_@", at="8s",
                    timestamp=datetime(2026, 3, 4, 1, 2, 3, tzinfo=UTC))
    dev.run_until("I/user.inc", within="20s")
    assert _user(dev, "I/user.inc") == ["I/user.inc 1065800 Hi [ok] ~$5_@ 0 0 0 26 3 4 9 2 3 32"]


def test_sms_that_arrives_before_registration_is_held_then_delivered(
        boot: Callable[..., Device]) -> None:
    dev = boot(HEAD + """
sys.subscribe("SMS_INC", function(num, txt) log.info("inc", num, txt) end)
sys.run()
""", model="Air780E")
    dev.power_off()
    dev.sms.deliver("10010", "while off", at="1s")
    dev.run_for("5s")
    assert len(dev.sms.held) == 1 and not _user(dev, "I/user.inc")
    dev.power_on()
    dev.run_until("I/user.inc 10010 while off", within="30s")
    assert not dev.sms.held


def test_dropped_when_the_network_does_not_hold(boot: Callable[..., Device]) -> None:
    dev = boot(HEAD + "sys.subscribe('SMS_INC', function(n, t) log.info('inc', t) end)\n"
               "sys.run()\n", model="Air780E")
    dev.sms.hold_offline = False
    dev.sms.deliver("10010", "too early", at="1s")  # the bearer is not up until ~3.8 s
    dev.sms.deliver("10010", "in time", at="10s")
    dev.run_for("20s")
    assert _user(dev, "I/user.inc") == ["I/user.inc in time"]
    assert len(dev.sms.dropped) == 1


SENDER = HEAD + """
sys.subscribe("SMS_SENT", function(ok, rp, rp_str, ref, err, refs)
    log.info("sent", ok, rp, ref, err, #refs)
end)
sys.taskInit(function()
    sys.waitUntil("IP_READY")
    log.info("r1", sms.send("13800138000", "Hello from LuatOS"))
    log.info("busy", sms.send("13800138000", "second"))
    sys.waitUntil("SMS_SENT")
    log.info("r2", sms.sendLong("+8613800138000", "温度报警：" .. string.rep("传感器", 40)).wait())
    log.info("r3", sms.sendLong("10086", string.rep("0123456789", 20), false).wait())
end)
sys.run()
"""


def test_send_short_long_and_chinese_as_the_network_reads_them(
        boot: Callable[..., Device]) -> None:
    dev = boot(SENDER, model="Air780E")
    dev.run_until("I/user.r3", within="60s")
    assert "I/user.r1 true" in dev.lines()
    assert "I/user.busy" in dev.lines()  # nothing returned
    assert "sms:sms is busy" in dev.lines()
    assert "I/user.r2 true" in dev.lines() and "I/user.r3 true" in dev.lines()
    short, chinese, digits = dev.sms.sent
    assert (short.to, short.text, short.parts, short.encoding) == \
        ("+8613800138000", "Hello from LuatOS", 1, "gsm7")
    assert chinese.to == "+8613800138000" and chinese.encoding == "ucs2"
    assert chinese.text == "温度报警：" + "传感器" * 40 and chinese.parts == 2  # 125 chars, 67 a part
    assert digits.to == "10086" and digits.text == "0123456789" * 20 and digits.parts == 2
    heads = [read_submit(p) for p in chinese.pdus]
    assert [(h.count, h.seq) for h in heads] == [(2, 1), (2, 2)] and heads[0].ref == heads[1].ref
    assert _user(dev, "I/user.sent") == ["I/user.sent true 0 1 0 1",
                                         "I/user.sent true 0 3 0 2",
                                         "I/user.sent true 0 5 0 2"]
    assert short.ms > 3800  # acknowledged after the submission time, in virtual time


def test_phone_number_rules_and_refusals(boot: Callable[..., Device]) -> None:
    dev = boot(HEAD + """
sys.taskInit(function()
    sys.waitUntil("IP_READY")
    log.info("short", sms.send("12", "x"))
    log.info("empty", sms.send("10086", ""))
    for _, n in ipairs({"8613800138000", "10086", "85513416121234"}) do
        log.info("n", sms.send(n, "x"))
        sys.waitUntil("SMS_SENT")
    end
    log.info("raw", sms.send("13800138000", "y", false))
end)
sys.run()
""", model="Air780E")
    dev.run_for("30s")
    assert "sms:phone is too short or too long!! 2" in dev.lines()
    assert "sms:sms is empty" in dev.lines()
    assert "I/user.short" in dev.lines() and "I/user.empty" in dev.lines()
    assert [s.to for s in dev.sms.sent] == ["+8613800138000", "10086", "85513416121234",
                                            "13800138000"]


def test_no_sim_fails_the_send_with_the_modem_error(boot: Callable[..., Device]) -> None:
    dev = boot(HEAD + """
sys.subscribe("SMS_SENT", function(ok, rp, rp_str, ref, err) log.info("sent", ok, err) end)
sys.taskInit(function()
    sys.wait(5000)
    log.info("r", sms.send("13800138000", "hi"))
    sys.waitUntil("SMS_SENT")
    log.info("w", sms.sendLong("13800138000", "again").wait())
end)
sys.run()
""", model="Air780E")
    dev.sms.remove_sim()
    dev.run_for("15s")
    assert _user(dev, "I/user.sent") == ["I/user.sent false 310", "I/user.sent false 310"]
    assert "I/user.r true" in dev.lines() and "I/user.w false" in dev.lines()
    assert dev.sms.sent == []


def test_not_registered_when_the_cellular_link_is_down(boot: Callable[..., Device]) -> None:
    dev = boot(HEAD + """
sys.subscribe("SMS_SENT", function(ok, rp, rp_str, ref, err) log.info("sent", ok, err) end)
sys.taskInit(function() sys.wait(5000); sms.send("10086", "x") end)
sys.run()
""", model="Air780E")
    dev.net.link_down("4g", at="4s")
    dev.run_for("10s")
    assert _user(dev, "I/user.sent") == ["I/user.sent false 331"]


def test_auto_long_off_clear_long_and_unpack(boot: Callable[..., Device]) -> None:
    pdu = deliver_pdu(DeliverPart("+8613900139000", "hello", 0, (24, 5, 6, 7, 8, 9), 32))
    dev = boot(HEAD + f"""
log.info("auto", sms.autoLong(false), sms.autoLong(), sms.autoLong(0))
sms.autoLong(false)
sys.subscribe("SMS_INC", function(num, txt, m) log.info("inc", m.seqNum, m.maxNum, #txt) end)
local phone, txt, m = sms.unpack("{pdu.hex().upper()}")
log.info("unpack", phone, txt, m.year, m.mon, m.day, m.hour, m.min, m.sec)
log.info("bad", sms.unpack("123"))
sys.taskInit(function()
    sys.wait(20000)
    sms.autoLong(true)
    sys.wait(15000)
    log.info("cleared", sms.clearLong(), sms.clearLong())
end)
sys.run()
""", model="Air780E")
    dev.sms.deliver("10010", "x" * 200, at="10s")  # two parts, each published alone
    dev.sms.deliver("10010", "y" * 200, at="25s", order=[1])  # part 2 never comes ...
    dev.run_for("40s")
    lines = dev.lines()
    assert "I/user.auto false false true" in lines
    assert "I/user.unpack 8613900139000 hello 24 5 6 7 8 9" in lines
    assert "sms:pdu_data length must be even (hex string), got 3" in lines
    assert "I/user.inc 1 2 153" in lines and "I/user.inc 2 2 47" in lines
    assert "sms:long-sms, wait more frags 1/2" in lines
    assert "I/user.cleared 1 0" in lines  # the waiting part, dropped


def test_air8101_has_no_sms(boot: Callable[..., Device]) -> None:
    dev = boot(HEAD + "log.info('sms', type(sms))\nsys.run()\n", model="Air8101")
    dev.run_for("2s")
    assert "I/user.sms nil" in dev.lines()
    with pytest.raises(ValueError, match="order"):
        dev.sms.deliver("10086", "x", order=[2])  # a one-part SMS has no part 2


def test_refused_number_and_status_reports(boot: Callable[..., Device]) -> None:
    dev = boot(HEAD + """
sys.subscribe("SMS_SENT", function(ok, rp, rp_str, ref, err, refs)
    log.info("sent", ok, rp, rp_str, err, table.concat(refs, ","))
end)
sms.setReportCb(function(ref, status, status_str, phone, when)
    log.info("report", ref, status, status_str, phone, when)
end)
sys.taskInit(function()
    sys.waitUntil("IP_READY")
    sms.send("13900000000", "nobody")
    sys.waitUntil("SMS_SENT")
    sms.send("13800138000", string.rep("z", 200), true, true)
end)
sys.run()
""", model="Air780E")
    dev.sms.refuse("+8613900000000", rp_cause=1)
    dev.run_for("30s")
    assert _user(dev, "I/user.sent") == ["I/user.sent false 1 UNASSIGNED_NUMBER 500 1",
                                         "I/user.sent true 0 SUCCESS 0 2,3"]
    reports = _user(dev, "I/user.report")
    assert [r.split()[1:5] for r in reports] == [["2", "0", "SUCCESS", "8613800138000"],
                                                 ["3", "0", "SUCCESS", "8613800138000"]]
    assert [s.to for s in dev.sms.sent] == ["+8613800138000"]


def test_seven_bit_text_reaches_the_script_as_the_firmware_maps_it(
        boot: Callable[..., Device]) -> None:
    """GSM 7-bit letters outside ASCII come out as their base letter (é -> e), the rest as ?;
    the extension characters the firmware knows come out as themselves."""
    dev = boot(HEAD + "sys.subscribe('SMS_INC', function(n, t) log.info('inc', t) end)\n"
               "sys.run()\n", model="Air780E")
    dev.sms.deliver("10010", "café Ünïcode? {x}|€ §", at="8s")  # ï is not GSM: UCS-2
    dev.sms.deliver("10010", "café Über {x}|€ §", at="9s")
    dev.run_for("15s")
    assert _user(dev, "I/user.inc") == ["I/user.inc café Ünïcode? {x}|€ §",
                                        "I/user.inc cafe Uber {x}|e ?"]


def test_odd_numbers_and_malformed_pdus_never_break_the_script(boot: Callable[..., Device]) -> None:
    """The firmware packs any character of a number as hex2int(c) & 0x0F and reads a short user
    data header from a zeroed buffer: a stray letter or a truncated header is no crash."""
    short_udh = "00440481101000001111111111110002" + "0100"  # UDHI set, 2 bytes of user data
    dev = boot(HEAD + f"""
sys.taskInit(function()
    sys.waitUntil("IP_READY")
    log.info("letter", sms.send("1380013800x", "hi"))
    sys.waitUntil("SMS_SENT")
    log.info("unpack", pcall(sms.unpack, "{short_udh}"))
end)
sys.run()
""", model="Air780E")
    dev.run_for("30s")
    lines = dev.lines()
    assert "I/user.letter true" in lines
    assert len(dev.sms.sent) == 1  # the letter went out as the nibble 0, as on the device
    unpacked = [ln for ln in lines if ln.startswith("I/user.unpack ")]
    assert len(unpacked) == 1 and unpacked[0].startswith("I/user.unpack true")
    assert not [ln for ln in lines if "Error" in ln]


def test_deliver_refuses_a_sender_no_sms_can_carry(boot: Callable[..., Device]) -> None:
    dev = boot(HEAD + "sys.run()\n", model="Air780E")
    with pytest.raises(ValueError, match="neither digits nor GSM 7-bit"):
        dev.sms.deliver("张三", "hi")
    with pytest.raises(ValueError, match="more than the 20 digits"):
        dev.sms.deliver("1" * 21, "hi")


def test_sms_held_without_a_sim_arrive_once_it_is_inserted(boot: Callable[..., Device]) -> None:
    dev = boot(HEAD + "sys.subscribe('SMS_INC', function(n, t) log.info('inc', t) end)\n"
               "sys.run()\n", model="Air780E")
    dev.sms.remove_sim()
    dev.sms.deliver("10010", "while no SIM", at="10s")
    dev.run_for("20s")
    assert _user(dev, "I/user.inc") == [] and len(dev.sms.held) == 1
    dev.sms.insert_sim()
    at = dev.current_ms()
    rec = dev.run_until("I/user.inc while no SIM", within="10s")
    assert rec.device_ms is not None and rec.device_ms - at == dev.sms.held_ms and not dev.sms.held
