"""Callbacks from the firmware run on the main Lua state, whatever coroutine created the
function, under the same count hook as the rest of the boot (issue 9 item 1)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from luatos_sim import Device, DeviceOptions

# The repro: the callback of a socket created inside a task runs > 1000 instructions.
SOCKET_CB = """
PROJECT = "r2" VERSION = "001.000.000"
local n = 0
local function cb(sc, event, param)
  local x = 0
  for i = 1, 5000 do x = x + i end
  n = n + 1
  log.info("cb", event, param, x, n, coroutine.isyieldable())
end
sys.taskInit(function()
  wlan.init() wlan.connect("ap", "password")
  log.info("ip", sys.waitUntil("IP_READY", 10000))
  local sc = socket.create(socket.LWIP_STA, cb)
  socket.config(sc, nil, true)
  log.info("connect", socket.connect(sc, "10.1.2.3", 5000))
  sys.wait(1000)
  log.info("done", n)
end)
sys.run()
"""


def test_socket_callback_made_in_a_task_runs_long(boot: Callable[..., Device]) -> None:
    dev = boot(SOCKET_CB)
    dev.run_for("5s")
    lines = dev.lines()
    assert any(" 12502500 1 false" in ln and "I/user.cb" in ln for ln in lines), lines[-5:]
    assert "I/user.done 1" in lines
    assert not any("Lua VM exit" in ln for ln in lines)


@pytest.fixture
def slow_http() -> Iterator[int]:
    """A loopback server answering 200 with a body sent in a few pieces."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                try:
                    c.recv(4096)
                    body = b"x" * 3000
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n")
                    for i in range(0, 3000, 1000):
                        c.sendall(body[i:i + 1000])
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def test_http_progress_callback_made_in_a_task_runs_long(
        boot: Callable[..., Device], slow_http: int) -> None:
    dev = boot("""
        PROJECT = "cb" VERSION = "1.0.0"
        sys.taskInit(function()
            wlan.init() wlan.connect("ap", "pw") sys.waitUntil("IP_READY")
            local calls = 0
            local function progress(total, got, ud)
                local x = 0
                for i = 1, 5000 do x = x + i end
                calls = calls + 1
            end
            local code = http.request("GET", "http://files.example.com/f", nil, nil,
                {callback = progress, userdata = "u"}).wait()
            log.info("result", code, calls > 0)
        end)
        sys.run()
    """)
    dev.net.map_address("files.example.com", f"127.0.0.1:{slow_http}")
    dev.run_until("I/user.result", within="1m")
    assert "I/user.result 200 true" in dev.lines()


def test_a_busy_loop_in_a_callback_trips_the_guard(boot: Callable[..., Device]) -> None:
    """The count hook covers the main state: a callback that never returns is reset like any
    other busy loop instead of hanging the emulator."""
    dev = boot("""
        PROJECT = "cb" VERSION = "1.0.0"
        sys.taskInit(function()
            wlan.init() wlan.connect("ap", "pw") sys.waitUntil("IP_READY")
            local sc = socket.create(socket.LWIP_STA, function() while true do end end)
            socket.config(sc, nil, true)
            socket.connect(sc, "10.1.2.3", 5000)
            sys.wait(1000)
            log.info("never")
        end)
        sys.run()
    """, options=DeviceOptions(epoch_at_power_on=1_700_000_000,
                               busy_loop_instructions=2_000_000))
    dev.run_for("3s")
    assert "I/user.never" not in dev.lines()
    assert dev.boots[0].outcome == "watchdog"
