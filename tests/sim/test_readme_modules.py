"""The README's table of firmware modules names every module some model profile installs."""

from __future__ import annotations

import re
from pathlib import Path

from luatos_sim.profiles import PROFILES

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_profile_module_is_in_the_readme_table() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Firmware modules per model", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([A-Za-z0-9]+)`", section))
    modules = set().union(*(p.modules for p in PROFILES.values()))
    assert modules - listed == set()
    # the per-model columns agree with the profiles for the model-specific modules
    rows = {m: line for line in section.splitlines() for m in re.findall(r"^\| `([a-z]+)`", line)}
    for module in ("wlan", "mobile"):
        cells = [c.strip() for c in rows[module].split("|")[2:5]]
        for model, cell in zip(("Air8101", "Air780E", "Air8000"), cells, strict=True):
            assert (cell != "–") == (module in PROFILES[model].modules), (module, model)


def test_a_module_the_firmware_has_but_not_emulated_is_present_and_named() -> None:
    """fatfs exists on the device, so `if fatfs then` is true here too; calling into it
    fails like a nil call and the emulator says what is missing."""
    from luatos_common.logline import SIM
    from luatos_sim import Device

    src = (b'log.info("has", fatfs ~= nil)\n'
           b'sys.taskInit(function() sys.wait(10); fatfs.mount() end)\n'
           b"sys.run()\n")
    with Device(files={"main.lua": src}, model="Air8101") as dev:
        dev.run_for("2s")
        assert "I/user.has true" in dev.lines()
        assert any("attempt to call a nil value (field 'mount')" in ln for ln in dev.lines())
        notes = [r.text for r in dev.log if r.source == SIM]
        assert any(n.startswith("fatfs.mount is not emulated by luatos-sim") for n in notes)
