"""The README's "Test your hardware logic" example runs as written (project and test)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def blocks() -> tuple[str, str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Test your hardware logic", 1)[1].split("\n## ", 1)[0]
    lua = re.search(r"```lua\n(.*?)```", section, re.S)
    py = re.search(r"```python\n(.*?)```", section, re.S)
    assert lua and py, "the README section lost its code blocks"
    return lua[1], py[1]


def test_readme_hardware_example_runs(tmp_path, monkeypatch):
    lua, py = blocks()
    assert len(py.strip().splitlines()) <= 18
    project = tmp_path / "thermometer"
    project.mkdir()
    (project / "main.lua").write_text(lua, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(py, "README.md", "exec"), namespace)
    test = namespace["test_thermometer"]
    monkeypatch.setenv("LUATOS_UPDATE_SCREENS", "1")  # the first run stores the picture
    (tmp_path / "run1").mkdir()
    test(tmp_path / "run1")  # type: ignore[operator]
    assert (tmp_path / "screens" / "hot.png").exists()
    monkeypatch.delenv("LUATOS_UPDATE_SCREENS")  # the second run compares with it
    (tmp_path / "run2").mkdir()
    test(tmp_path / "run2")  # type: ignore[operator]
    assert (tmp_path / "run2" / "screen.png").stat().st_size > 0


def test_readme_project_says_no_sensor_with_nothing_attached(tmp_path):
    from luatos_sim import Device
    lua, _ = blocks()
    (tmp_path / "main.lua").write_text(lua, encoding="utf-8")
    with Device(tmp_path) as dev:
        dev.run_until(r"I/user\.temp none", within="5s")
        assert dev.lcd.pixel(5, 5) == (0, 0, 255)
