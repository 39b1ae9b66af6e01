"""socket and libnet over real loopback TCP/UDP servers, in the three event delivery modes."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from luatos_sim import Device


class TcpServer:
    """Accepts connections on 127.0.0.1 and hands them to the test through a queue."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns: queue.Queue[socket.socket] = queue.Queue()
        self._all: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.settimeout(5)
            self._all.append(c)
            self.conns.put(c)

    def next(self) -> socket.socket:
        return self.conns.get(timeout=5)

    def close(self) -> None:
        self.sock.close()
        for c in self._all:
            c.close()


@pytest.fixture
def server() -> Iterator[TcpServer]:
    srv = TcpServer()
    yield srv
    srv.close()


def echo_once(srv: TcpServer, prefix: bytes = b"echo:") -> threading.Thread:
    def run() -> None:
        try:
            c = srv.next()
            data = c.recv(1000)
            c.sendall(prefix + data)
        except (OSError, queue.Empty):
            pass  # the test ended first
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


WIFI = """
local function up()
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
end
"""


def test_callback_mode_connect_tx_rx(boot: Callable[..., Device], server: TcpServer) -> None:
    echo_once(server)
    dev = boot(WIFI + """
sys.taskInit(function()
  up()
  local c = socket.create(nil, function(ctrl, ev, p) sys.publish("SEV", ctrl, ev, p) end)
  log.info("state0", socket.state(c))
  log.info("connect", socket.connect(c, "srv.example.com", 45433))
  local _, ctrl, ev, p = sys.waitUntil("SEV", 5000)
  log.info("online", ctrl == c, ev == socket.ON_LINE, p, socket.state(c))
  log.info("tx", socket.tx(c, "hello"))
  _, ctrl, ev, p = sys.waitUntil("SEV", 5000)
  log.info("txok", ev == socket.TX_OK, p)
  _, ctrl, ev, p = sys.waitUntil("SEV", 5000)
  log.info("event", ev == socket.EVENT, p, socket.wait(c))
  local zb = zbuff.create(64)
  local ok, n = socket.rx(c, zb)
  log.info("rx", ok, n, zb:query())
  log.info("discon", socket.discon(c))
  _, ctrl, ev, p = sys.waitUntil("SEV", 5000)
  log.info("closed", ev == socket.CLOSED, p)
  socket.release(c)
end)
sys.run()
""")
    dev.net.map_address("srv.example.com:45433", f"127.0.0.1:{server.port}")
    dev.run_until("I/user.closed", within="30s")
    lines = dev.lines()
    assert "I/user.state0 1 离线" in lines
    assert "I/user.connect true false" in lines
    assert "I/user.online true true 0 5 在线" in lines
    assert "I/user.tx true false false" in lines
    assert "I/user.txok true 0" in lines
    assert "I/user.event true 0 true true" in lines
    assert "I/user.rx true 10 echo:hello" in lines
    assert "I/user.discon true false" in lines
    assert "I/user.closed true 0" in lines


LIBNET_CLIENT = """
local libnet = require "libnet"
local TASK = "netc"
local function task()
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
  local c = socket.create(nil, TASK)
  log.info("connect", libnet.connect(TASK, 5000, c, HOST, PORT))
  log.info("tx", libnet.tx(TASK, 5000, c, "login"))
  local zb = zbuff.create(256)
  for i = 1, 200 do
    local ok, has = libnet.wait(TASK, 15000, c)
    if not ok then log.info("wait failed", ok, has, socket.state(c)); break end
    if has then
      socket.rx(c, zb)
      log.info("got", zb:query()); zb:del()
    else
      log.info("idle", i)
    end
  end
  libnet.close(TASK, 5000, c)
  log.info("closed")
end
sys.taskInitEx(task, TASK, function(msg) log.info("other", msg[1], msg[2]) end)
sys.run()
"""


def libnet_main(host: str, port: int) -> str:
    return f'HOST, PORT = "{host}", {port}\n' + LIBNET_CLIENT


def test_libnet_sees_data_pushed_while_the_device_idles(boot: Callable[..., Device],
                                                        server: TcpServer) -> None:
    dev = boot(libnet_main("push.example.com", 9000))
    dev.net.map_address("push.example.com:9000", f"127.0.0.1:{server.port}")
    dev.run_until("I/user.tx", within="10s")
    conn = server.next()
    assert conn.recv(100) == b"login"
    dev.run_for("1m")  # libnet.wait times out (15 s each) in virtual time only
    idles = [line for line in dev.lines() if line.startswith("I/user.idle")]
    assert len(idles) >= 3
    conn.sendall(b"upgrade-now")
    dev.run_until("I/user.got upgrade-now", within="1m")
    conn.sendall(b"second")
    dev.run_until("I/user.got second", within="1m")
    conn.close()
    dev.run_until("I/user.closed", within="1m")
    lines = dev.lines()
    assert "I/user.connect true" in lines
    assert "I/user.tx true false" in lines
    assert "I/user.wait failed false false 1 离线" in lines


def test_refused_dns_failure_and_timeout(boot: Callable[..., Device],
                                         server: TcpServer) -> None:
    dev = boot("""
local libnet = require "libnet"
local function try(name, host, port)
  sys.taskInitEx(function()
    sys.waitUntil("IP_READY")
    local c = socket.create(nil, name)
    log.info(name, libnet.connect(name, 60000, c, host, port), socket.state(c))
  end, name)
end
try("refused", "127.0.0.1", REFUSED_PORT)
try("nodns", "nx.example.com", 80)
try("blackhole", "10.1.2.3", 80)
wlan.init(); wlan.connect("ap", "pw")
sys.run()
""".replace("REFUSED_PORT", str(_closed_port())))
    dev.net.dns_fail("nx.example.com")
    dev.net.unreachable("10.1.2.3", mode="timeout")
    dev.run_until("I/user.blackhole", within="1m")
    lines = dev.lines()
    assert "I/user.refused false 1 离线" in lines
    assert "I/user.nodns false 1 离线" in lines
    assert "I/user.blackhole false 1 离线" in lines
    t_ip = next(r.device_ms for r in dev.log if r.line == "I/user.refused false 1 离线")
    t_bh = next(r.device_ms for r in dev.log if r.line.startswith("I/user.blackhole"))
    assert (t_bh or 0) - (t_ip or 0) >= 15000


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_cut_after_delivers_n_bytes_then_a_remote_close(boot: Callable[..., Device],
                                                        server: TcpServer) -> None:
    dev = boot(libnet_main("127.0.0.1", server.port))
    dev.net.cut_after(7)
    dev.run_until("I/user.tx", within="10s")
    conn = server.next()
    conn.recv(100)
    conn.sendall(b"0123456789")
    dev.run_until("I/user.closed", within="1m")
    lines = dev.lines()
    assert "I/user.got 0123456" in lines
    assert "I/user.wait failed false false 1 离线" in lines


def test_default_delivery_publishes_nwctrl(boot: Callable[..., Device],
                                           server: TcpServer) -> None:
    dev = boot(WIFI + f"""
sys.subscribe("NWCTRL", function(a, id, ev, p) log.info("nwctrl", a, ev == socket.ON_LINE, p) end)
sys.taskInit(function()
  up()
  local c = socket.create()
  socket.connect(c, "127.0.0.1", {server.port})
end)
sys.run()
""")
    dev.run_until("I/user.nwctrl", within="10s")
    assert "I/user.nwctrl 2 true 0" in dev.lines()


def test_reboot_drops_every_connection(boot: Callable[..., Device], server: TcpServer) -> None:
    dev = boot(libnet_main("127.0.0.1", server.port).replace(
        'log.info("idle", i)', 'log.info("idle", i); rtos.reboot()'))
    dev.run_until("I/user.tx", within="10s")
    conn = server.next()
    conn.recv(100)
    dev.run_until("I/user.idle 1", within="1m")
    dev.run_until("I/user.tx", within="1m")  # the next boot connects again
    assert conn.recv(100) == b""  # the first connection was closed by the reboot
    second = server.next()
    assert second.recv(100) == b"login"


def test_link_loss_fails_an_open_socket(boot: Callable[..., Device], server: TcpServer) -> None:
    dev = boot(libnet_main("127.0.0.1", server.port))
    dev.run_until("I/user.tx", within="10s")
    server.next().recv(100)
    dev.net.link_down("wifi", at="3s")
    dev.run_until("I/user.closed", within="1m")
    assert "I/user.wait failed false false 0 硬件离线" in dev.lines()


def test_latency_delays_events_in_virtual_time(boot: Callable[..., Device],
                                               server: TcpServer) -> None:
    echo_once(server)
    dev = boot(WIFI + f"""
sys.taskInit(function()
  up()
  local c = socket.create(nil, function(_, ev, p) sys.publish("SEV", ev, p) end)
  log.info("t0")
  socket.connect(c, "127.0.0.1", {server.port})
  sys.waitUntil("SEV")
  log.info("t1")
end)
sys.run()
""")
    dev.net.latency("150ms")
    dev.run_until("I/user.t1", within="10s")
    t = {r.line: r.device_ms or 0 for r in dev.log if r.line in ("I/user.t0", "I/user.t1")}
    assert t["I/user.t1"] - t["I/user.t0"] == 300


def test_udp_send_and_receive(boot: Callable[..., Device]) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    port = udp.getsockname()[1]

    def echo() -> None:
        try:
            data, addr = udp.recvfrom(100)
            udp.sendto(b"pong:" + data, addr)
        except OSError:
            pass
    threading.Thread(target=echo, daemon=True).start()
    dev = boot(WIFI + """
sys.taskInit(function()
  up()
  local c = socket.create(nil, function(_, ev, p) sys.publish("SEV", ev, p) end)
  socket.config(c, nil, true)
  socket.connect(c, "udp.example.com", 5683)
  sys.waitUntil("SEV")
  log.info("tx", socket.tx(c, "ping"))
  local zb = zbuff.create(64)
  for i = 1, 5 do
    local _, ev, p = sys.waitUntil("SEV", 2000)
    if ev == socket.EVENT then break end
  end
  local ok, n, ip, rport = socket.rx(c, zb)  -- ip is raw: 0x00 + 4 address bytes
  log.info("rx", ok, n, (ip:toHex()), zb:query())
end)
sys.run()
""")
    dev.net.map_address("udp.example.com:5683", f"127.0.0.1:{port}")
    try:
        dev.run_until("I/user.rx", within="20s")
    finally:
        udp.close()
    assert "I/user.rx true 9 007F000001 pong:ping" in dev.lines()


def test_task_name_mode_queues_event_and_param(boot: Callable[..., Device],
                                               server: TcpServer) -> None:
    dev = boot(f"""
sys.taskInitEx(function()
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
  local c = socket.create(nil, "q")
  socket.connect(c, "127.0.0.1", {server.port})
  local m = sys.waitMsg("q")
  log.info("item", m[1] == socket.ON_LINE, m[2], m[3], m[4])
end, "q")
sys.run()
""")
    dev.run_until("I/user.item", within="10s")
    assert "I/user.item true 0 nil nil" in dev.lines()
