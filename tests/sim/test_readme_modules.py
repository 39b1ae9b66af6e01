"""The README's table of firmware modules names every module some model profile installs."""

from __future__ import annotations

import re
from pathlib import Path

from luatos_sim.profiles import PROFILES

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_profile_module_is_in_the_readme_table() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Firmware modules per model", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z0-9]+)`", section))
    modules = set().union(*(p.modules for p in PROFILES.values()))
    assert modules - listed == set()
    # the per-model columns agree with the profiles for the model-specific modules
    rows = {m: line for line in section.splitlines() for m in re.findall(r"^\| `([a-z]+)`", line)}
    for module in ("wlan", "mobile"):
        cells = [c.strip() for c in rows[module].split("|")[2:5]]
        for model, cell in zip(("Air8101", "Air780E", "Air8000"), cells, strict=True):
            assert (cell != "–") == (module in PROFILES[model].modules), (module, model)
