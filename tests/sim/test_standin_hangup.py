"""A device hanging up on a stand-in server leaves no Python traceback on stderr
(issue 9 item 10)."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from luatos_sim.platform.network import public_httpdns_port


def _hang_up_mid_answer(port: int) -> None:
    c = socket.create_connection(("127.0.0.1", port), timeout=2)
    c.sendall(b"GET /resolve?short=1&name=luatos.com HTTP/1.1\r\nHost: 223.5.5.5\r\n\r\n")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # RST: the stand-in's answer meets a connection that is gone


def test_httpdns_stand_in_is_quiet_when_the_device_hangs_up(
        capfd: pytest.CaptureFixture[str]) -> None:
    port = public_httpdns_port()
    for _ in range(10):
        _hang_up_mid_answer(port)
    time.sleep(0.3)  # the server threads finish their writes
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Connection" not in err, err


def test_a_clean_run_has_a_clean_exit_and_stderr(tmp_path: object) -> None:
    """The vendor-demo pattern (back-to-back HTTP DNS lookups that time out on the device
    side) leaves exit code 0 and nothing on stderr."""
    import subprocess
    import sys
    from pathlib import Path

    proj = Path(str(tmp_path)) / "p"
    proj.mkdir()
    (proj / "main.lua").write_text("""
PROJECT = "dns" VERSION = "1.0.0"
sys.taskInit(function()
    wlan.init() wlan.connect("ap", "pw") sys.waitUntil("IP_READY")
    for i = 1, 30 do
        local code = http.request("GET", "http://223.5.5.5/resolve?short=1&name=luatos.com",
            nil, nil, {timeout = 1}).wait()
        sys.wait(10)
    end
    log.info("done")
end)
sys.run()
""")
    res = subprocess.run([sys.executable, "-m", "luatos_sim.cli", "run", str(proj), "--for",
                          "2m"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert "I/user.done" in res.stdout
