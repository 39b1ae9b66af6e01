"""luatos-sim run: output forms and exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from luatos_sim.cli import main

from .conftest import write_project

COUNTER = """
fskv.init()
local n = (fskv.get("n") or 0) + 1
fskv.set("n", n)
log.info("boot", n)
if n < 3 then sys.timerStart(rtos.reboot, 1000) end
sys.run()
"""


def run(argv):
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue()


def test_text_output_has_virtual_time_and_device_lines(tmp_path):
    proj = write_project(tmp_path / "p", {"main.lua": COUNTER})
    code, out = run(["run", str(proj), "--for", "5s"])
    assert code == 0
    assert "[        0.800s] I/user.boot 1" in out
    assert "[        0.581s] I/main LuatOS@Air8101 base 25.11 bsp V2001 64bit" in out


def test_raw_output_is_the_uart_form(tmp_path):
    proj = write_project(tmp_path / "p", {"main.lua": COUNTER})
    code, out = run(["run", str(proj), "--for", "2s", "--raw"])
    assert code == 0
    assert "luat:U(800):I/user.boot 1" in out.splitlines()
    assert "luat:I(581):main:LuatOS@Air8101 base 25.11 bsp V2001 64bit" in out.splitlines()


def test_json_output_one_record_per_line(tmp_path):
    proj = write_project(tmp_path / "p", {"main.lua": COUNTER})
    code, out = run(["run", str(proj), "--for", "2s", "--json"])
    assert code == 0
    recs = [json.loads(line) for line in out.splitlines()]
    boot = [r for r in recs if r["line"] == "I/user.boot 1"][0]
    assert boot["level"] == "I" and boot["tag"] == "boot" and boot["device_ms"] == 800
    assert boot["time"] == "0.800s"


def test_until_matches_on_a_later_boot(tmp_path):
    proj = write_project(tmp_path / "p", {"main.lua": COUNTER})
    code, out = run(["run", str(proj), "--until", r"boot 3$"])
    assert code == 0
    assert out.rstrip().endswith("I/user.boot 3")


def test_until_never_matching_exits_1(tmp_path):
    proj = write_project(tmp_path / "p", {"main.lua": COUNTER})
    code, _ = run(["run", str(proj), "--until", "boot 9", "--for", "1m"])
    assert code == 1


def test_project_errors_exit_2(tmp_path, capsys):
    empty = write_project(tmp_path / "empty", {"util.lua": "return 1"})
    assert run(["run", str(empty)])[0] == 2
    assert "no main.lua" in capsys.readouterr().err
    dup = write_project(tmp_path / "dup", {"main.lua": "", "a/x.lua": "return 1",
                                           "b/x.lua": "return 2"})
    assert run(["run", str(dup)])[0] == 2
    assert "duplicate file name 'x.lua'" in capsys.readouterr().err
    assert run(["run", str(tmp_path / "missing")])[0] == 2
    assert run(["run", str(dup), "--for", "soon"])[0] == 2


def test_state_dir_keeps_flash_between_runs(tmp_path):
    proj = write_project(tmp_path / "p", {"main.lua": 'fskv.init(); local n = (fskv.get("n") or 0) + 1; fskv.set("n", n); log.info("n", n); sys.run()'})
    state = tmp_path / "state"
    assert "I/user.n 1" in run(["run", str(proj), "--for", "1s", "--state", str(state)])[1]
    assert "I/user.n 2" in run(["run", str(proj), "--for", "1s", "--state", str(state)])[1]


def test_console_script_is_installed(tmp_path):
    proj = write_project(tmp_path / "p", {"main.lua": COUNTER})
    res = subprocess.run([sys.executable, "-m", "luatos_sim.cli", "run", str(proj), "--for", "1s"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "I/user.boot 1" in res.stdout


def test_bad_network_flag_is_a_usage_error(tmp_path, capsys):
    proj = write_project(tmp_path / "p", {"main.lua": COUNTER})
    assert run(["run", str(proj), "--map", "nonsense"])[0] == 2
    assert "--map 'nonsense'" in capsys.readouterr().err


def test_syntax_error_is_exit_3_and_stops_at_the_reboot_loop(tmp_path, capsys):
    proj = write_project(tmp_path / "p", {"main.lua": 'log.info("boot")\nlocal x = = 1\n'})
    code, out = run(["run", str(proj), "--for", "1h"])
    err = capsys.readouterr().err
    assert code == 3
    assert "the device crashed: reboot loop: 3 boots in a row failed" in err
    assert "main.lua:2:" in err and "the last lines that led there" in err
    # stopped at the loop (three 15 s exit-reboot delays), not after an hour of reboots
    last = json.loads(run(["run", str(proj), "--for", "1h", "--json"])[1].splitlines()[-1])
    assert last["boot"] == 3
    capsys.readouterr()
    code, out = run(["run", str(proj), "--for", "5m", "--keep-going", "--json"])
    assert code == 3
    assert json.loads(out.splitlines()[-1])["boot"] > 10  # ran on through the loop
    assert "reboot loop" in capsys.readouterr().err


def test_error_in_a_task_is_exit_3_with_the_lines_that_led_there(tmp_path, capsys):
    proj = write_project(tmp_path / "p", {"main.lua": """
        sys.taskInit(function()
          sys.wait(2000)
          log.info("about", "to fail")
          local cfg = nil
          log.info("value", cfg.server)
        end)
        sys.run()
    """})
    code, _ = run(["run", str(proj), "--for", "10s"])
    err = capsys.readouterr().err
    assert code == 3
    assert "boot 1: Lua error" in err and "attempt to index a nil value" in err
    assert "I/user.about to fail" in err


def test_until_matching_wins_and_a_clean_run_is_0(tmp_path, capsys):
    proj = write_project(tmp_path / "p", {"main.lua": 'log.info("hello")\nsys.run()\n'})
    assert run(["run", str(proj), "--for", "10s"])[0] == 0
    crash = write_project(tmp_path / "c", {"main.lua": 'log.info("hello")\nerror("boom")\n'})
    assert run(["run", str(crash), "--until", "hello"])[0] == 0  # what was asked for came
    assert run(["run", str(crash), "--until", "never", "--for", "20s"])[0] == 3
    assert "boom" in capsys.readouterr().err


def test_state_without_project_powers_the_same_device_up_again(tmp_path, capsys):
    """What the flash holds boots, files written by the scripts included; a project edit on
    disk does not reach a device that is only powered up."""
    proj = write_project(tmp_path / "p", {"main.lua": COUNTER})
    state = str(tmp_path / "flash")
    assert run(["run", str(proj), "--state", state, "--for", "10s"])[0] == 0
    (proj / "main.lua").write_text('log.info("edited") sys.run()')
    code, out = run(["run", "--state", state, "--for", "2s"])
    assert code == 0 and "I/user.boot 4" in out and "edited" not in out
    code, _ = run(["run", "--for", "2s"])
    assert code == 2 and "give PROJECT" in capsys.readouterr().err
    code, _ = run(["run", "--state", str(tmp_path / "empty"), "--for", "2s"])
    assert code == 2 and "no project" in capsys.readouterr().err
