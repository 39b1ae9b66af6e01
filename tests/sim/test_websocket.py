"""websocket client against a real loopback WebSocket server (the websockets package):
handshake with extra headers, text/binary/fragmented frames, recv, sent, disconnect, and
autoreconn after the server drops the connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.sync.server import ServerConnection, serve

from luatos_sim import Device


class EchoServer:
    def __init__(self) -> None:
        self.got: list[Any] = []
        self.headers: list[str | None] = []
        self.conns: list[ServerConnection] = []

        def handler(ws: ServerConnection) -> None:
            self.conns.append(ws)
            self.headers.append(ws.request.headers.get("X-Token") if ws.request else None)
            try:
                for msg in ws:
                    self.got.append(msg)
                    ws.send(b"bin:" + msg if isinstance(msg, bytes) else "echo:" + msg)
            except Exception:  # noqa: BLE001 - the device dropped the link: the test ends it
                pass

        self.server = serve(handler, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def ws_server() -> Iterator[EchoServer]:
    s = EchoServer()
    yield s
    s.close()


def test_websocket_echo_frames_and_reconnect(boot: Callable[..., Device],
                                            ws_server: EchoServer) -> None:
    dev = boot("""
sys.taskInit(function()
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
  local wsc = websocket.create(nil, "ws://ws.example.com:8765/echo")
  log.info("obj", type(wsc), tostring(wsc):match("^WEBSOCKETCTRL%*") ~= nil, wsc:ready())
  wsc:headers({["X-Token"] = "abc"})
  wsc:autoreconn(true, 2000)
  wsc:on(function(c, ev, data, fin, op)
    log.info("ev", ev, data, fin, op)
    if ev == "conack" then sys.publish("WS_UP") end
  end)
  log.info("connect", wsc:connect())
  sys.waitUntil("WS_UP", 5000)
  log.info("send", wsc:send("hello"), wsc:send("\\1\\2", 1, 1))
  wsc:send("frag-", 0)
  wsc:send("ment", 1)
  sys.wait(1000)
  log.info("phase2")
  sys.waitUntil("WS_UP", 20000)
  log.info("again", wsc:ready(), wsc:send("back"))
  sys.wait(1000)
  wsc:close()
  log.info("closed", wsc:ready(), wsc:send("x"))
end)
sys.run()
""")
    dev.net.map_address("ws.example.com:8765", f"127.0.0.1:{ws_server.port}")
    dev.run_until("I/user.phase2", within="30s")
    deadline = time.monotonic() + 10  # the server thread may lag on a loaded machine
    while len(ws_server.got) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ws_server.got[:3] == ["hello", b"\x01\x02", "frag-ment"]
    deadline = time.monotonic() + 10  # and its echoes reach the device before the drop
    while sum(ln.startswith("I/user.ev recv") for ln in dev.lines()) < 3 \
            and time.monotonic() < deadline:
        dev.run_for("100ms")
        time.sleep(0.01)
    assert ws_server.headers == ["abc"]
    # The server closes the link (in a thread: its close handshake waits for the device, which
    # runs only inside run_until); the device answers, sees the link go and reconnects.
    threading.Thread(target=ws_server.conns[0].close, daemon=True).start()
    time.sleep(0.2)
    dev.run_until("I/user.closed", within="60s")
    lines = dev.lines()
    assert "I/user.obj userdata true false" in lines
    assert "I/user.connect true" in lines
    assert "I/user.send true true" in lines
    assert "I/user.ev recv echo:hello 1 1" in lines
    assert "I/user.ev recv bin:\x01\x02 1 2" in lines
    assert "I/user.ev recv echo:frag-ment 1 1" in lines
    assert "I/user.ev sent nil nil nil" in lines
    assert "I/user.ev disconnect nil nil nil" in lines
    assert lines.count("I/user.ev conack nil nil nil") == 2
    assert "I/user.again true true" in lines and "I/user.closed false false" in lines, \
        "\n".join(ln for ln in lines if ln.startswith("I/user"))
    assert ws_server.got[-1] == "back"


def test_websocket_server_down_disconnects(boot: Callable[..., Device]) -> None:
    dev = boot("""
sys.taskInit(function()
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
  local wsc = websocket.create(nil, "ws://127.0.0.1:1/x")
  wsc:on(function(c, ev) log.info("ev", ev) end)
  wsc:connect()
  sys.wait(3000)
  log.info("ready", wsc:ready())
end)
sys.run()
""")
    dev.run_until("I/user.ready", within="30s")
    assert "I/user.ev disconnect" in dev.lines() and "I/user.ready false" in dev.lines()
