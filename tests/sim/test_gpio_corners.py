"""gpio.setup checks its pin like luaL_checkinteger; each model has its firmware's constants
(issue 9 item 7)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from luatos_sim import Device


def test_setup_pin_is_checked_like_luaL_checkinteger(boot: Callable[..., Device]) -> None:
    dev = boot("""
        PROJECT = "g" VERSION = "1.0.0"
        log.info("nil", pcall(gpio.setup, nil, 0))
        log.info("none", pcall(gpio.setup))
        log.info("str", pcall(gpio.setup, "x", 0))
        log.info("frac", pcall(gpio.setup, 1.5, 0))
        log.info("ok", type(gpio.setup(7.0, 0)), type(gpio.setup("8", nil)))
        local ok, err = pcall(function() gpio.setup(nil, 0) end)
        log.info("where", err)
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert "I/user.nil false bad argument #1 to 'setup' (number expected, got nil)" in lines
    assert "I/user.none false bad argument #1 to 'setup' (number expected, got no value)" in lines
    assert "I/user.str false bad argument #1 to 'setup' (number expected, got string)" in lines
    assert ("I/user.frac false bad argument #1 to 'setup' (number has no integer representation)"
            in lines)
    assert "I/user.ok function function" in lines
    assert "I/user.where main.lua:7: bad argument #1 to 'setup' (number expected, got nil)" in lines


@pytest.mark.parametrize(("model", "pwr_key", "wakeup0"), [
    ("Air780E", "35", "32"), ("Air8000", "46", "40"), ("Air8101", "nil", "nil")])
def test_model_constants(boot: Callable[..., Device], model: str, pwr_key: str,
                         wakeup0: str) -> None:
    dev = boot("""
        PROJECT = "g" VERSION = "1.0.0"
        log.info("const", gpio.PWR_KEY, gpio.WAKEUP0, gpio.HIGH, gpio.BOTH)
    """, model=model)
    dev.run_for("1s")
    assert f"I/user.const {pwr_key} {wakeup0} 1 2" in dev.lines()
