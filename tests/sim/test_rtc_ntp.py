"""rtc and SNTP on the virtual clock: rtc.set moves os.time (and survives a soft reboot), an
alarm rings RTC_IRQ at its virtual time, socket.sntp answers NTP_UPDATE and ntptm reports it."""

from __future__ import annotations

from collections.abc import Callable

from luatos_sim import Device, DeviceOptions


def test_rtc_set_get_alarm_and_reboot(boot: Callable[..., Device]) -> None:
    dev = boot("""
log.info("t0", os.time())
log.info("set", rtc.set({year = 2030, mon = 1, day = 2, hour = 3, min = 4, sec = 5}))
local t = rtc.get()
log.info("get", t.year, t.mon, t.day, t.hour, t.min, t.sec, os.time())
log.info("bad", rtc.set({year = 2030}))
log.info("alarm", rtc.timerStart(0, {year = 2030, mon = 1, day = 2, hour = 3, min = 5, sec = 5}))
sys.taskInit(function()
  local ok = sys.waitUntil("RTC_IRQ", 120000)
  log.info("irq", ok, os.time())
  if fskv.init() and not fskv.get("rebooted") then
    fskv.set("rebooted", true)
    rtos.reboot()
  end
  log.info("after", os.time() > 1893553445)
end)
sys.run()
""", options=DeviceOptions(epoch_at_power_on=1_700_000_000))
    dev.run_until("I/user.after", within="5m")
    lines = dev.lines()
    assert "I/user.t0 1700000000" in lines
    assert "I/user.set true" in lines
    assert "I/user.get 2030 1 2 3 4 5 1893553445" in lines
    assert "I/user.bad false" in lines and "I/user.alarm true" in lines
    assert "I/user.irq true 1893553505" in lines  # 60 s later, in virtual time
    assert "I/user.after true" in lines  # the RTC kept the set time across the reboot


def test_sntp_update_and_ntptm(boot: Callable[..., Device]) -> None:
    dev = boot("""
sys.taskInit(function()
  log.info("before", socket.ntptm().vaild)
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
  socket.sntp()
  log.info("ntp", sys.waitUntil("NTP_UPDATE", 5000))
  local tm = socket.ntptm()
  log.info("tm", tm.vaild, tm.tsec == os.time(), tm.ndelay)
end)
sys.run()
""")
    dev.run_until("I/user.tm", within="30s")
    lines = dev.lines()
    assert "I/user.before false" in lines
    assert "I/user.ntp true" in lines
    assert "I/user.tm true true 200" in lines


def test_sntp_without_network_never_updates(boot: Callable[..., Device]) -> None:
    dev = boot("""
sys.taskInit(function()
  socket.sntp()
  log.info("ntp", sys.waitUntil("NTP_UPDATE", 10000))
end)
sys.run()
""")
    dev.run_until("I/user.ntp", within="30s")
    assert "I/user.ntp false" in dev.lines()
