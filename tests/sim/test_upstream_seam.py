"""The firmware seam as LuatOS's own script libraries use it (docs/upstream-check.md).

Running the upstream sys/libnet/exnetif/dhcpsrv/udpsrv/dnsproxy on the emulator found C-side
gaps; each test here pins one of them with a small script of our own (no upstream code):
the single-pointer zbuff with pack/unpack, raw peer addresses from socket.rx, the UDP
"server" idiom, the spi bus CH390 setups open first, netdrv.ping and wlan.APSTA.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from luatos_sim import Device

WIFI = """
local function up()
  wlan.init(); wlan.connect("ap", "pw")
  sys.waitUntil("IP_READY", 10000)
end
"""


def test_zbuff_has_one_pointer_for_cursor_and_used(boot: Callable[..., Device]) -> None:
    dev = boot("""
        local z = zbuff.create(8, "abcdef")          -- initial content: pointer after it
        log.info("create", z:used(), z:len())
        z:seek(2)
        log.info("seek", z:used(), z:query())        -- query is [0, used)
        log.info("read", z:read(3), z:used())        -- read is bounded by len, not by used
        log.info("read2", z:read(10), z:used())
        z:seek(0)
        z:write("XY")                               -- overwrite at the front
        log.info("after", z:used(), z:query(), z:toStr())
        z:del()
        log.info("empty", z:used(), tostring(z:query()), #z:toStr())
        log.info("room", z:seek(100), z:write("more"), z:readU8())
        sys.run()
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert "I/user.create 6 8" in lines
    assert "I/user.seek 2 ab" in lines
    assert "I/user.read cde 5" in lines
    assert "I/user.read2 f\0\0 8" in lines
    assert "I/user.after 2 XY XYcdef\0\0" in lines
    assert "I/user.empty 0 nil 8" in lines
    assert "I/user.room 8 0 nil" in lines


def test_zbuff_pack_and_unpack(boot: Callable[..., Device]) -> None:
    dev = boot("""
        local z = zbuff.create(32)
        log.info("pack", z:pack(">IHbA", 0x01020304, 0x0506, 0xFF, "xyz"), z:used())
        log.info("hex", (z:query():toHex()))
        z:pack("<h", -2)
        log.info("le", (z:query(10, 2):toHex()))
        z:seek(0)
        log.info("unpack", z:unpack(">IHcA3<h"))
        log.info("pos", z:used())
        z:seek(30)
        log.info("short", z:unpack(">I"))           -- does not fit: nothing read
        log.info("full", z:pack(">I", 7), z:used()) -- stops at the end of the buffer
        log.info("num", z:query(0, 2, true), z:query(10, 2, false, true), z:query(0, 4, true))
        log.info("bad", pcall(z.pack, z, "Q", 1))
        sys.run()
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert "I/user.pack 10 10" in lines
    assert "I/user.hex 01020304050" + "6FF78797A" in lines
    assert "I/user.le FEFF" in lines
    assert "I/user.unpack 12 16909060 1286 -1 xyz -2" in lines
    assert "I/user.pos 12" in lines
    assert "I/user.short 0" in lines
    assert "I/user.full 2 32" in lines
    assert "I/user.num 258 -2 16909060" in lines
    assert any(line.startswith("I/user.bad false") and "bad code" in line for line in lines)


def test_rx_writes_at_the_pointer_so_seek_0_replaces_the_old_packet(
        boot: Callable[..., Device]) -> None:
    import socket
    import threading
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)

    def answer() -> None:
        try:
            data, addr = udp.recvfrom(100)
            udp.sendto(b"first-long", addr)
            udp.sendto(b"2nd", addr)
        except OSError:
            pass
    answering = threading.Thread(target=answer, daemon=True)
    answering.start()
    dev = boot(WIFI + """
sys.taskInit(function()
  up()
  local c = socket.create(nil, function(_, ev) sys.publish("SEV", ev) end)
  socket.config(c, nil, true)
  socket.connect(c, "udp.example.com", 5683)
  sys.waitUntil("SEV")
  socket.tx(c, "hi")
  local z = zbuff.create(4)           -- too small: rx grows it
  for i = 1, 20 do
    if select(2, socket.rx(c)) > 0 then break end
    sys.wait(100)
  end
  local ok, n, ip, port = socket.rx(c, z)
  log.info("one", ok, n, #ip, ip:byte(1), z:query(), z:len())
  for i = 1, 20 do
    local _, pending = socket.rx(c)
    if pending > 0 then break end
    sys.wait(100)
  end
  z:seek(0)
  ok, n = socket.rx(c, z, 0, 2)       -- limit 2: the rest of the datagram is dropped
  log.info("two", ok, n, z:query(), z:used())
end)
sys.run()
""")
    dev.net.map_address("udp.example.com:5683", f"127.0.0.1:{udp.getsockname()[1]}")
    try:
        dev.run_until("I/user.one", within="20s")
        # The second datagram crosses real loopback in wall time: on a loaded machine the
        # device's 2 s of virtual waiting can pass before it lands, so let it land first.
        answering.join(5)
        time.sleep(0.2)
        if not any(ln.startswith("I/user.two") for ln in dev.lines()):
            dev.run_until("I/user.two", within="20s")
    finally:
        udp.close()
    lines = dev.lines()
    assert "I/user.one true 10 5 0 first-long 10" in lines
    assert "I/user.two true 2 2n 2" in lines


def test_udp_server_idiom_binds_and_broadcast_tx_succeeds(boot: Callable[..., Device]) -> None:
    dev = boot(WIFI + """
sys.taskInit(function()
  up()
  local c = socket.create(nil, function(_, ev, p) sys.publish("SEV", ev, p) end)
  socket.config(c, 6767, true)
  log.info("connect", socket.connect(c, "255.255.255.255", 0))
  local _, ev, p = sys.waitUntil("SEV", 5000)
  log.info("online", ev == socket.ON_LINE, p, (socket.state(c)))
  log.info("bcast", socket.tx(c, "offer", "255.255.255.255", 68))
end)
sys.run()
""")
    dev.run_until("I/user.bcast", within="20s")
    lines = dev.lines()
    assert "I/user.connect true false" in lines
    assert "I/user.online true 0 5" in lines
    assert "I/user.bcast true false false" in lines
    assert not any("not mapped" in line for line in lines)


def test_spi_bus_opens_for_a_ch390_setup(boot: Callable[..., Device]) -> None:
    dev = boot("""
sys.taskInit(function()
  log.info("spi", spi.setup(0, nil, 0, 0, 8, 25600000), spi.setup(9), spi.MSB, spi.master)
  log.info("send", spi.send(0, "\\1\\2\\3"), spi.send(2, "x"), spi.recv(0, 2):byte(1, 2))
  log.info("eth", netdrv.setup(socket.LWIP_USER1, netdrv.CH390, {spi = 0, cs = 15}))
  local _, ip, a = sys.waitUntil("IP_READY", 10000)
  log.info("ready", a == socket.LWIP_USER1, spi.close(0), spi.send(0, "x"))
end)
sys.run()
""")
    dev.run_until("I/user.ready", within="20s")
    lines = dev.lines()
    assert "I/user.spi 0 -1 1 1" in lines
    assert "I/user.send 3 -1 255 255" in lines
    assert "I/user.eth true" in lines
    assert "I/user.ready true 0 -1" in lines
    assert dev.spi(0).tx == b"\x01\x02\x03"


def test_netdrv_ping_answers_with_ping_result_and_wlan_has_apsta(
        boot: Callable[..., Device]) -> None:
    dev = boot(WIFI + """
sys.taskInit(function()
  log.info("before", netdrv.ping(socket.LWIP_STA, "10.0.0.1"))
  up()
  log.info("sent", netdrv.ping(socket.LWIP_STA, "10.0.0.1", 64))
  local ok, id, t, dst = sys.waitUntil("PING_RESULT", 5000)
  log.info("result", ok, id, t > 0, dst)
  log.info("apsta", wlan.APSTA == wlan.STATIONAP)
end)
sys.run()
""")
    dev.run_until("I/user.apsta", within="20s")
    lines = dev.lines()
    assert "I/user.before false" in lines
    assert "I/user.sent true" in lines
    assert "I/user.result true 2 true 10.0.0.1" in lines
    assert "I/user.apsta true" in lines
