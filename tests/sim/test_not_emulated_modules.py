"""A whole module or function the model's firmware has but the emulator does not is named once,
then the script meets its own Lua error (issue 9 item 12)."""

from __future__ import annotations

from collections.abc import Callable

from luatos_sim import Device


def _notes(dev: Device) -> list[str]:
    return [r.text for r in dev.log if r.source == "sim"]


def test_missing_module_is_named_once(boot: Callable[..., Device]) -> None:
    dev = boot("""
        PROJECT = "ne" VERSION = "1.0.0"
        log.info("eink", pcall(function() return eink.setup(0) end))
        log.info("again", pcall(function() return eink.setup(0) end))
        log.info("lvgl", type(lvgl), type(nosuchglobal), type(io.exists))
        log.info("fatfs", type(fatfs), pcall(function() return fatfs.mount("SD") end))
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert "I/user.eink false main.lua:2: attempt to index a nil value (global 'eink')" in lines
    assert "I/user.again false main.lua:3: attempt to index a nil value (global 'eink')" in lines
    assert "I/user.lvgl nil nil function" in lines
    # fatfs is the other kind: its table exists as on the device, its functions are missing
    assert any(ln.startswith("I/user.fatfs table false main.lua:5: attempt to call a nil value")
               for ln in lines), lines
    notes = _notes(dev)
    named = [n.split(" ", 1)[0] for n in notes if "is not emulated" in n]
    assert named[:2] == ["eink", "lvgl"], notes
    assert "model Air8101" in next(n for n in notes if n.startswith("eink "))


def test_a_module_the_model_lacks_is_not_named(boot: Callable[..., Device]) -> None:
    dev = boot("""
        PROJECT = "ne" VERSION = "1.0.0"
        log.info("ble", type(ble), type(wlan))
    """, model="Air780E")
    dev.run_for("1s")
    assert "I/user.ble nil nil" in dev.lines()  # the Air780E has neither: nothing to name
    assert not [n for n in _notes(dev) if "is not emulated" in n]
