"""A device that crashes fails the test, even when every assert passed (inner pytest runs).

The issue's case: an upgrade test passed although the device had crashed, because the
crash-reboot ran the very check the test waited for. Here a project that logs its "ready"
line and then crashes in a task: ``dut.expect("ready")`` passes, the test would pass, the
plugin fails it with the crash and the lines that led there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

QUIET = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")

CRASHES = """
log.info("main", "ready")
sys.taskInit(function()
    sys.wait(2000)
    log.info("task", "reading the config")
    local cfg = nil
    log.info("task", cfg.server)
end)
sys.run()
"""

RETURNS = """
log.info("main", "ready")
"""

HEALTHY = """
log.info("main", "ready")
sys.timerLoopStart(function() log.info("hb", "beat") end, 1000)
sys.run()
"""


@pytest.fixture
def projects(pytester: pytest.Pytester) -> Path:
    for name, src in (("crashes", CRASHES), ("returns", RETURNS), ("healthy", HEALTHY)):
        d = pytester.mkdir(name)
        (d / "main.lua").write_text(src, encoding="utf-8")
    pytester.makeini("[pytest]\nluatos_project = healthy\n")
    return pytester.path


def test_a_crash_fails_a_test_that_would_otherwise_pass(pytester: pytest.Pytester,
                                                        projects: Path) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.luatos_project("crashes")
        def test_task_error(dut):
            dut.expect("I/user.main ready")
            dut.run_for("10s")          # the task fails at 2 s; the device reboots
            dut.expect("I/user.main ready", timeout="30s")  # ...and says ready again

        @pytest.mark.luatos_project("returns")
        def test_main_returns_reboot_loop(dut):
            dut.expect("I/user.main ready")
            dut.run_for("2m")

        def test_healthy(dut):
            dut.expect("I/user.main ready")
            dut.run_for("1m")
    """)
    result = pytester.runpytest(*QUIET, "-rA")
    result.assert_outcomes(failed=2, passed=1)
    out = result.stdout.str()
    assert "the device crashed during the test" in out
    assert "boot 1: Lua error" in out and "attempt to index a nil value (local 'cfg')" in out
    assert "I/user.task reading the config" in out  # the lines that led there
    assert "reboot loop" in out or "Lua VM exit (main returned)" in out
    assert "@pytest.mark.luatos_allow_crash(reason) or call dut.allow_crash(reason)" in out
    # the failing tests carry the device log section too
    assert out.count("luatos device log (sim;") == 2


def test_a_test_that_expects_a_crash_declares_it(pytester: pytest.Pytester,
                                                 projects: Path) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.luatos_project("returns")
        @pytest.mark.luatos_allow_crash("main returning is what this test is about")
        def test_marker(dut):
            dut.run_for("2m")
            assert any("reboot loop" in c for c in dut.crashes())

        @pytest.mark.luatos_project("crashes")
        def test_method(dut, luatos_device):
            dut.allow_crash("the task error is the point")
            dut.run_for("10s")
            assert luatos_device.boots[0].outcome == "error"

        @pytest.mark.luatos_project("crashes")
        def test_failing_anyway_gets_the_crash_section(dut):
            dut.run_for("10s")
            assert False, "fails on purpose"
    """)
    result = pytester.runpytest(*QUIET, "-rA")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "fails on purpose" in out and "luatos device crash" in out
