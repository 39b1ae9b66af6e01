"""Lua execution has a virtual cost, so a busy loop meets the watchdog at the right virtual
moment (issue 9 item 6)."""

from __future__ import annotations

from collections.abc import Callable

from luatos_common.logline import SIM
from luatos_sim import Device, DeviceOptions
from luatos_sim.lifecycle import BootOutcome

BUSY_AFTER_WDT = """
PROJECT = "w" VERSION = "1.0.0"
wdt.init(3000)
log.info("armed", mcu.ticks())
sys.taskInit(function()
    sys.wait(1000)
    log.info("spin", mcu.ticks())
    local x = 0
    while true do x = x + 1 end
end)
sys.run()
"""


def _ms(dev: Device, prefix: str) -> int:
    rec = next(r for r in dev.log if r.line.startswith(prefix))
    return int(rec.line.split()[-1])


def test_busy_loop_trips_wdt_at_its_deadline(boot: Callable[..., Device]) -> None:
    dev = boot(BUSY_AFTER_WDT)
    dev.run_for("6s")
    armed = _ms(dev, "I/user.armed")
    assert _ms(dev, "I/user.spin") == armed + 1000
    first = dev.boots[0]
    assert first.outcome == BootOutcome.WATCHDOG
    note = next(r for r in dev.log if r.source == SIM and "watchdog: not fed" in r.text)
    assert note.device_ms == armed + 3000  # not at the loop's start, not later
    assert first.ended_ms == armed + 3000


def test_a_long_computation_takes_virtual_time(boot: Callable[..., Device]) -> None:
    src = """
        PROJECT = "w" VERSION = "1.0.0"
        local t0 = mcu.ticks()
        local x = 0
        for i = 1, 2000000 do x = x + i end
        log.info("took", mcu.ticks() - t0)
    """
    dev = boot(src)
    dev.run_for("5s")
    took = _ms(dev, "I/user.took")
    # ~2 VM instructions per iteration (ADD, FORLOOP) at the Air8101's nominal 5,000 per ms
    assert 700 <= took <= 1000, took
    free = boot(src, options=DeviceOptions(epoch_at_power_on=1_700_000_000,
                                           lua_instructions_per_ms=0))
    free.run_for("5s")
    assert _ms(free, "I/user.took") == 0
    faster = boot(src, options=DeviceOptions(epoch_at_power_on=1_700_000_000,
                                             lua_instructions_per_ms=50_000))
    faster.run_for("5s")
    assert _ms(faster, "I/user.took") * 10 == pytest_approx(took)


def pytest_approx(v: int) -> object:
    import pytest
    return pytest.approx(v, rel=0.05)


def test_busy_loop_guard_resets_after_its_virtual_cost(boot: Callable[..., Device]) -> None:
    dev = boot("""
        PROJECT = "w" VERSION = "1.0.0"
        sys.taskInit(function() sys.wait(100) log.info("spin", mcu.ticks()) while true do end end)
        sys.run()
    """, options=DeviceOptions(epoch_at_power_on=1_700_000_000,
                               busy_loop_instructions=10_000_000))
    dev.run_for("5s")
    first = dev.boots[0]
    assert first.outcome == BootOutcome.WATCHDOG
    spin = _ms(dev, "I/user.spin")
    # 10 M instructions at 5,000 per ms: the reset comes 2 s of virtual time later
    assert first.ended_ms is not None and abs(first.ended_ms - (spin + 2000)) <= 2
