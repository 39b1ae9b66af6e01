"""luatos-pack: build every format from a real project directory, inspect, exit codes, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from luatos_common import bkcrc
from luatos_common.luadb import parse_luadb
from luatos_common.packages import detect_and_validate, vendor_filename
from luatos_tools.pack_cli import main

MAIN = b'PROJECT = "fotademo"\nVERSION = "001.002.003"\nsys.taskInit(function() end)\nsys.run()\n'
VENDOR_NAME = "fotademo_2001.001.003_LuatOS-SoC_Air8101.bin"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "netdrv").mkdir(parents=True)
    (root / "main.lua").write_bytes(MAIN)
    (root / "netdrv" / "netdrv_wifi.lua").write_bytes(b"return {}\n")
    (root / "config.lua").write_bytes(b"-- the server\n" * 50 + b"return {url='http://x'}\n")
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def expected_files(project: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(project.rglob("*.lua"), key=lambda p: p.name)}


def test_image_is_flat_luadb_of_sources(project: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "script.bin"
    code, text, _ = run(capsys, "image", str(project), "-o", str(out))
    assert code == 0 and "LuaDB image" in text and "3 files" in text
    entries = parse_luadb(out.read_bytes())
    assert {e.name: e.data for e in entries} == expected_files(project)
    assert len(out.read_bytes()) % 1024 == 0


def test_image_bk_crc_is_the_framed_image(project: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    plain, framed = tmp_path / "a.bin", tmp_path / "b.bin"
    assert run(capsys, "image", str(project), "-o", str(plain))[0] == 0
    assert run(capsys, "image", str(project), "--bk-crc", "-o", str(framed))[0] == 0
    assert framed.read_bytes() == bkcrc.frame(plain.read_bytes())
    assert len(framed.read_bytes()) == bkcrc.framed_size(len(plain.read_bytes()))


@pytest.mark.parametrize(("cmd", "extra", "kind", "core"), [
    ("ota", [], "air8101-script", None),
    ("lfta", [], "lfta", None),
    ("full", ["--core", "V2002"], "luatos-full", "V2002"),
])
def test_packages_validate(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           cmd: str, extra: list[str], kind: str, core: str | None) -> None:
    out = tmp_path / f"{cmd}.bin"
    code, _, _ = run(capsys, cmd, str(project), "-o", str(out), *extra)
    assert code == 0
    pkg = detect_and_validate(out.read_bytes())
    assert pkg.kind == kind and pkg.core_version == core
    assert pkg.files == expected_files(project)


def test_full_requires_core(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["full", str(project), "-o", "x.bin"])
    assert ei.value.code == 2
    assert "--core" in capsys.readouterr().err


def test_default_output_name_in_cwd(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, text, _ = run(capsys, "ota", str(project))
    assert code == 0 and VENDOR_NAME in text
    assert detect_and_validate((tmp_path / VENDOR_NAME).read_bytes()).kind == "air8101-script"


def test_output_directory_gets_vendor_name_with_core_and_chip(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    code, _, _ = run(capsys, "lfta", str(project), "-o", str(dist), "--core", "V2002",
                     "--chip", "Air780E")
    assert code == 0
    want = vendor_filename("fotademo", "V2002", "001.002.003", "Air780E")
    assert [p.name for p in dist.iterdir()] == [want]


@pytest.mark.parametrize(("main_lua", "missing"), [
    (b'VERSION = "001.000.000"\n', "PROJECT"),
    (b'PROJECT = "x"\n-- VERSION = "001.000.000"\n', "VERSION"),
    (b"PROJECT = ''\nVERSION = '001.000.000'\n", "PROJECT"),
])
def test_project_and_version_are_required(project: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          main_lua: bytes, missing: str) -> None:
    """libfota2 builds its query from both globals: a package without one never upgrades
    again, so it is refused even when the output is named explicitly."""
    (project / "main.lua").write_bytes(main_lua)
    for argv in (["ota", str(project), "-o", str(tmp_path)],
                 ["ota", str(project), "-o", str(tmp_path / "x.bin")]):
        code, _, err = run(capsys, *argv)
        assert code == 2
        assert f"no {missing} =" in err and "main.lua" in err
    assert not (tmp_path / "x.bin").exists()


@pytest.mark.parametrize("version", ["one", "1.0.0", "001.000", "001.000.0001"])
def test_ill_formed_version_refused_with_its_line(project: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  version: str) -> None:
    (project / "main.lua").write_bytes(f'PROJECT = "p"\n\nVERSION = "{version}"\n'.encode())
    code, _, err = run(capsys, "ota", str(project), "-o", str(tmp_path / "x.bin"))
    assert code == 2
    assert f"main.lua:3: VERSION {version!r} is not xxx.yyy.zzz" in err
    assert not (tmp_path / "x.bin").exists()


def test_syntax_error_names_file_and_line(project: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (project / "netdrv" / "netdrv_wifi.lua").write_bytes(b"local M = {}\n\nfunction M.x(\nreturn M\n")
    (project / "broken.lua").write_bytes(b'log.info("x"\n')
    code, _, err = run(capsys, "ota", str(project), "-o", str(tmp_path / "x.bin"))
    assert code == 2
    assert "netdrv/netdrv_wifi.lua:4: syntax error:" in err
    assert "broken.lua:2: syntax error:" in err and "')' expected" in err
    assert "2 file(s) would not compile" in err
    assert not (tmp_path / "x.bin").exists()


def test_lua53_rules_not_the_hosts(project: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Integer division and bitwise operators are Lua 5.3; ``goto continue`` too. A Lua 5.4
    attribute (``<const>``) is not and is refused."""
    (project / "ops.lua").write_bytes(b"local a = 7 // 2 | 1 << 3\nfor i = 1, 2 do goto c ::c:: end\n"
                                      b"return a\n")
    assert run(capsys, "ota", str(project), "-o", str(tmp_path / "x.bin"))[0] == 0
    (project / "ops.lua").write_bytes(b"local a <const> = 1\nreturn a\n")
    code, _, err = run(capsys, "ota", str(project), "-o", str(tmp_path / "y.bin"))
    assert code == 2 and "ops.lua:1: syntax error" in err


def test_version_option_stamps_main_lua(project: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    code, _, _ = run(capsys, "ota", str(project), "--version", "001.002.009", "-o", str(dist))
    assert code == 0
    (out,) = dist.iterdir()
    assert out.name == "fotademo_2001.001.009_LuatOS-SoC_Air8101.bin"
    files = detect_and_validate(out.read_bytes()).files or {}
    assert files["main.lua"] == MAIN.replace(b"001.002.003", b"001.002.009")
    assert (project / "main.lua").read_bytes() == MAIN  # the project is not edited
    code, _, err = run(capsys, "ota", str(project), "--version", "1.2.9", "-o", str(dist))
    assert code == 2 and "'1.2.9' is not xxx.yyy.zzz" in err


def test_host_files_stay_out(project: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    (project / "tests").mkdir()
    (project / "tests" / "test_fota.py").write_bytes(b"def test(): pass\n")
    (project / "tests" / "main.lua").write_bytes(b"-- a fixture that would shadow main\n")
    (project / "docs").mkdir()
    (project / "docs" / "guide.txt").write_bytes(b"read me")
    (project / "tool.py").write_bytes(b"print(1)\n")
    (project / ".env").write_bytes(b"SECRET=1\n")
    (project / "NOTES.md").write_bytes(b"# notes\n")
    (project / "assets").mkdir()
    (project / "assets" / "big.raw").write_bytes(b"\0" * 100)
    (project / "assets" / "logo.bin").write_bytes(b"\1" * 10)
    (project / "scratch.lua").write_bytes(b"return 1\n")
    (project / ".luatosignore").write_bytes(b"# host only\n*.raw\nscratch.lua\n")
    out = tmp_path / "x.bin"
    assert run(capsys, "ota", str(project), "-o", str(out))[0] == 0
    files = detect_and_validate(out.read_bytes()).files or {}
    assert sorted(files) == ["config.lua", "logo.bin", "main.lua", "netdrv_wifi.lua"]
    assert files["main.lua"] == MAIN
    code, text, _ = run(capsys, "ota", "--json", str(project), "--list")
    doc = json.loads(text)
    assert code == 0 and [f["name"] for f in doc["files"]] == sorted(files)
    assert {e["path"]: e["reason"] for e in doc["excluded"]} == {
        ".env": "dotfile", ".luatosignore": "dotfile", "NOTES.md": "host-side file",
        "assets/big.raw": ".luatosignore: *.raw", "docs/": "host-side directory",
        "scratch.lua": ".luatosignore: scratch.lua", "tests/": "host-side directory",
        "tool.py": "host-side file"}
    code, text, _ = run(capsys, "ota", str(project), "--list")
    assert code == 0 and "netdrv_wifi.lua" in text and "(netdrv/netdrv_wifi.lua)" in text
    assert "tests/  [host-side directory]" in text


def test_firmware_the_core_lacks_is_a_warning(project: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (project / "extra.lua").write_bytes(
        b"local M = {}\n-- gpio.teleport() in a comment is not a call\n"
        b"function M.go()\n    gpio.setup(1, 0)\n    gpio.teleport(1)\n    mobile.imei()\n"
        b"    if mobile then mobile.iccid() end\nend\nreturn M\n")
    code, _, err = run(capsys, "ota", str(project), "-o", str(tmp_path / "x.bin"))
    assert code == 0
    assert "extra.lua:5: gpio.teleport needs a newer core: Air8101 core V2001" in err
    assert "extra.lua:6: mobile.imei: the Air8101 firmware (core V2001) has no 'mobile'" in err
    assert "gpio.setup" not in err and ":2:" not in err
    # the same project for an Air780E: mobile is there
    code, _, err = run(capsys, "ota", str(project), "--chip", "Air780E", "-o", str(tmp_path / "y.bin"))
    assert code == 0 and "mobile.imei" not in err and "gpio.teleport" in err


def test_duplicate_basenames_refused(project: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    (project / "other").mkdir()
    (project / "other" / "netdrv_wifi.lua").write_bytes(b"x")
    code, _, err = run(capsys, "image", str(project), "-o", str(tmp_path / "i.bin"))
    assert code == 2
    assert "duplicate file name 'netdrv_wifi.lua'" in err
    assert "netdrv/netdrv_wifi.lua" in err and "other/netdrv_wifi.lua" in err
    assert not (tmp_path / "i.bin").exists()


def test_long_name_refused(project: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    (project / ("a" * 28 + ".lua")).write_bytes(b"x")
    code, _, err = run(capsys, "image", str(project), "-o", str(tmp_path / "i.bin"))
    assert code == 2 and "32 bytes" in err and "at most 31" in err


def test_too_many_files_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "many"
    root.mkdir()
    (root / "main.lua").write_bytes(MAIN)
    for i in range(1024):
        (root / f"m{i}.lua").write_bytes(b"")
    code, _, err = run(capsys, "image", str(root), "-o", str(tmp_path / "i.bin"))
    assert code == 2 and "1025 files" in err


def test_project_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "ota", str(tmp_path / "nope"), "-o", str(tmp_path / "o.bin"))
    assert code == 2 and "not a directory" in err
    nomain = tmp_path / "nomain"
    nomain.mkdir()
    (nomain / "lib.lua").write_bytes(b"")
    code, _, err = run(capsys, "ota", str(nomain), "-o", str(tmp_path / "o.bin"))
    assert code == 2 and "no main.lua" in err


def test_unwritable_output(project: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "ota", str(project), "-o", str(tmp_path / "no" / "such" / "x.bin"))
    assert code == 2 and "cannot write" in err


# ------------------------------------------------------------------------------------ inspect

@pytest.fixture
def ota_file(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "ota.bin"
    assert run(capsys, "ota", str(project), "-o", str(out))[0] == 0
    return out


def test_inspect_ok(ota_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = run(capsys, "inspect", str(ota_file))
    assert code == 0
    assert "Air8101 TAUL package" in text and "main.lua" in text and "netdrv_wifi.lua" in text
    assert f"{len(MAIN):>8}" in text
    assert text.rstrip().endswith("OK")


def test_inspect_names_each_bad_block(ota_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray(ota_file.read_bytes())
    data[1032 + 3 * 34 + 10] ^= 1
    data[1032 + 7 * 34 + 33] ^= 1
    ota_file.write_bytes(bytes(data))
    code, text, _ = run(capsys, "inspect", str(ota_file))
    assert code == 1
    assert "CRC of block 3" in text and "CRC of block 7" in text
    assert "INVALID: 2 check(s) failed" in text


@pytest.mark.parametrize("cmd", [["image"], ["image", "--bk-crc"], ["lfta"],
                                 ["full", "--core", "V9"]])
def test_inspect_recognises_every_output(project: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         cmd: list[str]) -> None:
    out = tmp_path / "f.bin"
    assert run(capsys, cmd[0], str(project), "-o", str(out), *cmd[1:])[0] == 0
    code, text, _ = run(capsys, "--json", "inspect", str(out))
    doc = json.loads(text)
    assert code == 0 and doc["ok"] is True
    assert doc["format"] == {"image": "luadb-bkcrc" if "--bk-crc" in cmd else "luadb",
                             "lfta": "lfta", "full": "luatos-full"}[cmd[0]]
    assert {f["name"] for f in doc["files"]} == set(expected_files(project))


def test_inspect_json_shape_on_failure(ota_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray(ota_file.read_bytes())
    data[-1] ^= 0xFF
    ota_file.write_bytes(bytes(data))
    code, text, _ = run(capsys, "inspect", "--json", str(ota_file))
    doc = json.loads(text)
    assert code == 1
    assert set(doc) >= {"file", "ok", "format", "format_name", "size", "sha256", "core_version",
                        "files", "checks", "warnings", "details"}
    assert doc["ok"] is False and doc["format"] == "air8101-script"
    assert doc["size"] == len(data)
    bad = [c for c in doc["checks"] if not c["ok"]]
    assert len(bad) == 1 and bad[0]["name"].startswith("CRC of block")
    assert f"offset {len(data) - 2}" in bad[0]["detail"]


def test_inspect_unknown_and_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01\x02")
    code, text, _ = run(capsys, "inspect", str(junk))
    assert code == 1 and "unknown package format" in text
    code, _, err = run(capsys, "inspect", str(tmp_path / "absent.bin"))
    assert code == 2 and "absent.bin" in err
    code, text, _ = run(capsys, "inspect", "--json", str(tmp_path / "absent.bin"))
    assert code == 2 and json.loads(text)["ok"] is False


def test_inspect_strict_fails_on_checksum_warning(project: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "i.bin"
    assert run(capsys, "image", str(project), "-o", str(img))[0] == 0
    data = bytearray(img.read_bytes())
    data[22] ^= 1  # header byte-sum
    img.write_bytes(bytes(data))
    code, text, _ = run(capsys, "inspect", str(img))
    assert code == 0 and "checksum differs" in text
    assert run(capsys, "inspect", "--strict", str(img))[0] == 1


def test_build_json_shape(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.bin"
    code, text, _ = run(capsys, "ota", "--json", str(project), "-o", str(out))
    doc = json.loads(text)
    assert code == 0
    assert doc["ok"] is True and doc["command"] == "ota" and doc["format"] == "air8101-script"
    assert doc["output"] == str(out) and doc["size"] == out.stat().st_size
    assert sorted(f["name"] for f in doc["files"]) == sorted(expected_files(project))
    code, text, _ = run(capsys, "--json", "ota", str(tmp_path / "nope"))
    assert code == 2 and "not a directory" in json.loads(text)["error"]


def test_installed_entry_point(project: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "luatos-pack"
    assert exe.exists()
    out = tmp_path / "e.bin"
    r = subprocess.run([str(exe), "ota", str(project), "-o", str(out)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe), "inspect", str(out)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "\x1b[" not in r.stdout  # no colour when not a TTY
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "inspect" in r.stdout and "Exit codes" in r.stdout
