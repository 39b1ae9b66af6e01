"""Scenario 1 (periodic) end to end: device/ on the emulator against the real luatos-fota server."""

from __future__ import annotations

import pytest

from luatos_common.logline import SIM
from luatos_common.ports import free_port
from luatos_fota.uploads import UploadError
from luatos_sim.device import RebootLoopError
from luatos_testing.dut import SimDut

from .conftest import (
    NEW,
    OLD,
    RESULT,
    Fota,
    booted,
    count_lines,
    package,
    project,
    result_codes,
    vm_exits,
)


def test_upgrade_then_no_second_download(fota: Fota, make_device) -> None:
    rel = fota.release(package(NEW))
    dev = make_device(project(OLD), fota.srv)
    mac = dev.profile.mac

    log = SimDut(dev)
    log.expect(booted(OLD), "10s")
    log.expect(r"^I/user\.fota_result 0 ", "1m")
    log.expect(booted(NEW), "1m")
    first_new_boot = dev.boots[-1].number
    # The post-reboot check: the server answers 304, libfota2 reports 4, nothing downloaded.
    line = log.expect(RESULT, "1m").string
    assert line.startswith("W/user.fota_result 4 ")
    # The next 4-hourly check too.
    log.expect(r"^I/user\.fota_check start periodic ", "4h5m")
    line = log.expect(RESULT, "1m").string
    assert line.startswith("W/user.fota_result 4 ")

    assert [b.reason for b in dev.boots] == ["power-on", "reboot"]
    assert result_codes(dev) == [0, 4, 4]
    assert result_codes(dev, first_new_boot) == [4, 4]
    staged = [e for e in dev.trace if e.kind == "fota_staged"]
    assert len(staged) == 1 and staged[0].detail["sha256"] == rel.sha256
    assert dev.image_files()["main.lua"].count(f'VERSION = "{NEW}"'.encode()) == 1

    serves = fota.serves(mac)
    assert len(serves) == 1, serves
    checkins = [r for r in fota.audit(mac) if r.event == "checkin"]
    assert [r.status for r in checkins] == [304, 304]
    assert fota.srv.store.releases.stats(rel.id)[0].serves == 1


def assert_kept_old(dev, boots: int = 1) -> None:
    """No package was staged or applied: the device still runs 001.000.000 on its first boot."""
    assert [e for e in dev.trace if e.kind in ("fota_staged", "fota_applied")] == []
    assert len(dev.boots) == boots
    assert f'VERSION = "{OLD}"'.encode() in dev.image_files()["main.lua"]


def test_server_down_is_result_1(fota: Fota, make_device) -> None:
    # Nothing listens on the mapped port: the connection is refused.
    dev = make_device(project(OLD), f"127.0.0.1:{free_port()}")
    log = SimDut(dev)
    log.expect(r"^I/user\.fota_check start boot ", "1m")
    line = log.expect(RESULT, "1m").string
    assert line.startswith("W/user.fota_result 1 connect or DNS failed")
    dev.run_for("4h5m")  # the next periodic check fails the same way, no crash, no reboot
    assert result_codes(dev) == [1, 1]
    assert vm_exits(dev) == []
    assert_kept_old(dev)


def test_up_to_date_is_result_4(fota: Fota, make_device) -> None:
    dev = make_device(project(OLD), fota.srv)  # no release published
    log = SimDut(dev)
    line = log.expect(RESULT, "1m").string
    assert line.startswith("W/user.fota_result 4 ")
    assert any(line.startswith("I/user.libfota2 -9") for line in dev.lines())  # 304 in fota mode
    dev.run_for("10m")
    assert_kept_old(dev)
    rows = fota.audit(dev.profile.mac)
    assert [r.status for r in rows if r.event == "checkin"] == [304]
    assert not [r for r in rows if r.event == "serve"]


def test_empty_body_keeps_old_version(make_device, raw_http) -> None:
    empty = raw_http(200, b"")
    dev = make_device(project(OLD), empty.address)
    line = SimDut(dev).expect(RESULT, "1m").string
    assert line.startswith("W/user.fota_result 4 ")
    assert len(empty.requests) == 1
    assert "firmware_name=FOTA_KIT_DEMO_LuatOS-SoC_Air8101" in empty.requests[0]
    dev.run_for("1m")
    assert_kept_old(dev)


def test_garbage_body_is_refused(make_device, raw_http) -> None:
    junk = raw_http(200, b"<html>502 Bad Gateway</html>" * 40)
    dev = make_device(project(OLD), junk.address)
    line = SimDut(dev).expect(RESULT, "1m").string
    assert line.startswith("W/user.fota_result 4 ")
    refused = [e for e in dev.trace if e.kind == "fota_refused"]
    assert [e.detail["stage"] for e in refused] == ["download"]
    assert "offset 0" in refused[0].detail["error"]  # refused at the first byte
    dev.run_for("1m")
    assert_kept_old(dev)


def test_package_with_flipped_byte_is_refused(make_device, raw_http) -> None:
    good = bytearray(package(NEW))
    good[len(good) // 2] ^= 0x40  # one bit inside the script image
    bad = raw_http(200, bytes(good))
    url = f"###http://{bad.address}/pkg.bin"  # a direct package link, sent verbatim
    dev = make_device(project(OLD), None, fskv={"fota_cfg": {"server_url": url}})
    log = SimDut(dev)
    log.expect(r"^I/user\.config override server_url ", "10s")
    line = log.expect(RESULT, "1m").string
    assert line.startswith("W/user.fota_result 4 ")
    assert bad.requests == ["/pkg.bin"]
    refused = [e for e in dev.trace if e.kind == "fota_refused"]
    assert [e.detail["stage"] for e in refused] == ["download"]
    assert "CRC" in refused[0].detail["error"]  # caught by the block checksum, not applied
    dev.run_for("1m")
    assert_kept_old(dev)


def test_link_lost_mid_download_then_next_check_upgrades(fota: Fota, make_device) -> None:
    pkg = package(NEW)
    fota.release(pkg)
    dev = make_device(project(OLD), fota.srv)
    dev.net.bandwidth("4kB/s")  # the ~50 kB package takes over 10 s of device time
    log = SimDut(dev)
    log.expect(r"^I/user\.fota_check start boot ", "1m")
    dev.net.link_down("wifi", at="3s")
    dev.net.link_up("wifi", at="60s")
    line = log.expect(RESULT, "15m").string
    assert line.startswith("W/user.fota_result 4 "), line  # the download failed
    down = [e.ms for e in dev.trace if e.kind == "link" and e.detail["up"] is False]
    assert len(down) == 1
    # It failed when the link went, not when the transfer would have ended (~15 s).
    assert down[0] <= log.last_record.device_ms < down[0] + 1000
    assert count_lines(dev, r"^W/user\.netdrv IP_LOSE adapter 2") == 1
    assert [e for e in dev.trace if e.kind == "fota_staged"] == []
    assert [e for e in dev.trace if e.kind == "fota_begin"], "the download never started"
    # The link comes back; the next 4-hourly check downloads the whole package and upgrades.
    log.expect(r"^I/user\.fota_check start periodic ", "4h5m")
    log.expect(r"^I/user\.fota_result 0 ", "5m")
    log.expect(booted(NEW), "1m")
    staged = [e for e in dev.trace if e.kind == "fota_staged"]
    assert len(staged) == 1 and staged[0].detail["size"] == len(pkg)
    assert len(fota.serves(dev.profile.mac)) == 2


def test_connection_cut_mid_download_then_next_check_upgrades(fota: Fota, make_device) -> None:
    pkg = package(NEW)
    fota.release(pkg)
    dev = make_device(project(OLD), fota.srv)
    dev.net.cut_after(len(pkg) // 3)  # the server's connection drops a third into the package
    log = SimDut(dev)
    line = log.expect(RESULT, "15m").string
    assert line.startswith("W/user.fota_result 4 "), line
    assert [e for e in dev.trace if e.kind == "fota_staged"] == []
    begun = [e for e in dev.trace if e.kind == "fota_begin"]
    assert len(begun) == 1, "the download never started"
    log.expect(r"^I/user\.fota_check start periodic ", "4h5m")
    log.expect(r"^I/user\.fota_result 0 ", "5m")
    log.expect(booted(NEW), "1m")
    staged = [e for e in dev.trace if e.kind == "fota_staged"]
    assert len(staged) == 1 and staged[0].detail["size"] == len(pkg)
    assert len(fota.serves(dev.profile.mac)) == 2


def test_package_still_declaring_old_version_is_refused_at_publish(fota: Fota) -> None:
    """The tutorial's FAQ: a release published as 001.000.001 whose main.lua still says
    001.000.000 would loop every device; the server reads the package and refuses it."""
    with pytest.raises(UploadError) as ei:
        fota.release(package(OLD), version=NEW)
    assert ei.value.field == "version"
    line = next(i for i, text in enumerate(project(OLD)["main.lua"].splitlines(), 1)
                if text.startswith(b"VERSION"))
    assert f"version {NEW} given, but the package's main.lua:{line} sets VERSION = '{OLD}'" \
        in str(ei.value)
    assert fota.srv.store.releases.all() == []


def old_version_at_run_time(files: dict[str, bytes]) -> dict[str, bytes]:
    """main.lua declares the new VERSION but sets the old one when it runs (what the static
    publish checks cannot see; the preflight can)."""
    main = files["main.lua"].replace(b"\nlog.info(\"main\"", f'\n_G["VERSION"] = "{OLD}"\nlog.info("main"'.encode(), 1)
    assert main != files["main.lua"]
    return {**files, "main.lua": main}


def test_package_reporting_old_version_loops_until_banned(fota: Fota, make_device) -> None:
    """Published without a preflight (a library call), a package that reports 001.000.000 at
    run time: the device applies it, reboots, reports 2001.001.000 again and downloads again,
    until the server's loop guard bans it (code 40) after 6 serves."""
    fota.release(package(NEW, patch=old_version_at_run_time), version=NEW)
    dev = make_device(project(OLD), fota.srv)
    mac = dev.profile.mac
    log = SimDut(dev)
    for _ in range(6):
        log.expect(r"^I/user\.fota_result 0 ", "2m")
        log.expect(booted(OLD), "1m")  # rebooted, still the old VERSION
    line = log.expect(RESULT, "2m").string  # the 7th check: refused, nothing downloaded
    assert line.startswith("W/user.fota_result 4 "), line
    # The loop has stopped: 4-hourly checks keep being refused, nothing is downloaded.
    dev.run_for("8h5m")
    assert len(fota.serves(mac)) == 6
    bans = fota.audit(mac, "loop_ban")
    assert len(bans) == 1 and bans[0].code == 40 and bans[0].status == 403
    device_row = fota.srv.store.devices.get(mac)
    assert device_row is not None and device_row.ban_code == 40
    assert len([e for e in dev.trace if e.kind == "fota_applied"]) == 6
    assert result_codes(dev) == [0] * 6 + [4, 4, 4]
    assert [b.reason for b in dev.boots] == ["power-on"] + ["reboot"] * 6
    assert dev.reboot_loop is None  # deliberate reboots are not a crash loop
    refused = fota.audit(mac, "checkin")
    assert [(r.status, r.code) for r in refused] == [(403, 40)] * 3


def needs_newer_core(files: dict[str, bytes]) -> dict[str, bytes]:
    """main.lua calls, at top level, a firmware function the running core (V2001) lacks."""
    main = files["main.lua"]
    anchor = f'VERSION = "{NEW}"\n'.encode()
    assert anchor in main
    return {**files, "main.lua": main.replace(anchor, anchor + b"rtos.setCpuFreq(240)\n", 1)}


def test_script_calling_missing_firmware_function_is_a_reboot_loop(fota: Fota, make_device) -> None:
    fota.release(package(NEW, patch=needs_newer_core))
    dev = make_device(project(OLD), fota.srv)
    log = SimDut(dev)
    log.expect(r"^I/user\.fota_result 0 ", "1m")
    with pytest.raises(RebootLoopError) as caught:
        dev.run_until(booted(NEW), within="10m")
    assert "device is in a reboot loop" in str(caught.value)
    assert "setCpuFreq" in str(caught.value)
    assert dev.reboot_loop is not None
    sim = [r.text for r in dev.log if r.source == SIM]
    assert any("rtos.setCpuFreq is not emulated" in t for t in sim), sim
    # Every boot after the upgrade died at the same line of main.lua, before any check.
    failed = [b for b in dev.boots[1:]]
    assert len(failed) >= 3
    assert all(b.outcome == "error" and "setCpuFreq" in (b.error or "") for b in failed)
    assert len(vm_exits(dev)) == len(failed)
    assert result_codes(dev) == [0]


def test_button_press_checks_now(fota: Fota, make_device) -> None:
    dev = make_device(project(OLD), fota.srv)
    log = SimDut(dev)
    log.expect(r"^I/user\.button ready 5$", "10s")
    log.expect(RESULT, "1m")  # the boot check: nothing published yet
    fota.release(package(NEW))
    dev.gpio.press(5, hold="300ms", at="10m")  # long before the 4-hourly check
    log.expect(r"^I/user\.button pressed 5", "11m")
    log.expect(r"^I/user\.fota_check start button ", "1s")
    log.expect(r"^I/user\.fota_result 0 ", "1m")
    log.expect(booted(NEW), "1m")
    assert dev.current_ms() < 20 * 60 * 1000
    assert count_lines(dev, r"^I/user\.button pressed ") == 1  # debounced: one press, one check
    assert result_codes(dev, 1) == [4, 0]
