"""Scenario 3 (psm) end to end: wake, check against the real server, PSM+ sleep, wake 4 h later."""

from __future__ import annotations

from luatos_testing.dut import SimDut

from .conftest import NEW, OLD, Fota, booted, package, project, result_codes, vm_exits

FOUR_H = 4 * 3600 * 1000


def boot_events(dev, boot: int) -> list:
    return [e for e in dev.trace if e.boot == boot]


def index_of(events: list, kind: str, **detail) -> int:
    for i, e in enumerate(events):
        if e.kind == kind and all(e.detail.get(k) == v for k, v in detail.items()):
            return i
    raise AssertionError(f"no {kind} {detail} in {[e.kind for e in events]}")


def test_psm_order_of_calls_and_wake_after_4h(fota: Fota, make_device) -> None:
    dev = make_device(project(OLD, "psm"), fota.srv)
    log = SimDut(dev)
    log.expect(r"^I/user\.psm power-on or reset boot", "10s")
    log.expect(r"^W/user\.fota_result 4 ", "1m")
    log.expect(r"^I/user\.psm check done 4", "1s")
    log.expect(r"^I/user\.psm dtimer 2 armed true 14400000 ms", "1s")
    log.expect(r"^I/user\.psm entering PSM\+", "1s")

    # The order of calls in the first boot, from the emulator's trace.
    ev = boot_events(dev, 1)
    result = index_of(ev, "libfota2_cb", ret=4)
    radio_off = index_of(ev, "wlan_disconnect")
    dtimer = index_of(ev, "dtimer_start", id=2, ms=FOUR_H)
    psm = index_of(ev, "power_mode", mode=3)
    sleep = index_of(ev, "sleep", dtimer=2)
    assert result < radio_off < dtimer < psm < sleep
    assert ev[-1].kind == "boot_end" and ev[-1].detail["outcome"] == "sleep"
    slept_at = ev[sleep].ms

    # Exactly 4 h later dtimer 2 wakes the device: a full boot that says why it woke.
    log.expect(r"^I/user\.psm wake source \S+ state \S+ detail \S+ pad \S+ dtimer 2$", "4h1m")
    log.expect(r"^I/user\.psm woken by dtimer 2$", "1s")
    assert [b.reason for b in dev.boots] == ["power-on", "wake"]
    wake = [e for e in dev.trace if e.kind == "wake"]
    assert len(wake) == 1 and wake[0].ms == slept_at + FOUR_H and wake[0].detail["dtimer"] == 2
    log.expect(r"^I/user\.psm entering PSM\+", "1m")
    assert result_codes(dev) == [4, 4]
    assert [r.status for r in fota.audit(dev.profile.mac, "checkin")] == [304, 304]


def test_psm_upgrade_during_a_wake(fota: Fota, make_device) -> None:
    dev = make_device(project(OLD, "psm"), fota.srv)
    log = SimDut(dev)
    log.expect(r"^I/user\.psm entering PSM\+", "1m")
    dev.run_for("1m")
    assert dev.boot is None and dev.power.asleep
    # Published while the device sleeps: the next wake downloads it.
    fota.release(package(NEW, "psm"))
    log.expect(r"^I/user\.psm woken by dtimer 2$", "4h1m")
    log.expect(r"^I/user\.fota_result 0 ", "1m")
    log.expect(r"^I/user\.psm upgrade downloaded, rebooting to apply it", "1s")
    log.expect(booted(NEW), "1m")
    log.expect(r"^W/user\.fota_result 4 ", "1m")  # the new version is up to date
    log.expect(r"^I/user\.psm entering PSM\+", "1m")
    assert [b.reason for b in dev.boots] == ["power-on", "wake", "reboot"]
    assert [b.outcome for b in dev.boots[:2]] == ["sleep", "reboot"]
    # The upgrading wake rebooted at once: it never armed a dtimer or asked for PSM+.
    assert not [e for e in boot_events(dev, 2) if e.kind in ("dtimer_start", "power_mode")]
    assert len(fota.serves(dev.profile.mac)) == 1


def test_psm_30_days_of_4_hourly_wakes(fota: Fota, make_device) -> None:
    dev = make_device(project(OLD, "psm"), fota.srv)
    dev.run_for("10d")
    rel = fota.release(package(NEW, "psm"))
    dev.run_for("20d")
    end = dev.current_ms()

    reasons = [b.reason for b in dev.boots]
    upgrade = reasons.index("reboot")
    assert reasons.count("power-on") == 1 and reasons.count("reboot") == 1
    wakes = reasons.count("wake")
    # 30 days of 4 h sleeps (each cycle is 4 h plus the seconds awake): 179 wakes.
    assert 179 <= wakes <= 180, wakes
    # Every sleep armed dtimer 2 for 4 h and the device woke exactly then.
    sleeps = [e for e in dev.trace if e.kind == "sleep"]
    wake_events = [e for e in dev.trace if e.kind == "wake"]
    assert len(wake_events) == wakes and len(sleeps) == wakes + 1
    for s, w in zip(sleeps, wake_events, strict=False):
        assert s.detail["dtimer"] == 2 and w.detail["dtimer"] == 2
        # the dtimer counts from pm.dtimerStart; the Lua after it (up to pm.power) has a
        # virtual cost of its own, so the sleep starts a few ms later
        assert w.ms == s.detail["wake_at"] and FOUR_H - 1000 <= w.ms - s.ms <= FOUR_H
    assert sleeps[-1].detail["wake_at"] > end  # still asleep, waiting for the next wake
    # One download, applied once; every check after the upgrade is "up to date".
    assert len([e for e in dev.trace if e.kind == "fota_begin"]) == 1
    assert len([e for e in dev.trace if e.kind == "fota_applied"]) == 1
    codes = result_codes(dev)
    assert len(codes) == len(dev.boots)  # one check per boot
    assert codes.count(0) == 1 and codes.count(4) == len(codes) - 1
    assert codes.index(0) == upgrade - 1  # the wake just before the reboot downloaded it
    for b in dev.boots[upgrade:]:
        assert any(line.startswith(f"I/user.main FOTA_KIT_DEMO {NEW} ")
                   for line in dev.lines(b.number))
    assert vm_exits(dev) == [] and dev.reboot_loop is None
    assert fota.srv.store.releases.stats(rel.id)[0].serves == 1
    checkins = fota.audit(dev.profile.mac, "checkin")
    assert len(checkins) == len(dev.boots) - 1 and {r.status for r in checkins} == {304}
