"""Corners found by running the vendor's Air8101 demo projects: coalesced TX_OK, file:fill."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from luatos_sim import Device


@pytest.fixture
def sink() -> Iterator[int]:
    """A loopback TCP server that reads everything and answers nothing."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    conns: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)
            threading.Thread(target=_drain, args=(c,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()
    for c in conns:
        c.close()


def _drain(c: socket.socket) -> None:
    try:
        while c.recv(4096):
            pass
    except OSError:
        pass


def test_back_to_back_writes_share_one_tx_ok(boot: Callable[..., Device], sink: int) -> None:
    """The firmware reports TX_OK when every byte written so far is acked, so writes made in
    one go (an HTTP request line, then each header) produce one TX_OK, not one per write;
    a write after that TX_OK gets its own."""
    dev = boot("""
sys.taskInit(function()
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
  local events = {}
  local c = socket.create(nil, function(ctrl, ev, p) table.insert(events, ev) end)
  socket.connect(c, "srv.example.com", 45433)
  sys.wait(500)
  events = {}
  for i = 1, 5 do socket.tx(c, "line " .. i .. "\\r\\n") end
  sys.wait(1000)
  local n = 0
  for _, ev in ipairs(events) do if ev == socket.TX_OK then n = n + 1 end end
  log.info("burst", n)
  socket.tx(c, "later")
  sys.wait(1000)
  n = 0
  for _, ev in ipairs(events) do if ev == socket.TX_OK then n = n + 1 end end
  log.info("after", n)
  socket.close(c)
end)
sys.run()
""")
    dev.net.map_address("srv.example.com:45433", f"127.0.0.1:{sink}")
    dev.net.latency_ms = 20
    dev.run_until("I/user.after", within="30s")
    assert "I/user.burst 1" in dev.lines()
    assert "I/user.after 2" in dev.lines()


def test_file_fill_reads_into_a_zbuff_at_an_offset(boot: Callable[..., Device]) -> None:
    dev = boot("""
io.writeFile("/f.bin", "ABCDEFGHIJ")
local fd = io.open("/f.bin", "rb")
local zb = zbuff.create(4)
log.info("whole", fd:fill(zb))
log.info("data", zb:toStr(0, 4), zb:used())
local tail = zbuff.create(8, 0x2E)
log.info("offset", fd:fill(tail, 2, 3))
log.info("tail", tail:toStr(0, 8))
log.info("rest", fd:fill(tail))
log.info("eof", fd:fill(tail))
fd:close()
log.info("bad", pcall(function() local f = io.open("/f.bin", "rb"); return f:fill("x") end))
log.info("end")
sys.run()
""")
    dev.run_until("I/user.end", within="5s")
    lines = dev.lines()
    assert "I/user.whole true 4" in lines
    assert "I/user.data ABCD 0" in lines  # filled in place; the zbuff pointer did not move
    assert "I/user.offset true 3" in lines
    assert "I/user.tail ..EFG..." in lines
    assert "I/user.rest true 3" in lines  # only HIJ was left
    assert "I/user.eof true 0" in lines
    assert any(ln.startswith("I/user.bad false") and "ZBUFF* expected" in ln for ln in lines)


def test_mcu_muid_is_a_stable_32_hex_character_id(boot: Callable[..., Device]) -> None:
    """airlbs signs its requests with mcu.muid(); a missing function killed that demo."""
    dev = boot("""
local a, b = mcu.muid(), mcu.muid()
log.info("muid", type(a), #a, a == b, a:match("^%x+$") ~= nil, a == a:upper())
log.info("end")
sys.run()
""")
    dev.run_until("I/user.end", within="5s")
    assert "I/user.muid string 32 true true true" in dev.lines()


def test_air8101_reads_adc_channels_10_to_14_as_its_vendor_demos_do(
        boot: Callable[..., Device]) -> None:
    """The Air8101 ADC demo lists ADC1-6 and 10, 12, 13, 14; the USB camera demo reads its
    keypad ladder on channel 14. Channel 11 is not one of them and still fails."""
    dev = boot("""
sys.taskInit(function()
  log.info("open", adc.open(14), adc.open(10), adc.open(11))
  log.info("mv", adc.get(14))
end)
sys.run()
""")
    dev.adc.set(14, 2500)
    dev.run_until("I/user.mv", within="5s")
    assert "I/user.open true true false" in dev.lines()
    assert "I/user.mv 2500" in dev.lines()


def test_gtfont_init_without_a_font_chip_fails_like_a_bare_board(
        boot: Callable[..., Device]) -> None:
    """The vendor's AirLCD demos call gtfont.init on an SPI device at boot; a nil global killed
    them. With no font chip on the bench, init answers false and the script goes on."""
    dev = boot("""
local dev = spi.deviceSetup(1, 3, 0, 0, 8, 20000000, spi.MSB, 1, 0)
log.info("init", type(gtfont), gtfont.init(dev))
log.info("end")
sys.run()
""")
    dev.run_until("I/user.end", within="5s")
    assert "I/user.init table false" in dev.lines()
    assert any("gtfont.init: no font chip on the bench" in r.text
               for r in dev.log if r.tag == "luatos-sim")


SMARTCONFIG = """
sys.taskInit(function()
  wlan.init()
  log.info("consts", wlan.STOP, wlan.ESPTOUCH, wlan.AIRKISS)
  log.info("start", wlan.smartconfig(wlan.AIRKISS))
  local ret, ssid, pwd = sys.waitUntil("SC_RESULT", 60000)
  log.info("result", ret, ssid, pwd)
  log.info("stop", wlan.smartconfig(wlan.STOP))
end)
sys.run()
"""


def test_smartconfig_listens_until_a_phone_sends_credentials(
        boot: Callable[..., Device]) -> None:
    """The vendor airkiss demo waits for SC_RESULT; it arrives only when the bench's phone
    sends credentials. With no phone the device listens until its own timeout."""
    dev = boot(SMARTCONFIG)
    dev.net.smartconfig("HomeAP", "secret123")
    dev.run_until("I/user.stop", within="90s")
    assert "I/user.consts 0 1 2" in dev.lines()
    assert "I/user.start true" in dev.lines()
    assert "I/user.result true HomeAP secret123" in dev.lines()
    assert "I/user.stop true" in dev.lines()


def test_smartconfig_without_a_phone_times_out(boot: Callable[..., Device]) -> None:
    dev = boot(SMARTCONFIG)
    dev.run_until("I/user.stop", within="90s")
    assert any(ln.startswith("I/user.result false") for ln in dev.lines())


def test_a_scan_while_connected_reports_the_joined_access_point(
        boot: Callable[..., Device]) -> None:
    """Vendor demos (airlbs, httpsrv) scan after joining an SSID the bench never declared;
    the AP they are connected to is on the air, so the scan lists it."""
    dev = boot("""
sys.taskInit(function()
  wlan.init()
  wlan.scan(); sys.waitUntil("WLAN_SCAN_DONE", 10000)
  log.info("before", #wlan.scanResult())
  wlan.connect("CafeAP", "pw"); sys.waitUntil("IP_READY")
  wlan.scan(); sys.waitUntil("WLAN_SCAN_DONE", 10000)
  local r = wlan.scanResult()
  log.info("after", #r, r[1].ssid, #r[1].bssid, type(r[1].rssi))
end)
sys.run()
""")
    dev.run_until("I/user.after", within="30s")
    assert "I/user.before 0" in dev.lines()
    assert "I/user.after 1 CafeAP 6 number" in dev.lines()


def test_iperf_is_named_not_emulated_instead_of_a_bare_nil_global(
        boot: Callable[..., Device]) -> None:
    """The vendor iperf demo calls iperf.server; the firmware has the module, so the script
    sees its table and the missing function is named, never a silent nil global."""
    dev = boot("""
log.info("iperf", type(iperf), pcall(function() return iperf.server(socket.LWIP_STA) end))
log.info("end")
sys.run()
""")
    dev.run_until("I/user.end", within="5s")
    assert any(ln.startswith("I/user.iperf table false") for ln in dev.lines())
    assert any(r.text.startswith("iperf.server is not emulated") for r in dev.log
               if r.source == "sim")
