"""What every tool of the kit does the same way: --version, help lines, shell completion, typo
suggestions, NO_COLOR; luatos-tail --list and a missing port named with the ports that exist;
the luatos-sim --until tail."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from luatos_fota.cli import main as fota_cli
from luatos_sim.cli import cli as sim_cli
from luatos_sim.cli import main as sim_main
from luatos_tools import tail_cli
from luatos_tools.flash_cli import cli as flash_cli
from luatos_tools.pack_cli import cli as pack_cli

BIN = Path(sys.executable).parent
TOOLS = ["luatos-sim", "luatos-fota", "luatos-pack", "luatos-tail", "luatos-flash"]
CLICK_TOOLS = {"luatos-sim": sim_cli, "luatos-fota": fota_cli, "luatos-tail": tail_cli.cli,
               "luatos-flash": flash_cli, "luatos-pack": pack_cli}


def tool(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("name", TOOLS)
def test_every_tool_is_click(name: str) -> None:
    assert name in CLICK_TOOLS


@pytest.mark.parametrize("name", TOOLS)
def test_every_tool_answers_version(name: str) -> None:
    res = tool(name, "--version")
    assert res.returncode == 0, res.stderr
    assert re.fullmatch(rf"{name} \d+\.\d+\.\d+\S*\n", res.stdout), res.stdout


def _commands(cmd: click.Command, path: str) -> list[tuple[str, click.Command]]:
    out = [(path, cmd)]
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            out += _commands(sub, f"{path} {name}")
    return out


@pytest.mark.parametrize("name", sorted(CLICK_TOOLS))
def test_every_command_has_a_help_line(name: str) -> None:
    missing = [path for path, cmd in _commands(CLICK_TOOLS[name], name)
               if not (cmd.help or cmd.short_help or "").strip()]
    assert not missing, f"commands without a help line: {missing}"
    undocumented = [f"{path} {p.opts[0]}" for path, cmd in _commands(CLICK_TOOLS[name], name)
                    for p in cmd.params
                    if isinstance(p, click.Option) and not p.hidden and not p.help
                    and p.opts[0] not in ("--data", "--db", "--json")
                    and not path.endswith(" serve")]  # serve: flags follow the server config (own tests)
    assert not undocumented, f"options without help: {undocumented}"


@pytest.mark.parametrize("name", sorted(CLICK_TOOLS))
def test_bash_completion_script_is_offered(name: str) -> None:
    var = "_" + name.upper().replace("-", "_") + "_COMPLETE"
    res = tool(name, env={var: "bash_source"})
    assert res.returncode == 0 and f"complete -o nosort -F _{name.replace('-', '_')}_completion {name}" \
        in res.stdout, res.stdout + res.stderr


def test_completion_completes_subcommands() -> None:
    res = tool("luatos-fota", env={"_LUATOS_FOTA_COMPLETE": "bash_complete",
                                   "COMP_WORDS": "luatos-fota rel", "COMP_CWORD": "1"})
    assert "plain,release" in res.stdout.split()


def test_typos_get_suggestions() -> None:
    res = tool("luatos-fota", "relase")
    assert res.returncode == 2 and "Did you mean 'release'?" in res.stderr
    res = tool("luatos-sim", "run", "device/", "--untill", "x")
    assert res.returncode == 2 and "--until" in res.stderr and "Did you mean" in res.stderr


def test_no_color_strips_styles_even_on_a_styled_command(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert CliRunner().invoke(fota_cli, ["init", "--data", str(data)]).exit_code == 0
    styled = CliRunner().invoke(fota_cli, ["product", "list", "--data", str(data)], color=True)
    assert "\x1b[1m" in styled.output  # the header is bold on a colour terminal
    plain = CliRunner(env={"NO_COLOR": "1"}).invoke(
        fota_cli, ["product", "list", "--data", str(data)], color=True)
    assert plain.exit_code == 0 and "ID" in plain.output and "\x1b[" not in plain.output


def test_sim_text_output_honours_no_color(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "main.lua").write_text('log.warn("main", "hi")\nsys.run()\n')

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    assert sim_main(["run", str(proj), "--for", "1s"], out=out) == 0
    assert "\x1b[33m" in out.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    out = Tty()
    assert sim_main(["run", str(proj), "--for", "1s"], out=out) == 0
    assert "W/user.main hi" in out.getvalue() and "\x1b[" not in out.getvalue()


def test_until_that_never_matches_prints_the_last_lines(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "main.lua").write_text('sys.timerLoopStart(log.info, 1000, "hb", "beat")\nsys.run()\n')
    assert sim_main(["run", str(proj), "--until", "never", "--for", "5s"], out=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert "'never' did not appear within 5.000s of virtual time" in err
    assert err.count("I/user.hb beat") >= 3, err  # the tail it promises, not just the headline


def test_tail_list_names_the_machine_s_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    class Port:
        def __init__(self, device: str, description: str) -> None:
            self.device, self.description, self.hwid = device, description, "USB VID:PID=1A86:7523"

    monkeypatch.setattr(tail_cli, "serial_ports",
                        lambda: [Port("/dev/ttyUSB0", "USB-SERIAL CH340"), Port("/dev/ttyS0", "n/a")])
    out = io.StringIO()
    assert tail_cli.main(["--list"], stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue().splitlines() == ["/dev/ttyUSB0  USB-SERIAL CH340", "/dev/ttyS0"]
    err = io.StringIO()
    assert tail_cli.main(["/dev/ttyUSB9"], stdout=io.StringIO(), stderr=err) == tail_cli.EXIT_PORT_GONE
    assert err.getvalue().strip() == ("luatos-tail: /dev/ttyUSB9 does not exist; serial ports on "
                                      "this machine: /dev/ttyUSB0, /dev/ttyS0")


def test_tail_list_uses_pyserial_for_real() -> None:
    from serial.tools import list_ports

    res = tool("luatos-tail", "--list", "--json")
    assert res.returncode == 0
    assert [p["device"] for p in __import__("json").loads(res.stdout)] == \
        sorted(p.device for p in list_ports.comports())


def test_tail_without_port_is_a_usage_error_pointing_at_list() -> None:
    res = tool("luatos-tail")
    assert res.returncode == 2 and "luatos-tail --list" in res.stderr


def test_one_spelling_of_the_bk_crc_flag() -> None:
    for name in ("luatos-flash", "luatos-pack"):
        helps = tool(name, "--help").stdout + (tool(name, "image", "--help").stdout
                                               if name == "luatos-pack" else "")
        assert "--bk-crc" in helps and "--bkcrc" not in helps, name
