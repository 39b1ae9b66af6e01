"""Scenario 4 end to end: a phone (the bench's BLE peer) writes a package built by luatos-pack
over GATT; the device feeds the fota module and boots the new version. A truncated or a
corrupted transfer is refused and the old version keeps running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from luatos_sim import Device
from luatos_testing.dut import SimDut

from .conftest import NEW, OLD, booted, project

SERVICE, CONTROL, DATA, STATUS = "FB00", "FB01", "FB02", "FB03"


def packed(tmp_path: Path, version: str = NEW) -> bytes:
    """The package the luatos-pack CLI builds from device/ declaring ``version``."""
    src = tmp_path / f"src-{version}"
    src.mkdir()
    for name, data in project(version, "ble").items():
        (src / name).write_bytes(data)
    out = tmp_path / f"pkg-{version}.bin"
    cli = Path(sys.executable).with_name("luatos-pack")
    subprocess.run([str(cli), "ota", str(src), "-o", str(out)], check=True,
                   capture_output=True, timeout=60)
    return out.read_bytes()


def old_version_replaced(dev: Device) -> bool:
    return any(line.startswith(f"I/user.main FOTA_KIT_DEMO {NEW}") for line in dev.lines())


def start(size: int) -> bytes:
    return b"\x01" + size.to_bytes(4, "big")


def statuses(phone) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [data for _ms, _svc, ch, data in phone.notifications if ch == bytes.fromhex(STATUS)]


@pytest.fixture
def ble_device(make_device):  # type: ignore[no-untyped-def]
    def make() -> tuple[Device, SimDut]:
        dev = make_device(project(OLD, "ble"))
        cur = SimDut(dev)
        cur.expect(booted(OLD), "5s")
        cur.expect(r"I/user\.fota_ble advertising as FOTA_KIT", "5s")
        return dev, cur
    return make


def connect(dev: Device):  # type: ignore[no-untyped-def]
    phone = dev.ble.peer("phone")
    (adv,) = phone.scan()
    assert adv.name == "FOTA_KIT" and b"FOTA_KIT" in adv.data
    ops = [phone.connect(), phone.subscribe(SERVICE, STATUS, at="50ms")]
    dev.run_for("100ms")
    assert all(op.ok for op in ops), ops
    return phone


def test_phone_writes_package_and_device_boots_new_version(ble_device, tmp_path) -> None:
    pkg = packed(tmp_path)
    dev, cur = ble_device()
    phone = connect(dev)
    phone.write(SERVICE, CONTROL, start(len(pkg)))
    writes = phone.write_stream(SERVICE, DATA, pkg, chunk=244, start="20ms", interval="8ms")
    end = phone.write(SERVICE, CONTROL, b"\x02", at=f"{40 + 8 * len(writes)}ms")
    cur.expect(r"I/user\.fota_result 0 package received over BLE", "2m")
    assert all(w.ok for w in writes) and end.ok
    assert statuses(phone)[0] == f"READY {len(pkg)}".encode()
    assert statuses(phone)[-1] == f"OK {len(pkg)}".encode()
    cur.expect(booted(NEW), "30s")
    assert dev.boots[-1].reason == "reboot"
    staged = [t for t in dev.trace if t.kind == "fota_staged"]
    assert len(staged) == 1 and staged[0].detail["size"] == len(pkg)


def test_truncated_transfer_is_refused_and_old_version_runs(ble_device, tmp_path) -> None:
    pkg = packed(tmp_path)
    dev, cur = ble_device()
    phone = connect(dev)
    phone.write(SERVICE, CONTROL, start(len(pkg)))
    cut = pkg[: len(pkg) - 700]
    writes = phone.write_stream(SERVICE, DATA, cut, chunk=244, start="20ms")
    phone.write(SERVICE, CONTROL, b"\x02", at=f"{40 + 8 * len(writes)}ms")
    cur.expect(r"W/user\.fota_ble refused short after", "2m")
    assert statuses(phone)[-1] == b"ERR short"
    dev.run_for("1m")
    assert len(dev.boots) == 1 and not old_version_replaced(dev)
    assert not [t for t in dev.trace if t.kind == "fota_staged"]
    assert not dev.fota.has_staged()


def test_corrupted_transfer_is_refused_then_a_good_one_upgrades(ble_device, tmp_path) -> None:
    pkg = packed(tmp_path)
    bad = bytearray(pkg)
    bad[len(bad) // 2] ^= 0xFF  # one flipped byte inside a CRC-checked block
    dev, cur = ble_device()
    phone = connect(dev)
    phone.write(SERVICE, CONTROL, start(len(bad)))
    writes = phone.write_stream(SERVICE, DATA, bytes(bad), chunk=244, start="20ms")
    phone.write(SERVICE, CONTROL, b"\x02", at=f"{40 + 8 * len(writes)}ms")
    cur.expect(r"W/user\.fota_ble refused package after", "2m")
    assert b"ERR package" in statuses(phone)
    dev.run_for("30s")
    assert len(dev.boots) == 1 and not dev.fota.has_staged()
    assert not old_version_replaced(dev)
    # The same phone retries with the good package: now it goes through.
    phone.write(SERVICE, CONTROL, start(len(pkg)))
    writes = phone.write_stream(SERVICE, DATA, pkg, chunk=244, start="20ms")
    phone.write(SERVICE, CONTROL, b"\x02", at=f"{40 + 8 * len(writes)}ms")
    cur.expect(r"I/user\.fota_result 0", "2m")
    cur.expect(booted(NEW), "30s")


def test_disconnect_mid_transfer_and_unknown_handle(ble_device, tmp_path) -> None:
    pkg = packed(tmp_path)
    dev, cur = ble_device()
    phone = connect(dev)
    stray = phone.write(SERVICE, "FB09", b"?")
    phone.write(SERVICE, CONTROL, start(len(pkg)))
    phone.write_stream(SERVICE, DATA, pkg[:2000], chunk=200, start="20ms")
    phone.disconnect(at="200ms")
    cur.expect(r"W/user\.fota_ble refused disconnected after 2000 of", "1m")
    dev.run_for("1s")
    assert stray.done and stray.att_error == 0x0A
    assert any("FB09" in r.text for r in dev.log if r.tag == "luatos-sim")
    assert phone.scan(), "the device advertises again after the link dropped"
    assert len(dev.boots) == 1
