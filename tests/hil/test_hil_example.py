"""Example hardware-in-the-loop test: the same file runs on the emulator and on a board.

    pytest tests/hil                                                    # emulator (virtual time)
    pytest tests/hil --luatos-backend serial --luatos-port /dev/ttyUSB0  # board flashed with
                                                                        # tests/hil/project

Nothing here knows which backend it runs on: ``dut`` is chosen on the command line. The one
emulator-only test asks for ``luatos_device`` and is skipped on a board.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PROJECT = Path(__file__).parent / "project"

pytestmark = pytest.mark.luatos_project("project")


def project_global(name: str) -> str:
    """A string global of the project's main.lua (what the banner line must show)."""
    m = re.search(rf'^{name}\s*=\s*"([^"]*)"', (PROJECT / "main.lua").read_text("utf-8"), re.M)
    assert m, f"{PROJECT / 'main.lua'} defines no {name} = \"...\""
    return m[1]


def test_boot_banner_and_heartbeat(dut):
    dut.expect(r"main:LuatOS@\w+ base", timeout="10s")  # the firmware's own banner
    banner = dut.expect(r"I/user\.main (\S+) (\d{3}\.\d{3}\.\d{3})", timeout="10s")
    assert (banner[1], banner[2]) == (project_global("PROJECT"), project_global("VERSION"))
    first = int(dut.expect(r"I/user\.hb (\d+)$", timeout="5s")[1])
    second = int(dut.expect(r"I/user\.hb (\d+)$", timeout="5s")[1])
    assert second == first + 1
    assert not [line for line in dut.lines() if "Lua VM exit" in line]


def test_commands_over_the_console_uart(dut):
    uart_id = dut.expect(r"I/user\.main ready uart (\d+)", timeout="10s")[1]
    assert uart_id.isdigit()
    a, b = 1234, -5678
    dut.write(f"add {a} {b}\r\n")
    assert int(dut.expect(r"^sum (-?\d+)$", timeout="5s")[1]) == a + b
    dut.write("ping hil-42\n")
    dut.expect_exact("pong hil-42", timeout="5s")
    dut.write("frobnicate\n")
    dut.expect(r"^error unknown command frobnicate$", timeout="5s")
    # The script logged each command it ran, in order.
    cmds = [line.split(" ", 1)[1] for line in dut.lines() if line.startswith("I/user.cmd ")]
    assert [c.split(" ")[0] for c in cmds] == ["add", "ping", "frobnicate"]


def test_reboot_command_boots_again(dut):
    dut.expect(r"I/user\.main ready uart", timeout="10s")
    dut.write("reboot\n")
    dut.expect(r"^pm:boot up by reboot$", timeout="5s")
    dut.expect(r"I/user\.main ready uart", timeout="10s")
    # The heartbeat restarts from 1 after the reboot.
    assert int(dut.expect(r"I/user\.hb (\d+)$", timeout="5s")[1]) == 1


def test_heartbeat_for_an_hour_of_virtual_time(luatos_device):
    """Emulator only (skipped on a board): an hour of virtual time costs well under a second."""
    luatos_device.run_for("1h")
    beats = [int(line.split()[1]) for line in luatos_device.lines()
             if line.startswith("I/user.hb ")]
    assert beats == list(range(1, len(beats) + 1))  # none missed, none repeated
    assert len(beats) >= 3590  # one per second once main runs
    assert len(luatos_device.boots) == 1
