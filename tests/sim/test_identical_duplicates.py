"""Byte-identical files under one name in two folders are one /luadb file, with a note;
different contents stay an error (issue 9 item 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from luatos_common.project import ProjectError, scan_project
from luatos_sim import Device
from luatos_sim.scripts import ScriptError

from .conftest import write_project


def test_identical_pair_is_accepted_with_a_note(tmp_path: Path) -> None:
    proj = write_project(tmp_path / "p", {
        "main.lua": 'local c = require "mqtt_cfg"; log.info("cfg", c.host); sys.run()',
        "demo_a/mqtt_cfg.lua": 'return {host = "broker.example.com"}',
        "demo_b/mqtt_cfg.lua": 'return {host = "broker.example.com"}',
    })
    with Device(proj) as dev:
        dev.run_for("1s")
        assert "I/user.cfg broker.example.com" in dev.lines()
        notes = [r.text for r in dev.log if r.source == "sim"]
        assert any("demo_a/mqtt_cfg.lua and demo_b/mqtt_cfg.lua are the same file" in n
                   for n in notes), notes


def test_different_contents_stay_an_error(tmp_path: Path) -> None:
    proj = write_project(tmp_path / "p", {
        "main.lua": "sys.run()", "a/cfg.lua": "return 1", "b/cfg.lua": "return 2 "})
    with pytest.raises(ScriptError, match="duplicate file name 'cfg.lua'"):
        Device(proj)
    with pytest.raises(ProjectError):
        scan_project(proj)


def test_scan_keeps_one_copy(tmp_path: Path) -> None:
    proj = write_project(tmp_path / "p", {"a/x.lua": "return 1", "b/x.lua": "return 1"})
    notes: list[str] = []
    files = scan_project(proj, notes)
    assert list(files) == ["x.lua"] and files["x.lua"].read() == b"return 1"
    assert len(notes) == 1
