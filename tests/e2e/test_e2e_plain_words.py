"""What the device log says in plain words where the firmware's own words mislead."""

from __future__ import annotations

from luatos_common.logline import SIM
from luatos_testing.dut import SimDut

from .conftest import NEW, OLD, Fota, booted, package, project


def test_up_to_date_is_translated_next_to_callback_4(fota: Fota, make_device) -> None:
    fota.release(package(NEW))
    dev = make_device(project(OLD), fota.srv)
    dut = SimDut(dev)
    dut.expect(r"^I/user\.fota_result 0 ", "1m")
    dut.expect(booted(NEW), "1m")
    dut.expect(r"^W/user\.fota_result 4 ", "1m")
    notes = [r.text for r in dev.log if r.source == SIM and "HTTP 304" in r.text]
    assert notes == ["fota: the server answered HTTP 304 (Not Modified: no newer release for "
                     "this device, i.e. up to date); in fota mode http.request reports every "
                     "answer other than 200/206 as -9, and libfota2 then calls back with 4"]
    # Only the check that got 304 carries it; the first check downloaded (200).
    assert not [r for r in dev.log if r.source == SIM and "answered HTTP 200" in r.text]
