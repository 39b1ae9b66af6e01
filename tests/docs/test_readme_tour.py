"""The README's tour, run as written: its shell blocks are pasted into bash in a temporary
directory holding a copy of device/, against the server the tour starts (on a free port).

The README cannot rot: a renamed flag, a wrong product key, a missing step or a changed log
line fails here with the block and its output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from luatos_common.ports import free_port

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BLOCK_RE = re.compile(r"^<!-- tour:(?P<name>[\w-]+) -->\n```sh\n(?P<body>.*?)^```$", re.M | re.S)
OTHER_RE = re.compile(r"^<!-- readme:(?P<name>[\w-]+) -->\n```sh\n(?P<body>.*?)^```$", re.M | re.S)
TOUR_PORT = "8000"  # what the README writes; the test substitutes a free port


def tour_blocks(text: str) -> dict[str, str]:
    return {m["name"]: m["body"] for m in BLOCK_RE.finditer(text)}


def on_port(block: str, port: int) -> str:
    """The block with the tour's port replaced by ``port`` (only where it names the server)."""
    out, n = re.subn(rf"(--port |127\.0\.0\.1:){TOUR_PORT}\b", rf"\g<1>{port}", block)
    assert n or TOUR_PORT not in block, f"port {TOUR_PORT} in an unexpected place:\n{block}"
    return out


def shell_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    for k in ("LUATOS_FOTA_DATA", "LUATOS_FOTA_TOKEN", "LUATOS_FOTA_DB", "LUATOS_SIM_LIB_DIRS"):
        env.pop(k, None)
    return env


def run_block(name: str, block: str, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"README tour block {name!r} exited {proc.returncode}:\n" \
                                 f"{block}\n--- output ---\n{out[-4000:]}"
    return proc.stdout


def wait_listening(port: int, server: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the tour's server exited {server.returncode}:\n{server.stdout.read() if server.stdout else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"the tour's server did not listen on {port} within {seconds} s")


def banners(out: str) -> list[str]:
    return re.findall(r"I/user\.main FOTA_KIT_DEMO (\d{3}\.\d{3}\.\d{3}) ", out)


def test_the_readme_blocks_are_the_tour() -> None:
    blocks = tour_blocks(README.read_text(encoding="utf-8"))
    assert list(blocks) == ["install", "server", "publish", "device", "ramp", "target"]


@pytest.mark.slow
def test_readme_tour_runs_as_written(tmp_path: Path) -> None:
    blocks = tour_blocks(README.read_text(encoding="utf-8"))
    shutil.copytree(REPO / "device", tmp_path / "device")
    port = free_port()
    env = shell_env()
    server = subprocess.Popen(["bash", "-euo", "pipefail", "-c", "exec " + on_port(blocks["server"], port)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_listening(port, server)
        published = run_block("publish", on_port(blocks["publish"], port), tmp_path, env)
        assert "release 1: FOTA_KIT_DEMO_LuatOS-SoC_Air8101 001.000.001" in published
        # The project itself is untouched; only the package says 001.000.001.
        assert 'VERSION = "001.000.000"' in (tmp_path / "device" / "main.lua").read_text()

        first = run_block("device", on_port(blocks["device"], port), tmp_path, env)
        assert banners(first) == ["001.000.000", "001.000.001"]
        assert "answered HTTP 304" in first  # the plain-words note next to callback 4

        ramped = run_block("ramp", on_port(blocks["ramp"], port), tmp_path, env)
        assert "release 2: FOTA_KIT_DEMO_LuatOS-SoC_Air8101 001.000.002" in ramped
        assert banners(ramped) == ["001.000.001"], "the README says this device (its flash " \
            "kept by --state) is outside the first 10 % of release 2"

        final = run_block("target", on_port(blocks["target"], port), tmp_path, env)
        assert banners(final) == ["001.000.001", "001.000.002"]
        assert re.search(r"serve .*C8C2C68CD602 .*2001\.001\.001 -> 2001\.001\.002", final)
        assert "code=40" not in final  # one device, versions only rising: never loop-banned
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


def test_the_other_readme_command_blocks_run_as_written(tmp_path: Path) -> None:
    blocks = {m["name"]: m["body"] for m in OTHER_RE.finditer(README.read_text(encoding="utf-8"))}
    assert sorted(blocks) == ["pack", "run"]
    shutil.copytree(REPO / "device", tmp_path / "device")
    env = shell_env()
    ran = run_block("run", blocks["run"], tmp_path, env)
    assert "I/user.fota_check start periodic" in ran  # 9 h of virtual time: the 4-hourly checks
    assert re.search(r"^luat:U\(\d+\):[IW]/user\.fota_result ", ran, re.M)  # the raw UART form
    records = [json.loads(line) for line in ran.splitlines() if line.startswith("{")]
    assert any("FOTA_KIT_DEMO 001.000.000" in r["line"] for r in records)  # the --json block
    packed = run_block("pack", blocks["pack"], tmp_path, env)
    assert "FOTA_KIT_DEMO_2001.001.001_LuatOS-SoC_Air8101.bin" in packed
    assert (tmp_path / "script.bin").is_file() and packed.rstrip().endswith("OK")
