"""errDump: the vendor's boot idiom, the two 4 KB logs in flash, a crash in the system log, and
the upload to a real loopback UDP log server that acknowledges with "OK" (or stays silent)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from luatos_sim import Device
from luatos_sim.crashes import crashes

WIFI = """
PROJECT = "edtest"
VERSION = "1.0.0"
sys = require("sys")
local function up()
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
end
"""


class LogServer:
    """A UDP log server on loopback: keeps every datagram, answers each with ``reply`` (None:
    silent)."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.got: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.got.append(data)
            if self.reply is not None:
                self.sock.sendto(self.reply, addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def log_server() -> Iterator[Callable[[bytes | None], LogServer]]:
    made: list[LogServer] = []

    def make(reply: bytes | None) -> LogServer:
        srv = LogServer(reply)
        made.append(srv)
        return srv
    yield make
    for s in made:
        s.close()


def _lines(dev: Device, prefix: str) -> list[str]:
    return [ln for ln in dev.lines() if ln.startswith(prefix)]


# -- the boot idiom -------------------------------------------------------------------------------

def test_vendor_idiom_boots_runs_and_first_upload_names_the_device(
        boot: Callable[..., Device], log_server: Callable[[bytes | None], LogServer]) -> None:
    """main.lua of most vendor demos: on a Cat.1 model the bearer comes up by itself, and 2 s
    after config the first datagram goes to the vendor's server (mapped here) with the IMEI
    and the power-on reason; the "OK" clears the (empty) logs and nothing is sent again."""
    srv = log_server(b"OK")
    dev = boot("""
PROJECT = "demo"
VERSION = "2.0.1"
sys = require("sys")
if errDump then
  errDump.config(true, 600)
end
sys.taskInit(function()
  while true do log.info("alive"); sys.wait(5000) end
end)
sys.run()
""", model="Air780E")
    dev.net.map_address("dev_msg1.openluat.com:12425", f"127.0.0.1:{srv.port}")
    dev.run_for("30s")
    assert not crashes(dev)
    assert len(_lines(dev, "I/user.alive")) >= 5
    assert srv.got == [b"demo_LuatOS-SoC_V1112_EC618,2.0.1,864536071234561,,\r\n"
                       b"poweron reason:0\r\n"]
    assert "errDump:errdump ok!" in dev.lines()
    assert "errDump:no info errdump stop" not in dev.lines()


def test_idiom_with_no_network_keeps_running(boot: Callable[..., Device]) -> None:
    """An Air8101 that never joins Wi-Fi: the upload waits 30 s for the link, gives up, and
    the script runs on."""
    dev = boot("""
sys = require("sys")
if errDump then errDump.config(true, 600) end
log.info("after", "config")
errDump.record("kept")
sys.timerLoopStart(log.info, 10000, "tick")
sys.run()
""")
    dev.run_for("60s")
    assert not crashes(dev)
    assert "I/user.after config" in dev.lines()
    assert "errDump:errdump server connect or tx fail, after 600 second retry" in dev.lines()
    assert dev.errdump.usr_log == b"kept"
    assert len(_lines(dev, "I/user.tick")) == 5


# -- the logs -------------------------------------------------------------------------------------

def test_record_dump_round_trip_survives_reboot(boot: Callable[..., Device]) -> None:
    dev = boot("""
sys = require("sys")
errDump.config(true, 0)
local buf = zbuff.create(4)
if not io.exists("/second") then
  log.info("rec", errDump.record("abc"), errDump.record(""), errDump.record(12))
  errDump.record("defgh")
  log.info("d1", errDump.dump(buf, errDump.TYPE_USR), buf:used(), buf:query())
  log.info("d2", errDump.dump(buf), buf:used())
  log.info("sys", errDump.dump(buf, errDump.TYPE_SYS), buf:used())
  io.writeFile("/second", "1")
  rtos.reboot()
else
  log.info("d3", errDump.dump(buf, errDump.TYPE_USR), buf:used(), buf:query())
end
sys.run()
""")
    dev.run_until("I/user.d3", within="10s")
    assert "I/user.rec nil nil" in dev.lines()  # record returns no value
    assert "I/user.d1 true 8 abcdefgh" in dev.lines()  # the zbuff grew to the log
    assert "I/user.d2 false 8" in dev.lines()  # nothing new since the last read
    assert "I/user.sys false 0" in dev.lines()
    assert "I/user.d3 false 8 abcdefgh" in dev.lines()  # in flash across the reboot


def test_user_log_is_a_4k_ring(boot: Callable[..., Device]) -> None:
    dev = boot("""
errDump.config(true, 0)
for i = 0, 9 do errDump.record(string.rep(string.char(65 + i), 500)) end
local buf = zbuff.create(10)
errDump.dump(buf, errDump.TYPE_USR)
log.info("ring", buf:used(), buf:query(0, 4), buf:query(4092))
errDump.record(string.rep("x", 5000) .. "END")
log.info("big", errDump.dump(buf), buf:used(), buf:query(4093))
""")
    dev.run_for("2s")
    # 5000 bytes went in; the newest 4096 stayed: 96 of the "B"s, then C..J.
    assert "I/user.ring 4096 BBBB JJJJ" in dev.lines()
    assert "I/user.big true 4096 END" in dev.lines()
    assert dev.errdump.usr_log == b"x" * 4093 + b"END"


def test_nothing_is_recorded_before_config_and_type_2_is_true(boot: Callable[..., Device]) -> None:
    dev = boot("""
errDump.record("lost")
local buf = zbuff.create(8)
log.info("off", errDump.dump(buf, errDump.TYPE_USR), buf:used(), errDump.dump(nil, 2))
""")
    dev.run_for("2s")
    assert "I/user.off true 0 true" in dev.lines()  # written (counted) but not kept
    assert dev.errdump.usr_log == b""


def test_a_lua_error_lands_in_the_system_log_after_the_reboot(boot: Callable[..., Device]) -> None:
    dev = boot("""
sys = require("sys")
errDump.config(true, 0)
if not io.exists("/crashed") then
  io.writeFile("/crashed", "1")
  sys.taskInit(function() sys.wait(100); local t = nil; t.x = 1 end)
else
  local buf = zbuff.create(256)
  log.info("sys", errDump.dump(buf, errDump.TYPE_SYS, true), buf:query())
  log.info("after", errDump.dump(buf, errDump.TYPE_SYS), buf:used())
end
sys.run()
""")
    dev.run_until("I/user.after", within="30s")
    crash = crashes(dev)[0].message
    stored = [ln for ln in dev.lines() if ln.startswith("I/user.sys false ")]
    assert stored, dev.lines()
    assert "attempt to index a nil value" in stored[0]
    assert stored[0] == "I/user.sys false " + crash.split(": Lua error: ", 1)[1]
    assert "I/user.after false 0" in dev.lines()  # isDelete cleared it
    assert dev.errdump.sys_log == b""


def test_a_crash_before_config_is_not_recorded(boot: Callable[..., Device]) -> None:
    dev = boot("""
sys = require("sys")
sys.taskInit(function() sys.wait(100); error("boom") end)
sys.run()
""")
    dev.run_for("2s")
    assert crashes(dev)
    assert dev.errdump.sys_log == b""


def test_delete_needs_a_boolean_and_config_false_clears_both(boot: Callable[..., Device]) -> None:
    dev = boot("""
errDump.config(true, 0)
errDump.record("u1")
log.info("d", errDump.dump(nil, errDump.TYPE_USR, 1))
local buf = zbuff.create(8)
errDump.dump(buf)
log.info("kept", buf:query())
errDump.dump(nil, errDump.TYPE_USR, true)
errDump.dump(buf)
log.info("gone", buf:used())
errDump.record("u2")
errDump.config(false)
log.info("off")
""")
    dev.errdump.enabled = True
    dev.errdump.save(0, b"old crash")  # a system log from an earlier boot
    dev.run_for("2s")
    assert "I/user.d true" in dev.lines()
    assert "I/user.kept u1" in dev.lines()
    assert "I/user.gone 0" in dev.lines()
    assert dev.errdump.usr_log == b"" and dev.errdump.sys_log == b""


def test_bad_arguments_fail_like_the_firmware(boot: Callable[..., Device]) -> None:
    dev = boot("""
log.info("p", pcall(errDump.config, true, "soon"))
log.info("t", pcall(errDump.dump, nil, "sys"))
log.info("n", select("#", errDump.config("yes")), errDump.TYPE_SYS, errDump.TYPE_USR,
         type(errDump.dump))
""")
    dev.run_for("2s")
    lines = dev.lines()
    assert any(ln.startswith("I/user.p false") and "bad argument #2 to 'config'" in ln
               for ln in lines), lines
    assert any(ln.startswith("I/user.t false") and "bad argument #2 to 'dump'" in ln
               for ln in lines), lines
    assert "I/user.n 0 0 1 function" in lines


# -- the upload -----------------------------------------------------------------------------------

UPLOAD = WIFI + """
errDump.config(true, 60, "flag", "DEV1", "errlog.example.com", 9999)
errDump.record("r1;")
sys.taskInit(function()
  up()
  log.info("online")
end)
sys.run()
"""


def test_upload_acknowledged_with_ok_clears_the_logs(
        boot: Callable[..., Device], log_server: Callable[[bytes | None], LogServer]) -> None:
    srv = log_server(b"OK")
    dev = boot(UPLOAD)
    dev.errdump.enabled = True
    dev.errdump.save(0, b"main.lua:3: boom")  # the last boot's crash
    dev.net.map_address("errlog.example.com:9999", f"127.0.0.1:{srv.port}")
    dev.run_until("errDump:errdump ok!", within="60s")
    assert "errDump:Custom server errlog.example.com 9999" in dev.lines()
    assert srv.got == [b"edtest_LuatOS-SoC_V2001_Air8101,1.0.0,DEV1,flag,\r\n"
                       b"poweron reason:0\r\nmain.lua:3: boom\r\nr1;\r\n"]
    assert dev.errdump.sys_log == b"" and dev.errdump.usr_log == b""
    dev.run_for("70s")
    assert len(srv.got) == 1  # nothing new, nothing sent


def test_each_record_is_uploaded_two_seconds_later(
        boot: Callable[..., Device], log_server: Callable[[bytes | None], LogServer]) -> None:
    srv = log_server(b'{"r": 1}')
    dev = boot(WIFI + """
errDump.config(true, 600, nil, "ID9", "errlog.example.com", 9999)
sys.taskInit(function()
  up()
  sys.wait(10000)
  errDump.record("later")
  log.info("recorded")
end)
sys.run()
""")
    dev.net.map_address("errlog.example.com:9999", f"127.0.0.1:{srv.port}")
    dev.run_until("I/user.recorded", within="30s")
    dev.run_for("5s")
    assert srv.got == [b"edtest_LuatOS-SoC_V2001_Air8101,1.0.0,ID9,,\r\npoweron reason:0\r\n",
                       b"edtest_LuatOS-SoC_V2001_Air8101,1.0.0,ID9,,\r\nlater\r\n"]
    assert dev.errdump.usr_log == b""


def test_a_silent_server_keeps_the_logs_and_is_retried_next_period(
        boot: Callable[..., Device], log_server: Callable[[bytes | None], LogServer]) -> None:
    srv = log_server(None)
    dev = boot(UPLOAD)
    dev.net.map_address("errlog.example.com:9999", f"127.0.0.1:{srv.port}")
    dev.run_until("errDump:errdump server connect or tx fail, after 60 second retry",
                  within="60s")
    assert len(srv.got) == 3  # sent three times, 10 s apart
    assert "errDump:errdump tx fail 1 cnt, retry" in dev.lines()
    assert "errDump:errdump tx fail 2 cnt, retry" in dev.lines()
    assert dev.errdump.usr_log == b"r1;"
    sent = [e.ms for e in dev.trace if e.kind == "errdump_tx"]
    assert [b - a for a, b in zip(sent, sent[1:], strict=False)] == [10_000, 10_000]
    dev.run_for("65s")
    assert len(srv.got) == 4  # the next period's attempt, 60 s after giving up
    assert sent[0] + 30_000 + 60_000 in [e.ms for e in dev.trace if e.kind == "errdump_tx"]
    assert dev.errdump.usr_log == b"r1;"
    assert not crashes(dev)


def test_a_lowercase_ok_is_not_an_acknowledgement(
        boot: Callable[..., Device], log_server: Callable[[bytes | None], LogServer]) -> None:
    srv = log_server(b"ok")
    dev = boot(UPLOAD)
    dev.net.map_address("errlog.example.com:9999", f"127.0.0.1:{srv.port}")
    dev.run_until("after 60 second retry", within="60s")
    assert "errDump:errdump response error ok" in dev.lines()
    assert len(srv.got) == 3
    assert dev.errdump.usr_log == b"r1;"


def test_an_unknown_host_keeps_the_logs_and_the_script_runs(boot: Callable[..., Device]) -> None:
    dev = boot(UPLOAD)
    dev.net.dns_fail("errlog.example.com")
    dev.run_for("20s")
    assert "I/user.online" in dev.lines()
    assert "errDump:errdump fail, after 60 second retry" in dev.lines()
    assert dev.errdump.usr_log == b"r1;"
    assert not crashes(dev)


def test_a_crash_is_uploaded_by_the_next_boot(
        boot: Callable[..., Device], log_server: Callable[[bytes | None], LogServer]) -> None:
    """The vendor's own-server demo: user records every 15 s, a typo kills the VM at 60 s; the
    boot after the reset sends the error with power-on reason 3 and the "OK" clears it."""
    srv = log_server(b"OK")
    dev = boot("""
PROJECT = "dumpdemo"
VERSION = "1.0.0"
sys = require("sys")
sys.taskInit(function()
  while not socket.adapter(socket.dft()) do sys.waitUntil("IP_READY", 1000) end
  errDump.config(true, 600, nil, nil, "112.125.89.8", 47816)
  while true do
    sys.wait(15000)
    errDump.record("user note;")
  end
end)
sys.taskInit(function()
  sys.wait(60000)
  lllllllllog.info("never")
end)
sys.run()
""", model="Air780E")
    dev.net.map_address("112.125.89.8:47816", f"127.0.0.1:{srv.port}")
    dev.run_until("errDump:errdump ok!", within="40s")  # the first boot's first upload
    dev.run_for("90s")  # the crash at 61 s, 15 s to the reset, the next boot's upload
    assert len(dev.boots) == 2 and dev.boots[0].outcome == "error"
    error = dev.boots[0].error
    assert error is not None and "lllllllllog" in error
    assert srv.got[0].endswith(b",864536071234561,,\r\npoweron reason:0\r\n")
    assert b"user note;\r\n" in srv.got[1]
    last = srv.got[-1]
    assert last == (b"dumpdemo_LuatOS-SoC_V1112_EC618,1.0.0,864536071234561,,\r\n"
                    b"poweron reason:3\r\n" + error.encode() + b"\r\n")
    assert dev.errdump.sys_log == b""
