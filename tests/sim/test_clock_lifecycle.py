"""One clock and one lifecycle: cancellable host events, typed boot reasons, the public
power_on/power_off/reboot/wake/start_boot of a Device, and the binding seam."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import luatos_sim
from luatos_sim import Device, DeviceOptions
from luatos_sim.clock import Timeline
from luatos_sim.lifecycle import WAKE_BY_DTIMER, BootOutcome, BootReason, WakeCause

MAIN = 'log.info("up", pm.lastReson())\nsys.run()\n'
PKG = Path(luatos_sim.__file__).parent


def device(main: str = MAIN, **kw: object) -> Device:
    return Device(files={"main.lua": main.encode()},
                  options=DeviceOptions(epoch_at_power_on=1_700_000_000,
                                        exit_reboot_delay_ms=2000), **kw)  # type: ignore[arg-type]


# -- the timeline -----------------------------------------------------------------------------------


def test_timeline_runs_events_by_due_time_then_scheduling_order() -> None:
    t = Timeline()
    ran: list[str] = []
    t.at(20, lambda: ran.append("b"), "b")
    t.at(10, lambda: ran.append("a"), "a")
    t.at(20, lambda: ran.append("c"), "c")
    assert t.next_due() == 10
    while (e := t.pop_due(100)) is not None:
        e.fire()
    assert ran == ["a", "b", "c"]


def test_a_cancelled_handle_never_fires_and_labels_mean_nothing() -> None:
    t = Timeline()
    ran: list[str] = []
    keep = t.at(5, lambda: ran.append("keep"), "same label")
    drop = t.at(5, lambda: ran.append("drop"), "same label")
    drop.cancel()
    assert not drop.pending and keep.pending
    while (e := t.pop_due(10)) is not None:
        e.fire()
    assert ran == ["keep"]
    assert t.pop_due(10) is None and t.next_due() is None


def test_pop_due_respects_the_horizon_and_time_never_goes_back() -> None:
    t = Timeline()
    t.at(50, lambda: None, "later")
    assert t.pop_due(49) is None
    t.advance_to(30)
    t.advance_to(10)
    assert t.now == 30


def test_following_a_boot_clock_hands_time_back_when_it_ends() -> None:
    t = Timeline()
    t.advance_to(100)
    boot_clock = [0]
    t.follow(lambda: boot_clock[0], lambda v: boot_clock.__setitem__(0, v))
    assert boot_clock[0] == 100
    boot_clock[0] = 250
    assert t.now == 250
    t.unfollow()
    boot_clock[0] = 999
    assert t.now == 250


# -- the device lifecycle -----------------------------------------------------------------------------


def test_boot_reasons_and_outcomes_are_typed_and_still_read_as_text() -> None:
    with device() as dev:
        dev.run_for("1s")
        info = dev.boots[0]
        assert info.reason is BootReason.POWER_ON and info.reason == "power-on"
        assert info.outcome is BootOutcome.RUNNING


def test_schedule_returns_a_handle_that_cancels() -> None:
    with device() as dev:
        hits: list[int] = []
        kept = dev.schedule("2s", lambda: hits.append(dev.current_ms()), "tick")
        dropped = dev.schedule("3s", lambda: hits.append(-1), "tick")
        dropped.cancel()
        dev.run_for("5s")
        assert hits == [2000]
        assert not kept.pending


def test_power_off_ends_the_boot_and_drops_the_pending_reboot_until_power_on() -> None:
    # main returns: the firmware would reboot after exit_reboot_delay_ms (2 s here).
    with device('log.info("up")\n') as dev:
        dev.run_for("1s")
        assert dev.boots[0].outcome is BootOutcome.EXIT
        dev.power_off()
        dev.run_for("10s")
        assert len(dev.boots) == 1  # the reboot after the exit went with the power
        dev.power_on()
        dev.run_for("1s")
        assert [b.reason for b in dev.boots] == [BootReason.POWER_ON, BootReason.POWER_ON]


def test_power_off_while_running_stops_lua_where_it_is() -> None:
    src = 'sys.taskInit(function() while true do sys.wait(100); log.info("tick") end end)\n' \
          'sys.run()\n'
    with device(src) as dev:
        dev.run_for("2s")
        ticks = sum(1 for ln in dev.lines() if ln == "I/user.tick")
        dev.power_off()
        assert dev.boot is None and dev.boots[0].outcome is BootOutcome.POWER_OFF
        dev.run_for("5s")
        assert sum(1 for ln in dev.lines() if ln == "I/user.tick") == ticks


def test_reboot_from_outside_is_a_software_reset() -> None:
    with device() as dev:
        dev.run_for("1s")
        dev.reboot()
        dev.run_for("2s")
        assert [b.reason for b in dev.boots] == ["power-on", "reboot"]
        assert dev.boots[0].outcome is BootOutcome.REBOOT
        assert "I/user.up 0 0 3 0" in dev.lines(boot=2)


def test_watchdog_reboot_reports_detail_8() -> None:
    with device() as dev:
        dev.run_for("1s")
        dev.reboot(BootReason.WATCHDOG)
        dev.run_for("2s")
        assert dev.boots[1].reason is BootReason.WATCHDOG
        assert "I/user.up 0 0 8 0" in dev.lines(boot=2)
        with pytest.raises(ValueError, match="REBOOT or WATCHDOG"):
            dev.reboot(BootReason.WAKE)


def test_start_boot_refuses_while_a_boot_runs_and_wake_reports_its_cause() -> None:
    with device() as dev:
        dev.run_for("1s")
        with pytest.raises(RuntimeError, match="is running"):
            dev.start_boot(BootReason.POWER_ON)
        dev.enter_sleep()
        assert dev.boots[0].outcome is BootOutcome.SLEEP
        dev.wake(WakeCause(1, 3, 0, 0))
        dev.run_for("1s")
        assert dev.boots[1].reason is BootReason.WAKE
        assert dev.last_reset == WAKE_BY_DTIMER
        assert "I/user.up 1 3 0 0" in dev.lines(boot=2)


def test_a_pad_wake_cancels_the_pending_dtimer_wake() -> None:
    src = """
    if pm.lastReson() == 0 then
      pm.dtimerStart(0, 60000)
      pm.wakeupPin(7, 0)
      pm.power(pm.WORK_MODE, 3)
    end
    log.info("boot", pm.lastReson())
    sys.run()
    """
    with device(src) as dev:
        dev.run_for("5s")
        assert dev.power.asleep
        dev.gpio.set_input(7, 0)
        dev.run_for("2m")
        # Woken by the pad at 5 s; the dtimer's wake at 60 s must not start a third boot.
        assert [b.reason for b in dev.boots] == ["power-on", "wake"]


# -- the seam ---------------------------------------------------------------------------------------


def _attribute_chains(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            found.append((node.lineno, f"?.{node.value.attr}.{node.attr}"))
    return found


@pytest.mark.parametrize("path", sorted((PKG / "modules").glob("*.py")), ids=lambda p: p.name)
def test_bindings_never_reach_through_boot_device(path: Path) -> None:
    bad = [(n, chain) for n, chain in _attribute_chains(path) if chain.endswith(".device")
           or ".device." in chain]
    assert not bad, f"{path.name} reaches through boot.device: {bad}"


@pytest.mark.parametrize("path", sorted([*(PKG / "modules").glob("*.py"),
                                          *(PKG / "platform").glob("*.py")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_private_member_of_device_or_boot_is_used_outside_them(path: Path) -> None:
    bad = [(n, chain) for n, chain in _attribute_chains(path)
           if chain.split(".")[-2] in ("device", "boot", "dev") and
           chain.split(".")[-1].startswith("_")]
    assert not bad, f"{path.name} uses private members: {bad}"
