"""pm: PSM+ deep sleep at the next idle point, dtimer wake-ups, lastReson, failure switch."""

from __future__ import annotations

import pytest

FOUR_H = 4 * 3600 * 1000

PSM_MAIN = """
PROJECT = "PSM" VERSION = "001.000.000"
fskv.init()
local n = (fskv.get("boots") or 0) + 1
fskv.set("boots", n)
log.info("boot", n, pm.lastReson())
log.info("wkid", pm.dtimerWkId())
sys.taskInit(function()
  sys.wait(2000)
  log.info("psm", "enter")
  log.info("dt", pm.dtimerStart(2, 14400000), pm.dtimerCheck(2))
  log.info("pw", pm.power(pm.WORK_MODE, 3))
  log.info("psm", "still running until idle")
  sys.wait(15000)
  log.info("psm", "进入PSM+失败,重启")
  rtos.reboot()
end)
sys.run()
"""


def user(dev, tag, boot=None):
    return [ln for ln in dev.lines(boot) if ln.startswith(f"I/user.{tag} ")]


def test_four_hour_wake_cycle(boot):
    dev = boot(PSM_MAIN)
    dev.run_for("12h10m")
    assert [b.reason for b in dev.boots] == ["power-on", "wake", "wake", "wake"]
    assert [b.outcome for b in dev.boots[:3]] == ["sleep"] * 3
    assert user(dev, "boot", 1) == ["I/user.boot 1 0 0 0 0"]
    assert user(dev, "boot", 2) == ["I/user.boot 2 1 3 0 0"]
    assert user(dev, "wkid", 1) == ["I/user.wkid -1"]
    assert user(dev, "wkid", 2) == ["I/user.wkid 2"]
    # the code after pm.power still runs: sleep starts at the next idle point
    assert "I/user.psm still running until idle" in dev.lines(1)
    assert not any("失败" in ln for ln in dev.lines())
    assert user(dev, "dt", 1) == ["I/user.dt true true 14400000"]
    slept = dev.boots[0].ended_ms
    assert dev.boots[1].started_ms == slept + FOUR_H
    wake_banner = [r.text for r in dev.log if r.boot == 2 and r.tag == "pm"]
    assert "boot up by deep sleep wakeup" in wake_banner
    kinds = [(t.kind, t.boot) for t in dev.trace]
    assert kinds.index(("dtimer_start", 1)) < kinds.index(("power_mode", 1)) < \
        kinds.index(("sleep", 1)) < kinds.index(("wake", 1))


def test_psm_entry_failure_switch_runs_the_demo_failure_path(boot):
    dev = boot(PSM_MAIN)
    dev.power.psm_entry_fails = True
    dev.run_for("20s")
    assert "I/user.psm 进入PSM+失败,重启" in dev.lines(1)
    assert [b.reason for b in dev.boots] == ["power-on", "reboot"]
    assert user(dev, "boot", 2) == ["I/user.boot 2 0 0 3 0"]
    assert any(t.kind == "sleep_failed" for t in dev.trace)


def test_sleep_without_dtimer_waits_for_an_injected_wake(boot):
    dev = boot("""
        log.info("reason", pm.lastReson())
        log.info("wk", pm.dtimerWkId())
        if select(1, pm.lastReson()) == 0 then
          sys.taskInit(function() sys.wait(100); pm.request(pm.HIB) end)
        end
        sys.run()
    """)
    dev.run_for("850ms")  # main ran (800 ms), the task has not asked for sleep yet
    with pytest.raises(RuntimeError, match="not in deep sleep"):
        dev.power.wake()
    dev.run_for("30d")
    assert len(dev.boots) == 1 and dev.power.asleep
    dev.power.wake("1s")
    dev.run_for("2s")
    assert [b.reason for b in dev.boots] == ["power-on", "wake"]
    assert user(dev, "reason", 2) == ["I/user.reason 2 3 0 0"]
    assert user(dev, "wk", 2) == ["I/user.wk -1"]


def test_dtimers_check_list_stop_and_earliest_wins(boot):
    dev = boot("""
        log.info("wk", pm.dtimerWkId(), pm.dtimerCheck(1), pm.dtimerCheck(3))
        if pm.dtimerWkId() == -1 then
          log.info("bad", pm.dtimerStart(6, 1000), pm.dtimerStart(1, 0))
          pm.dtimerStart(1, 60000)
          pm.dtimerStart(3, 30000)
          pm.dtimerStart(4, 10000)
          pm.dtimerStop(4)
          local l = pm.dtimerList()
          log.info("list", l[1], l[3], l[4])
          log.info("check", pm.dtimerCheck(4), pm.dtimerCheck(3))
          pm.power(pm.WORK_MODE, 3)
        end
        sys.run()
    """)
    dev.run_for("1m")
    assert user(dev, "bad") == ["I/user.bad false false"]
    assert user(dev, "list") == ["I/user.list 60000 30000 nil"]
    assert user(dev, "check") == ["I/user.check false true 30000"]
    assert user(dev, "wk", 2) == ["I/user.wk 3 false false"]  # woken by 3; all cleared
    assert dev.boots[1].started_ms - dev.boots[0].ended_ms == 30000


def test_dtimers_do_not_survive_a_reboot(boot):
    dev = boot("""
        fskv.init()
        local n = (fskv.get("n") or 0) + 1
        fskv.set("n", n)
        log.info("chk", n, pm.dtimerCheck(2))
        if n == 1 then pm.dtimerStart(2, 60000); sys.timerStart(rtos.reboot, 10) end
        sys.run()
    """)
    dev.run_for("2s")
    assert user(dev, "chk") == ["I/user.chk 1 false", "I/user.chk 2 false"]


def test_other_pm_functions_answer(boot):
    dev = boot("""
        log.info("misc", pm.request(pm.LIGHT), pm.force(pm.IDLE), pm.ioVol(0, 3300),
                 pm.wakeupPin(8, 0), pm.keep(1), pm.WORK_MODE, pm.DEEP, pm.HIB)
        log.info("check", pm.check())
        log.info("req", pm.request(9))
        sys.taskInit(function() sys.wait(1000); pm.shutdown(); log.info("never") end)
        sys.run()
    """)
    dev.run_for("1h")
    assert user(dev, "misc") == ["I/user.misc true true true true true 6 3 4"]
    assert user(dev, "check") == ["I/user.check true 1 0"]
    assert user(dev, "req") == ["I/user.req false"]
    assert not user(dev, "never")
    assert dev.boots[0].outcome == "sleep" and len(dev.boots) == 1
    assert any(t.kind == "shutdown" for t in dev.trace)
    dev.power.wake()  # the power key
    dev.run_for("2s")
    assert [b.reason for b in dev.boots] == ["power-on", "power-on"]


def test_staged_package_applied_on_psm_wake(boot):
    from luatos_common.packages import build_air8101_ota
    dev = boot(PSM_MAIN)
    dev.run_for("1s")
    dev.fota.begin()
    new_main = PSM_MAIN.replace('log.info("boot"', 'log.info("new", "yes") log.info("boot"')
    dev.fota.write(build_air8101_ota({"main.lua": new_main.encode()}))
    assert dev.fota.end(True)
    dev.run_for("4h1m")
    assert dev.boots[1].reason == "wake"
    assert user(dev, "new", 2) == ["I/user.new yes"]


def test_wakeup_pin_wakes_a_sleeping_device(boot):
    dev = boot("""
        log.info("reason", pm.lastReson())
        if select(1, pm.lastReson()) == 0 then
          pm.wakeupPin(8, 0)
          pm.dtimerStart(1, 3600000)
          sys.timerStart(pm.power, 100, pm.WORK_MODE, 3)
        end
        sys.run()
    """)
    dev.gpio.set_input(8, 1)
    dev.gpio.press(8, at="10m")
    dev.run_for("20m")
    assert [b.reason for b in dev.boots] == ["power-on", "wake"]
    assert user(dev, "reason", 2) == ["I/user.reason 2 3 0 0"]
    assert dev.boots[1].started_ms == 600_000
    dev.run_for("2h")
    assert len(dev.boots) == 2  # the dtimer was cleared by the pad wake
