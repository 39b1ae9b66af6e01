"""A whole module or function the model's firmware has but the emulator does not is named once,
then the script meets its own Lua error (issue 9 item 12)."""

from __future__ import annotations

from collections.abc import Callable

from luatos_sim import Device


def _notes(dev: Device) -> list[str]:
    return [r.text for r in dev.log if r.source == "sim"]


def test_missing_module_and_function_are_named_once(boot: Callable[..., Device]) -> None:
    dev = boot("""
        PROJECT = "ne" VERSION = "1.0.0"
        log.info("i2c", pcall(function() return i2c.setup(0) end))
        log.info("again", pcall(function() return i2c.setup(0) end))
        log.info("dexist", pcall(function() return io.dexist("/") end))
        log.info("ble", type(ble), type(nosuchglobal), type(io.exists))
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert "I/user.i2c false main.lua:2: attempt to index a nil value (global 'i2c')" in lines
    assert "I/user.again false main.lua:3: attempt to index a nil value (global 'i2c')" in lines
    assert any(ln.startswith("I/user.dexist false main.lua:4: attempt to call a nil value")
               for ln in lines)
    assert "I/user.ble nil nil function" in lines
    notes = _notes(dev)
    named = [n.split(" ", 1)[0] for n in notes if "is not emulated" in n]
    assert named == ["i2c", "io.dexist", "ble"], notes
    assert "model Air8101" in next(n for n in notes if n.startswith("i2c "))


def test_a_module_the_model_lacks_is_not_named(boot: Callable[..., Device]) -> None:
    dev = boot("""
        PROJECT = "ne" VERSION = "1.0.0"
        log.info("ble", type(ble), type(wlan))
    """, model="Air780E")
    dev.run_for("1s")
    assert "I/user.ble nil nil" in dev.lines()
    assert not [n for n in _notes(dev) if "is not emulated" in n]
