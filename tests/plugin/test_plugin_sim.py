"""The plugin on the emulator backend, through inner pytest runs (pytester).

Inner runs cost about a second each on a busy machine, so related inner tests share a run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

QUIET = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")

MAIN_LUA = """
PROJECT = "PLUGIN_T"
VERSION = "002.000.007"
log.info("main", PROJECT, VERSION)
fskv.init()
local boots = (fskv.get("boots") or 0) + 1
fskv.set("boots", boots)
log.info("main", "boots", boots)
uart.setup(1, 921600)
uart.on(1, "receive", function(id, len)
    local data = uart.read(id, len)
    log.info("rx", #data, (data:upper():gsub("\\n", "|")))
    uart.write(id, data)
end)
sys.timerLoopStart(function() log.info("hb", "beat") end, 1000)
sys.run()
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    proj = pytester.mkdir("proj")
    (proj / "main.lua").write_text(MAIN_LUA, encoding="utf-8")
    pytester.makeini("[pytest]\nluatos_project = proj\n")
    return proj


def test_sim_dut_expect_write_reset_and_virtual_time(pytester: pytest.Pytester,
                                                     project: Path) -> None:
    quiet = pytester.mkdir("quiet")
    (quiet / "main.lua").write_text('log.info("main", "no uart here")\nsys.run()\n')
    pytester.makepyfile("""
        import pytest
        from luatos_testing.dut import ExpectTimeout

        def test_boot_in_virtual_time(dut, luatos_device):
            assert dut.backend == "sim"
            m = dut.expect(r"I/user\\.main PLUGIN_T (\\S+)", timeout="5s")
            assert m[1] == "002.000.007"
            dut.expect_exact("I/user.main boots 1")
            dut.expect("I/user.hb beat", timeout="2s")
            # the device stopped where the heartbeat matched: 1 s after main started
            assert dut.last_record.device_ms == luatos_device.current_ms() == 1800
            dut.run_for("10m")
            assert luatos_device.current_ms() == 1800 + 600_000
            assert dut.lines().count("I/user.hb beat") == 601

        def test_expect_consumes_the_stream_in_order(dut):
            dut.expect("I/user.hb beat")
            dut.expect("I/user.hb beat")
            assert dut.last_record.device_ms == 2800
            with pytest.raises(ExpectTimeout):  # the banner is behind the cursor now
                dut.expect("I/user.main boots 1", timeout="2s")

        def test_write_reaches_the_uart_receive_callback(dut):
            dut.expect("I/user.main boots 1")
            dut.write("abc\\n")
            dut.expect(r"^I/user\\.rx 4 ABC\\|$", timeout="1s")
            dut.expect(r"^abc$", timeout="1s")  # the script's echo, on the console UART
            dut.write(b"x")  # no newline: the echoed line stays open until the next write
            dut.write("yz\\n")
            dut.expect(r"^I/user\\.rx 1 X$")
            dut.expect(r"^I/user\\.rx 3 YZ\\|$")
            dut.expect(r"^xyz$")
            assert "host> abc" in [r.line for r in dut.log]

        @pytest.mark.luatos_project("quiet")
        def test_write_to_a_closed_uart_is_dropped_with_a_notice(dut, luatos_device):
            dut.expect("no uart here")
            dut.write("hello\\n")
            dut.run_for("1s")
            notes = [r.text for r in dut.log if r.source == "sim"]
            assert any("uart1: 6 byte(s) from the host dropped" in n for n in notes), notes
            assert luatos_device.uart.dropped == 6

        def test_reset_power_cycles_and_keeps_the_flash(dut):
            dut.expect("I/user.main boots 1")
            dut.reset()
            dut.expect("^pm:boot up by power on$")
            dut.expect("I/user.main boots 2")  # fskv survived the power cycle
            dut.write("after reset\\n")
            dut.expect("^after reset$")
            dut.reset()
            dut.expect("I/user.main boots 3")
            assert dut.resets == 2
            assert dut.device.boots[-1].reason == "power-on"

        def test_run_for_wants_a_unit(dut):
            with pytest.raises(ValueError, match="no unit"):
                dut.run_for(2.5)
            dut.run_for("2.5s")
            assert dut.device.current_ms() == 2500
    """)
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(passed=6)


def test_failure_reports_carry_the_device_log(pytester: pytest.Pytester, project: Path) -> None:
    pytester.makepyfile("""
        def test_expect_times_out(dut):
            dut.expect("I/user.main boots")
            dut.expect("this line never comes", timeout="3s")

        def test_plain_assert_after_running(dut):
            dut.run_for("30s")
            assert False, "fails on purpose"

        def test_passes(dut):
            dut.expect("I/user.main boots 1")
    """)
    result = pytester.runpytest(*QUIET, "--luatos-log-lines", "5", "-rA")
    result.assert_outcomes(failed=2, passed=1)
    out = result.stdout.str()
    # the expect failure names the pattern and the virtual time it waited, with a tail
    assert "'this line never comes' did not appear within 3.000s (virtual time" in out
    assert re.search(r"^E\s+0\.800s #1 luat:U\(800\):I/user\.main PLUGIN_T 002\.000\.007$",
                     out, re.M)
    sections = list(re.finditer(
        r"luatos device log \(sim; last 5 of (\d+) records; full log: (\S+)\) -+\n"
        r"((?:.*\n){5})", out))
    assert len(sections) == 2, out  # one per failed test, none for the passing one
    first, second = sections
    assert first[3].splitlines()[-1].strip() == "3.800s #1 luat:U(3800):I/user.hb beat"
    assert second[3].splitlines()[-1].strip() == "29.800s #1 luat:U(29800):I/user.hb beat"
    for sec in sections:
        full = Path(sec[2]).read_text(encoding="utf-8").splitlines()
        assert len(full) == int(sec[1])
        assert any("main:LuatOS@Air8101" in line for line in full)
        assert [line.strip() for line in full[-5:]] == \
            [line.strip() for line in sec[3].splitlines()]


def test_project_comes_from_option_marker_ini_in_that_order(pytester: pytest.Pytester,
                                                           project: Path) -> None:
    for name, text in (("marked", "from the marker"), ("cli", "from the option")):
        d = pytester.mkdir(name)
        (d / "main.lua").write_text(f'log.info("main", "{text}")\nsys.run()\n')
    pytester.makepyfile("""
        import pytest

        @pytest.mark.luatos_project("marked")
        def test_marked(dut, luatos_project, request):
            cli = request.config.getoption("luatos_project")
            assert luatos_project.name == ("cli" if cli else "marked")
            dut.expect("I/user.main from the " + ("option" if cli else "marker"))

        def test_ini(dut, luatos_project, request):
            cli = request.config.getoption("luatos_project")
            assert luatos_project.name == ("cli" if cli else "proj")

        @pytest.mark.luatos_project("nowhere")
        def test_missing(dut):
            pass
    """)
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.re_match_lines([r".*LuatOS project .*nowhere does not exist "
                                  r"\(from luatos_project marker\)"])
    result = pytester.runpytest(*QUIET, "--luatos-project", "cli", "-k", "not missing")
    result.assert_outcomes(passed=2)


def test_lib_dir_option_reaches_the_device_and_bad_model_is_named(
        pytester: pytest.Pytester) -> None:
    proj = pytester.mkdir("libproj")
    (proj / "main.lua").write_text('local g = require "greeting"\nlog.info("main", g.text)\n'
                                   'sys.run()\n')
    lib = pytester.mkdir("mylib")
    (lib / "greeting.lua").write_text('return { text = "hello from the lib dir" }\n')
    pytester.makeini("[pytest]\nluatos_project = libproj\n")
    pytester.makepyfile("""
        def test_lib(dut):
            dut.expect("I/user.main hello from the lib dir")
    """)
    pytester.runpytest(*QUIET, "--luatos-lib-dir", "mylib").assert_outcomes(passed=1)
    result = pytester.runpytest(*QUIET, "--luatos-lib-dir", "mylib", "--luatos-model", "Air9999")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown model 'Air9999'; known models: *Air8101*"])
