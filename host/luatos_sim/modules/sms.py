"""sms: short messages on the Cat.1 models (Air780E, Air8000); nil on the Air8101.

Written from the module's API documentation and components/sms/luat_lib_sms.c (docs/behaviour.md
§8.4 is the contract). Sending: ``sms.send(phone, text, auto_phone_fix, need_report)`` encodes the
text (GSM 7-bit when every byte is in the ASCII subset the firmware maps, else UCS-2), splits a
long one (153 septets / 134 bytes per part), fixes the number (``+86...``, ``86...``, an
11-digit mainland mobile gets ``86``), hands the first part to the modem and returns true; the
rest follow as each is acknowledged, and ``SMS_SENT`` reports the end. One message at a time:
a second send while one is in flight logs "sms is busy" and returns nothing. ``sendLong`` is
the same with a ``.wait()``.

Receiving: each part from the network (``dev.sms``) is decoded; with ``autoLong`` (the default)
the parts of a long SMS are kept in 128 slots and published together once their sequence
numbers add up. Then ``SMS_INC`` (phone, text, metas) is published and the ``setNewSmsCb``
callback called with its own metas table. The firmware's odd corners stay: parts are matched by
reference number only, and after a completed long SMS only the first 16 slots are cleared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..ctext import c_string
from ..lua_text import py_str
from ..platform.network import LWIP_GP
from ..platform.sms import SEND_OK, UNKNOWN_ERROR
from ..sms_pdu import (
    TOA_INTERNATIONAL,
    UCS2,
    Deliver,
    PduError,
    plan_submit,
    read_deliver,
    submit_address,
    submit_pdu,
    ucs2_to_utf8,
)

if TYPE_CHECKING:
    from ..vm import Boot

TAG = "sms"
SLOTS = 128  # LONG_SMS_CMAX
CLEARED_SLOTS = 16  # the firmware clears a finished long SMS from the first 16 slots only
# RP-Cause names (3GPP TS 24.011 E.2) in SMS_SENT; the firmware's own spellings are UNCONFIRMED.
RP_CAUSES = {0: "SUCCESS", 1: "UNASSIGNED_NUMBER", 8: "OPERATOR_DETERMINED_BARRING",
             10: "CALL_BARRED", 21: "SM_TRANSFER_REJECTED", 27: "DESTINATION_OUT_OF_SERVICE",
             28: "UNIDENTIFIED_SUBSCRIBER", 29: "FACILITY_REJECTED", 30: "UNKNOWN_SUBSCRIBER",
             38: "NETWORK_OUT_OF_ORDER", 41: "TEMPORARY_FAILURE", 42: "CONGESTION",
             47: "RESOURCES_UNAVAILABLE", 50: "REQUESTED_FACILITY_NOT_SUBSCRIBED"}
# TP-Status names in SMS_REPORT (3GPP TS 23.040 9.2.3.15), by range.
TP_STATUS = {0: "SUCCESS", 1: "FORWARDED_UNCONFIRMED", 2: "REPLACED"}

# The Lua half: the callbacks live in Lua (as registry references do on the device), and each
# receiver gets its own metas table.
_LUA = b"""
local cb, report_cb
local function set_cb(f) cb = (type(f) == "function") and f or nil end
local function set_report(f) report_cb = (type(f) == "function") and f or nil end
local function metas(m)
  return {refNum = m[1], seqNum = m[2], maxNum = m[3], year = m[4], mon = m[5], day = m[6],
          hour = m[7], min = m[8], sec = m[9], tz = m[10]}
end
local function incoming(phone, text, m)
  local pub = sys_pub
  if pub == nil then return false end
  pub("SMS_INC", phone, text, metas(m))
  if cb then cb(phone, text, metas(m)) end
  return true
end
local function sent(ok, rp, rp_str, ref, err, refs)
  local pub = sys_pub
  if pub then pub("SMS_SENT", ok, rp, rp_str, ref, err, refs) end
end
local function report(ref, status, status_str, phone, when)
  local pub = sys_pub
  if pub == nil then return end
  pub("SMS_REPORT", ref, status, status_str, phone, when)
  if report_cb then report_cb(ref, status, status_str, phone, when) end
end
return set_cb, set_report, incoming, sent, metas, report
"""


class _Fragment:
    __slots__ = ("ref", "max_num", "seq", "text")

    def __init__(self, ref: int, max_num: int, seq: int, text: bytes) -> None:
        self.ref, self.max_num, self.seq, self.text = ref, max_num, seq, text


class SmsModem:
    """One boot's sms state: the firmware's statics (callbacks, slots, the send in flight)."""

    def __init__(self, boot: Boot) -> None:
        self.boot = boot
        self.bench = boot.platform.sms
        self.set_cb, self.set_report, self.incoming, self.sent_pub, self.metas, \
            self.report_pub = boot.execute(_LUA)
        self.auto_long = True
        self.slots: list[_Fragment | None] = [None] * SLOTS
        self.ref_idx = 254
        self.msg_ref = 0
        self.sending: dict[str, Any] | None = None  # the message in flight
        self.waiter: Any = None  # sendLong's topic

    def log(self, level: str, text: str) -> None:
        self.boot.log_c(level, TAG, text)

    # -- sending ---------------------------------------------------------------------------------

    def start(self, phone: bytes, text: bytes, auto_phone: Any, report: Any) -> int | None:
        """Checks and the first part; None: refused before encoding (nothing returned), else
        the modem's answer to the first submission (0: accepted)."""
        if self.sending is not None:
            self.log("E", "sms is busy")
            return None
        if not text:
            self.log("E", "sms is empty")
            return None
        if len(phone) < 3 or len(phone) > 29:
            self.log("E", f"phone is too short or too long!! {len(phone)}")
            return None
        self.ref_idx = (self.ref_idx + 1) % 255
        plan = plan_submit(text, self.ref_idx)
        if plan.count == 1:
            self.ref_idx = (self.ref_idx - 1) % 255  # only a long message takes a reference
        number, toa = submit_address(phone, auto_phone is not False)
        first = submit_pdu(number, toa, plan, 1)
        self.log("D", f"pdu len {len(first)}")
        self.sending = {"plan": plan, "number": number, "toa": toa, "pdus": [first],
                        "refs": [], "seq": 1, "report": report is True,
                        "to": ("+" if toa == TOA_INTERNATIONAL else "") + number}
        self.boot.trace("sms_submit", to=number, parts=plan.count, ucs2=plan.dcs == UCS2)
        self.submit()
        return SEND_OK

    def submit(self) -> None:
        assert self.sending is not None
        result, rp = self.bench.submit_result(self.boot, self.sending["to"])
        delay = self.bench.submit_ms if result in (SEND_OK, UNKNOWN_ERROR) else self.bench.fail_ms
        self.boot.post(delay, self.acked, result, rp)

    def acked(self, result: int, rp: int) -> None:
        s = self.sending
        if s is None:
            return
        if result in (SEND_OK, UNKNOWN_ERROR):  # the network answered: a reference was used
            self.msg_ref = (self.msg_ref + 1) % 256
        ref = self.msg_ref if result in (SEND_OK, UNKNOWN_ERROR) else 0
        s["refs"].append(ref)
        if result != SEND_OK:
            self.done(False, result, ref, rp)
            return
        if s["report"]:
            self.boot.post(self.bench.report_ms, self.status_report, ref, s["number"])
        plan = s["plan"]
        if s["seq"] == plan.count:
            self.bench.received(s["pdus"], self.boot.now)
            self.done(True, 0, ref, 0)
            return
        s["seq"] += 1
        s["pdus"].append(submit_pdu(s["number"], s["toa"], plan, s["seq"]))
        self.submit()

    def done(self, ok: bool, error: int, ref: int, rp: int) -> None:
        s, self.sending = self.sending, None
        assert s is not None
        if self.waiter is not None:
            topic, self.waiter = self.waiter, None
            self.boot.sys_pub(topic, ok)
        refs = self.boot.table(*s["refs"])
        self.sent_pub(ok, rp, RP_CAUSES.get(rp, "UNKNOWN"), ref, error, refs)

    def status_report(self, ref: int, number: str) -> None:
        """The recipient's handset took the part: the network's status report comes in."""
        status = self.bench.report_status
        name = TP_STATUS.get(status) or (f"FAILED_TEMP_{status}" if status < 0x40
                                         else f"FAILED_PERM_{status}")
        when = self.bench.clock_text(self.boot.now)
        self.report_pub(ref, status, name, number, when)

    # -- receiving -------------------------------------------------------------------------------

    def receive(self, pdu: bytes) -> bool:
        try:
            sms = read_deliver(pdu)
        except PduError:
            return True  # the modem drops what it cannot parse
        self.boot.post(0, self.handle, sms)
        return True

    def handle(self, sms: Deliver) -> None:
        self.log("D", f"dcs {sms.alphabet} | {sms.dcs} | {sms.dcs & 0x03} | 0")
        text = script_text(sms)
        if sms.max_num > 0 and self.auto_long:
            free = next((i for i, f in enumerate(self.slots) if f is None), -1)
            if free < 0:
                self.log("E", "too many long-sms!!")
                return
            self.slots[free] = _Fragment(sms.ref, sms.max_num, sms.seq, text)
            left = (sms.max_num + 1) * sms.max_num // 2
            left -= sum(f.seq for f in self.slots if f is not None and f.ref == sms.ref)
            if left != 0:
                self.log("I", f"long-sms, wait more frags {sms.seq}/{sms.max_num}")
                return
            self.log("I", "long-sms is ok")
            text = b"".join(f.text for seq in range(1, sms.max_num + 1)
                            for f in self.slots if f is not None and f.ref == sms.ref
                            and f.seq == seq)
        phone = script_phone(sms, plus=self.bench.plus_international)
        m = self.boot.table(sms.ref, sms.seq, sms.max_num, *sms.time, sms.tz_quarters)
        if not self.incoming(phone, text, m):
            return
        for i in range(CLEARED_SLOTS):
            f = self.slots[i]
            if f is not None and f.ref == sms.ref:
                self.slots[i] = None



def script_text(sms: Deliver) -> bytes:
    """The text a script gets: UCS-2 as UTF-8, anything else as a C string."""
    return ucs2_to_utf8(sms.body) if sms.alphabet == UCS2 else c_string(sms.body)


def script_phone(sms: Deliver, *, plus: bool) -> bytes:
    """The sender a script gets (push_sms_args): ``+`` before an international number when the
    bench says so, and a number sent as UCS-2 hex (``00..``) decoded to UTF-8. ``sms.unpack``
    goes through the same rule, without the ``+`` (its source never adds one)."""
    phone = sms.phone
    if plus and sms.toa == TOA_INTERNATIONAL:
        phone = b"+" + phone
    if len(phone) > 4 and phone.startswith(b"00") and len(phone) % 2 == 0:
        try:
            phone = ucs2_to_utf8(bytes.fromhex(py_str(phone)))
        except ValueError:
            pass
    return phone


def install(boot: Boot) -> None:
    modem = SmsModem(boot)
    bench = modem.bench
    bench.attach(boot, modem.receive)
    net = boot.platform.net
    bn = net.boot_net(boot)

    def check_registered() -> None:
        if bench.registered(boot):
            bench.registered_now(boot)

    def on_link(adapter: int, up: bool) -> None:
        if adapter == LWIP_GP and up:
            boot.post(net.timings.bearer_ms, check_registered)

    bn.link_listeners.append(on_link)
    boot.post(net.timings.bearer_ms, check_registered)  # after the bearer comes up

    def send(phone: bytes, text: bytes, auto_phone: Any = None, report: Any = None,
             *_: Any) -> Any:
        r = modem.start(phone, text, auto_phone, report)
        if r is None:
            return ()
        return r == SEND_OK

    def send_long(phone: bytes, text: bytes, auto_phone: Any = None, report: Any = None,
                  *_: Any) -> Any:
        if modem.sending is not None:
            modem.log("E", "sms is busy")
            return boot.cw_fail(False)
        if modem.waiter is not None:
            return boot.cw_fail(False)
        if modem.start(phone, text, auto_phone, report) is None:
            return boot.cw_fail(False)
        topic, cw = boot.new_cw()
        modem.waiter = topic
        return cw

    def set_new_sms_cb(fn: Any = None, *_: Any) -> tuple[()]:
        modem.set_cb(fn)
        return ()

    def set_report_cb(fn: Any = None, *_: Any) -> tuple[()]:
        modem.set_report(fn)
        return ()

    def auto_long(mode: Any = None, *_: Any) -> bool:
        if isinstance(mode, bool):
            modem.auto_long = mode
        elif isinstance(mode, int):
            modem.auto_long = True  # lua_toboolean of any number is true
        return modem.auto_long

    def clear_long(*_: Any) -> int:
        n = sum(1 for f in modem.slots if f is not None)
        modem.slots = [None] * SLOTS
        return n

    def unpack(pdu_hex: bytes, *_: Any) -> Any:
        if not pdu_hex:
            modem.log("E", "pdu_data is empty")
            return ()
        if len(pdu_hex) % 2:
            modem.log("E", f"pdu_data length must be even (hex string), got {len(pdu_hex)}")
            return ()
        for i, c in enumerate(pdu_hex):
            if chr(c) not in "0123456789abcdefABCDEF":
                modem.log("E", f"invalid hex char at pos {i}: 0x{c:02X}")
                return ()
        try:
            sms = read_deliver(bytes.fromhex(py_str(pdu_hex)))
        except PduError:
            modem.log("E", "sms pdu unpack fail -1")
            return ()
        m = boot.table(sms.ref, sms.seq, sms.max_num, *sms.time, 0)
        return script_phone(sms, plus=False), script_text(sms), modem.metas(m)

    def debug(enable: Any = None, *_: Any) -> tuple[()]:
        on = enable is not None and enable is not False
        modem.log("I", "SMS debug enabled" if on else "SMS debug disabled")
        return ()

    boot.firmware_module(TAG, {
        "send": send, "sendLong": send_long, "setNewSmsCb": set_new_sms_cb,
        "setReportCb": set_report_cb, "autoLong": auto_long, "clearLong": clear_long,
        "unpack": unpack, "debug": debug,
    })
