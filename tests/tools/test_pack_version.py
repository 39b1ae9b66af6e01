"""luatos-pack --version: build the release a device upgrades to without editing the project."""

from __future__ import annotations

from pathlib import Path

import pytest

from luatos_common.packages import detect_and_validate
from luatos_common.scriptcheck import ScriptCheckError, stamp_version
from luatos_tools.pack_cli import main

MAIN = b'PROJECT = "fotademo"\r\nVERSION = \'001.000.000\'\r\n-- VERSION = "9.9.9"\r\nsys.run()\r\n'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "main.lua").write_bytes(MAIN)
    return root


def test_ota_version_is_stamped_into_the_packed_main_lua_only(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ota", str(project), "--version", "001.000.001", "-o", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "fotademo_2001.001.001_LuatOS-SoC_Air8101.bin"  # the name follows it
    packed = detect_and_validate(out.read_bytes()).files
    assert packed is not None
    assert packed["main.lua"] == MAIN.replace(b"'001.000.000'", b"'001.000.001'")
    assert (project / "main.lua").read_bytes() == MAIN


@pytest.mark.parametrize("bad", ["1.0.1", "001.000", "001.000.001x", "v001.000.001"])
def test_ota_version_refuses_what_a_device_cannot_declare(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str) -> None:
    code = main(["ota", str(project), "--version", bad, "-o", str(tmp_path / "x.bin")])
    err = capsys.readouterr().err
    assert code == 2 and "--version" in err and repr(bad) in err
    assert not (tmp_path / "x.bin").exists()


def test_stamp_names_a_main_lua_without_version() -> None:
    with pytest.raises(ScriptCheckError, match=r"proj/main.lua: no VERSION"):
        stamp_version(b'PROJECT = "x"\n', "001.000.001", "proj/main.lua")
