"""The FOTA area: streaming validation, atomic staging, apply at boot, power cuts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from luatos_common.packages import build_air8101_ota, build_full, build_lfta
from luatos_sim import Device, DeviceOptions
from luatos_sim.platform.fota_area import (
    PARTIAL,
    STAGING_TMP,
    WRITE_COMPLETE,
    WRITE_MORE,
    WRITE_NOT_READY,
    WRITE_REFUSED,
)

from .conftest import write_project

OLD_MAIN = """
VERSION = "001.000.000"
log.info("app", "version", VERSION, rtos.version())
sys.run()
"""


def new_files(version: str = "001.000.001") -> dict[str, bytes]:
    src = OLD_MAIN.replace("001.000.000", version)
    # some bulk so the package spans many 4 KiB writes and framed blocks
    return {"main.lua": src.encode(), "data.txt": bytes(range(256)) * 64}


def make_device(tmp_path: Path, name: str = "state") -> Device:
    proj = write_project(tmp_path / "proj", {"main.lua": OLD_MAIN})
    return Device(proj, state_dir=tmp_path / name,
                  options=DeviceOptions(epoch_at_power_on=1_700_000_000))


def app_lines(dev: Device) -> list[str]:
    return [ln for ln in dev.lines() if ln.startswith("I/user.app")]


def stream(area, data: bytes, step: int = 4096) -> list[int]:
    return [area.write(data[i:i + step]) for i in range(0, len(data), step)]


@pytest.mark.parametrize("build", [
    lambda f: build_air8101_ota(f), lambda f: build_lfta(f), lambda f: build_full("V2001", f),
], ids=["taul", "lfta", "full"])
def test_a_valid_package_streams_stages_and_boots(tmp_path, build):
    dev = make_device(tmp_path)
    dev.run_for("1s")
    area = dev.fota
    pkg = build(new_files())
    assert area.write(b"x") == WRITE_NOT_READY
    assert area.begin() is True
    results = stream(area, pkg)
    assert results[-1] == WRITE_COMPLETE
    assert set(results[:-1]) <= {WRITE_MORE}
    assert area.is_done() == 0
    assert area.end(True) is True
    assert area.has_staged()
    dev.run_for("1s")  # the running boot keeps the old scripts until it reboots
    assert app_lines(dev) == ["I/user.app version 001.000.000 V2001"]
    dev.boot.halt("reboot", 3)
    dev.run_for("2s")
    assert app_lines(dev)[-1] == "I/user.app version 001.000.001 V2001"
    assert not area.has_staged()
    kinds = [t.kind for t in dev.trace]
    assert kinds.index("fota_staged") < kinds.index("fota_applied")


def test_air8101_logs_the_accept_lines_in_order(tmp_path):
    dev = make_device(tmp_path)
    dev.run_for("1s")
    pkg = build_air8101_ota(new_files())
    dev.fota.begin()
    stream(dev.fota, pkg, 1024)
    dev.fota.is_done()
    texts = [r.text for r in dev.log if r.source == "c" and r.tag == "fota"]
    assert texts[0] == f"升级包类型: type=1, expected_len={len(pkg)}"
    assert texts[1].startswith("erase time used ") and texts[1].endswith("ms")
    assert texts[2].startswith("write time used ")
    assert texts[3].startswith(f"FOTA progress: {len(pkg)} bytes written , total ")
    assert texts[4] == f"fota done, write {len(pkg)} bytes"


def test_type_line_appears_once_the_header_is_in(tmp_path):
    dev = make_device(tmp_path)
    dev.run_for("1s")
    pkg = build_air8101_ota(new_files())
    dev.fota.begin()
    dev.fota.write(pkg[:1024])
    assert not any("升级包类型" in r.text for r in dev.log)
    dev.fota.write(pkg[1024:2048])
    assert any("升级包类型" in r.text for r in dev.log)


def test_corrupt_byte_is_refused_where_it_is_and_old_scripts_stay(tmp_path):
    dev = make_device(tmp_path)
    dev.run_for("1s")
    pkg = bytearray(build_air8101_ota(new_files()))
    pkg[5000] ^= 0x55
    area = dev.fota
    area.begin()
    results = stream(area, bytes(pkg), 1024)
    first_bad = results.index(WRITE_REFUSED)
    assert first_bad == 5000 // 1024  # refused in the chunk holding the bad byte's block
    assert area.is_done() < 0
    assert area.end(True) is False
    assert "offset" in str(area.error)
    assert not area.has_staged()
    dev.boot.halt("reboot", 3)
    dev.run_for("2s")
    assert app_lines(dev)[-1] == "I/user.app version 001.000.000 V2001"


def test_not_a_package_and_too_long_and_short(tmp_path):
    dev = make_device(tmp_path)
    dev.run_for("1s")
    area = dev.fota
    area.begin()
    assert area.write(b"<html>not found</html>") == WRITE_REFUSED
    pkg = build_air8101_ota(new_files())
    area.begin()  # begin resets the refusal
    assert stream(area, pkg)[-1] == WRITE_COMPLETE
    assert area.write(b"\x00") == WRITE_REFUSED  # more than announced
    area.begin()
    stream(area, pkg[:-34])
    assert area.is_done() > 0  # still waiting for bytes
    assert area.end(True) is False
    assert area.end(False) is True
    assert not (area.dir / PARTIAL).exists()


def test_format_outside_the_profile_is_refused(tmp_path):
    proj = write_project(tmp_path / "proj", {"main.lua": OLD_MAIN})
    dev = Device(proj, model="Air780E", state_dir=tmp_path / "s")
    dev.run_for("1s")
    dev.fota.begin()
    assert dev.fota.write(build_air8101_ota(new_files())[:2048]) == WRITE_REFUSED
    dev.close()


def test_full_package_changes_core_version_and_banner_persistently(tmp_path):
    dev = make_device(tmp_path)
    dev.run_for("1s")
    dev.fota.begin()
    stream(dev.fota, build_full("V2002", new_files("001.000.002")))
    assert dev.fota.end(True)
    dev.boot.halt("reboot", 3)
    dev.run_for("2s")
    assert app_lines(dev)[-1] == "I/user.app version 001.000.002 V2002"
    assert "main:LuatOS@Air8101 base 25.11 bsp V2002 64bit" in dev.lines(boot=2)
    dev.close()
    again = Device(state_dir=tmp_path / "state")  # same module, powered on later
    again.run_for("1s")
    assert app_lines(again) == ["I/user.app version 001.000.002 V2002"]


WRITER_MAIN = OLD_MAIN.replace("sys.run()", """
sys.taskInit(function()
  if not io.exists("/pkg.bin") then return end
  fota.init()
  local f = io.open("/pkg.bin", "rb")
  while true do
    local chunk = f:read(1000)
    if not chunk then break end
    log.debug("fota.run", fota.run(chunk))
    sys.wait(10)
  end
  f:close()
  log.info("writer", "end", fota.finish(true))
  rtos.reboot()
end)
sys.run()
""")


def writer_device(tmp_path: Path) -> Device:
    proj = write_project(tmp_path / "proj", {"main.lua": WRITER_MAIN})
    return Device(proj, state_dir=tmp_path / "state")


@pytest.mark.parametrize("cut_at", [1, 1023, 1024, 1032, 1033, 5000, 9000, -34, -1])
def test_power_cut_at_any_byte_never_bricks(tmp_path, cut_at):
    dev = writer_device(tmp_path)
    pkg = build_air8101_ota(new_files())
    (dev.fs_root / "pkg.bin").write_bytes(pkg)
    n = cut_at if cut_at > 0 else len(pkg) + cut_at
    dev.fota.cut_power_at = n
    dev.run_for("10s")
    area = dev.fota
    assert area.power_was_cut
    assert (area.dir / PARTIAL).stat().st_size == n  # what reached the flash
    assert dev.boot is None and len(dev.boots) == 1  # nothing ran after the cut
    assert not any("writer" in ln for ln in dev.lines())
    dev.close()
    (tmp_path / "state" / "fs" / "pkg.bin").unlink()  # the next boot must not download again
    after = Device(state_dir=tmp_path / "state")
    after.run_for("1s")
    assert app_lines(after) == ["I/user.app version 001.000.000 V2001"]
    assert not (after.fota.dir / PARTIAL).exists()
    assert any(t.kind == "fota_discarded" for t in after.trace)


def test_script_writer_completes_without_a_cut_and_the_demo_line_is_the_scripts(tmp_path):
    dev = writer_device(tmp_path)
    pkg = build_air8101_ota(new_files())
    (dev.fs_root / "pkg.bin").write_bytes(pkg)
    dev.run_until("version 001.000.001", within="30s")
    runs = [ln for ln in dev.lines(boot=1) if ln.startswith("D/user.fota.run")]
    assert runs[:-1] == ["D/user.fota.run true false 1"] * (len(runs) - 1)
    assert runs[-1] == "D/user.fota.run true true 0"
    assert "I/user.writer end true" in dev.lines(boot=1)


def test_power_cut_then_power_on_same_device_object(tmp_path):
    dev = writer_device(tmp_path)
    (dev.fs_root / "pkg.bin").write_bytes(build_air8101_ota(new_files()))
    dev.fota.cut_power_at = 3000
    dev.run_for("10s")
    (dev.fs_root / "pkg.bin").unlink()
    dev.power_on()
    dev.run_for("2s")
    assert [b.reason for b in dev.boots] == ["power-on", "power-on"]
    assert app_lines(dev) == ["I/user.app version 001.000.000 V2001"] * 2


def test_power_cut_while_staging_leaves_no_stage(tmp_path, monkeypatch):
    dev = make_device(tmp_path)
    dev.run_for("1s")
    dev.fota.begin()
    stream(dev.fota, build_air8101_ota(new_files()))

    def cut(*_args: object) -> None:
        raise OSError("power lost during rename")
    monkeypatch.setattr(os, "replace", cut)
    with pytest.raises(OSError):
        dev.fota.end(True)
    monkeypatch.undo()
    assert (dev.fota.dir / STAGING_TMP).exists()
    assert not dev.fota.has_staged()
    dev.close()
    after = Device(state_dir=tmp_path / "state")
    after.run_for("1s")
    assert app_lines(after) == ["I/user.app version 001.000.000 V2001"]
    assert not (after.fota.dir / STAGING_TMP).exists()


def test_a_staged_package_damaged_on_disk_is_refused_at_boot(tmp_path):
    dev = make_device(tmp_path)
    dev.run_for("1s")
    dev.fota.begin()
    stream(dev.fota, build_air8101_ota(new_files()))
    dev.fota.end(True)
    staged = dev.fota.staged_path
    data = bytearray(staged.read_bytes())
    data[-40] ^= 0xFF
    staged.write_bytes(bytes(data))
    dev.boot.halt("reboot", 3)
    dev.run_for("2s")
    assert app_lines(dev)[-1] == "I/user.app version 001.000.000 V2001"
    refused = [t for t in dev.trace if t.kind == "fota_refused"]
    assert refused and refused[0].detail["stage"] == "boot"
    assert not staged.exists()
