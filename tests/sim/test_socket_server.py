"""Server sockets: socket.listen on a device port, reached by the test through the loopback
port dev.net.server_address(port) gives; single-client (libnet) and accept-with-callback."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

from luatos_sim import Device

UP = 'wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")\n'


def connect_when_listening(dev: Device, port: int) -> socket.socket:
    host, hport = dev.net.server_address(port)
    s = socket.create_connection((host, hport), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def test_single_client_echo_with_libnet(boot: Callable[..., Device]) -> None:
    dev = boot("""
local libnet = require "libnet"
sys.taskInitEx(function()
  """ + UP + """
  local c = socket.create(nil, "srv")
  socket.config(c, 14000)
  log.info("listening", socket.state(c))
  log.info("client", libnet.listen("srv", 60000, c), socket.state(c))
  local zb = zbuff.create(128)
  local ok, has = libnet.wait("srv", 10000, c)
  socket.rx(c, zb)
  log.info("got", zb:query())
  libnet.tx("srv", 5000, c, "echo:" .. zb:query())
  sys.wait(1000)
  log.info("done")
end, "srv", function() end)
sys.run()
""")
    with pytest.raises(KeyError, match="no port 14000"):
        dev.net.server_address(14000)
    dev.run_until("I/user.listening", within="10s")
    dev.run_for("10ms")
    s = connect_when_listening(dev, 14000)
    dev.run_until("I/user.client", within="10s")
    s.sendall(b"hello")
    time.sleep(0.1)
    dev.run_until("I/user.got", within="10s")
    dev.run_until("I/user.done", within="10s")
    assert s.recv(100) == b"echo:hello"
    s.close()
    lines = dev.lines()
    assert "I/user.client true 5 在线" in lines
    assert "I/user.got hello" in lines


def test_accept_with_callback_serves_two_clients(boot: Callable[..., Device]) -> None:
    dev = boot("""
sys.taskInit(function()
  """ + UP + """
  local n = 0
  local srv
  srv = socket.create(nil, function(ctrl, ev, p)
    if ev == socket.ON_LINE then
      n = n + 1
      local id = n
      local conn
      conn = socket.accept(srv, function(cc, e2, p2)
        if e2 == socket.EVENT and p2 == 0 then
          local ok, data = socket.read(cc)
          socket.tx(cc, "client" .. id .. ":" .. data)
        end
      end)
      log.info("accepted", id, type(conn), socket.state(srv))
    end
  end)
  socket.config(srv, 8080)
  log.info("listen", socket.listen(srv))
  sys.wait(60000)
end)
sys.run()
""")
    dev.run_until("I/user.listen", within="10s")
    a = connect_when_listening(dev, 8080)
    dev.run_until("I/user.accepted 1", within="10s")
    b = connect_when_listening(dev, 8080)
    dev.run_until("I/user.accepted 2", within="10s")
    a.sendall(b"A")
    b.sendall(b"B")
    time.sleep(0.1)
    dev.run_for("1s")
    assert a.recv(100) == b"client1:A"
    assert b.recv(100) == b"client2:B"
    a.close()
    b.close()
    assert "I/user.listen true false" in dev.lines()
    assert "I/user.accepted 1 userdata 6 在监听" in dev.lines()  # the server keeps listening
