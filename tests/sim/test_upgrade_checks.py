"""Upgrade checks: warnings as emulator diagnostics, never failures."""

from __future__ import annotations

from luatos_common.logline import SIM
from luatos_common.packages import build_air8101_ota


def sim_lines(dev):
    return [r.text for r in dev.log if r.source == SIM and r.text.startswith("lint")]


def lib(body: str, version: str = "001.000.000") -> str:
    return f"""
        PROJECT = "P" VERSION = "{version}" PRODUCT_KEY = "K"
        libfota2 = require "libfota2"
        {body}
        log.info("still", "running")
        sys.run()
    """


def test_clean_code_has_no_warnings(boot):
    dev = boot(lib('libfota2.request(nil, {url = "http://h/upgrade?"})\n'
                   'libfota2.request(nil, {url = "###http://h/p.bin"})'))
    dev.run_for("900ms")
    assert dev.upgrade_checks.warnings == []
    assert sim_lines(dev) == []


def test_url_glue_warns_once_and_the_device_carries_on(boot):
    dev = boot(lib("""
        libfota2.request(nil, {url = "http://h:8000"})
        libfota2.request(nil, {url = "http://h:8000"})
        libfota2.request(nil, {url = "http://h/x?a=1&"})
    """))
    dev.run_for("900ms")
    ws = dev.upgrade_checks.warnings
    assert [w.code for w in ws] == ["url-glue"]
    assert "'http://h:8000'" in ws[0].message and ws[0].boot == 1
    assert sim_lines(dev) == [f"lint [url-glue]: {ws[0].message}"]
    assert "I/user.still running" in dev.lines()


def test_opts_reuse_with_a_new_url(boot):
    dev = boot(lib("""
        local opts = {url = "http://h/upgrade?"}
        libfota2.request(nil, opts)
        opts.url = "http://other/pkg.bin"
        libfota2.request(nil, opts)
    """))
    dev.run_for("900ms")
    ws = dev.upgrade_checks.warnings
    assert [w.code for w in ws] == ["opts-reuse"]
    assert "http://other/pkg.bin" in ws[0].message and "url_done" in ws[0].message


def test_version_format(boot):
    dev = boot(lib('libfota2.request(nil, {url = "http://h/u?"})', version="1.2.3"))
    dev.run_for("900ms")
    ws = dev.upgrade_checks.warnings
    assert [w.code for w in ws] == ["version-format"]
    assert "'1.2.3'" in ws[0].message


def test_sleep_while_a_download_is_in_flight(boot):
    pkg = build_air8101_ota({"main.lua": b"sys.run()"})
    dev = boot("""
        sys.taskInit(function()
          fota.init()
          fota.run(io.readFile("/p.bin"):sub(1, 2000))
          pm.dtimerStart(0, 60000)
          pm.power(pm.WORK_MODE, 3)
        end)
        sys.run()
    """)
    (dev.fs_root / "p.bin").write_bytes(pkg)
    dev.run_for("2s")
    ws = dev.upgrade_checks.warnings
    assert [w.code for w in ws] == ["sleep-during-download"]
    assert "2000 bytes" in ws[0].message
    assert dev.boots[0].outcome == "sleep"  # a warning, not a failure


def test_sleep_after_the_download_finished_is_fine(boot):
    pkg = build_air8101_ota({"main.lua": b"sys.run()"})
    dev = boot("""
        sys.taskInit(function()
          fota.init()
          fota.run(io.readFile("/p.bin"))
          fota.finish(false)
          pm.power(pm.WORK_MODE, 3)
        end)
        sys.run()
    """)
    (dev.fs_root / "p.bin").write_bytes(pkg)
    dev.run_for("2s")
    assert dev.upgrade_checks.warnings == []
