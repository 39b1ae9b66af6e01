"""exnetif and libnet: the built-in stand-ins, and replacements given with --lib-dir."""

from __future__ import annotations

import socket
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

from luatos_sim import Device

WATCH = """
sys.subscribe("EXLIB_NETDRV_NETWORK_STATUS", function(t, id) log.info("status", t, id) end)
local function cb(t, id) log.info("notify", t, id) end
"""


def test_single_wifi_logs_and_never_notifies(boot: Callable[..., Device]) -> None:
    dev = boot("""
exnetif = require "exnetif"
""" + WATCH + """
sys.taskInit(function()
  exnetif.notify_status(cb)
  log.info("set", exnetif.set_priority_order({{WIFI={ssid="home", password="pw"}}}))
  local _, ip, a = sys.waitUntil("IP_READY", 10000)
  log.info("ready", ip, a, socket.dft(), socket.adapter(socket.dft()))
  sys.wait(60000)
  log.info("end")
end)
sys.run()
""")
    dev.run_until("I/user.end", within="2m")
    lines = dev.lines()
    i = lines.index("I/user.WiFi名称: home")
    assert lines[i + 1] == "I/user.ping_ip  : nil"
    assert "I/user.WiFi STA初始化完成" in lines
    assert "I/user.set true" in lines
    assert "I/user.ready 192.168.1.100 2 2 true 2" in lines
    assert not [x for x in lines if x.startswith(("I/user.status", "I/user.notify"))]



def test_exnetif_loads_its_companion_libraries(boot: Callable[..., Device]) -> None:
    """Mutation audit: exnetif no longer loading dnsproxy/dhcpsrv went unnoticed (an
    ``isinstance(x, object)`` assert cannot fail). Upstream exnetif sets them as globals."""
    dev = boot("""
exnetif = require "exnetif"
log.info("libs", type(dnsproxy), type(dhcpsrv), type(httpdns),
         package.loaded.dnsproxy == dnsproxy, package.loaded.dhcpsrv == dhcpsrv,
         type(dnsproxy) == "table" and type(dnsproxy.setup), type(dhcpsrv) == "table" and type(dhcpsrv.create))
sys.run()
""")
    dev.run_until(r"I/user\.libs", within="5s")
    assert "I/user.libs table table table true true function function" in dev.lines()

def test_empty_config_and_failed_wifi(boot: Callable[..., Device]) -> None:
    dev = boot("""
exnetif = require "exnetif"
sys.taskInit(function()
  log.info("empty", exnetif.set_priority_order({}))
  log.info("bad", exnetif.set_priority_order({{WIFI={ssid=""}}}))
end)
sys.run()
""")
    dev.run_for("2s")
    lines = dev.lines()
    assert "E/user.网络配置为空" in lines
    assert "I/user.empty false" in lines
    assert "E/user.WiFi连接失败" in lines and "E/user.wifi连接失败" in lines
    assert "I/user.bad false" in lines


def test_multi_network_picks_first_reachable_and_fails_over(boot: Callable[..., Device]) -> None:
    dev = boot("""
exnetif = require "exnetif"
""" + WATCH + """
sys.taskInit(function()
  exnetif.notify_status(cb)
  exnetif.set_priority_order({
    {WIFI={ssid="home", password="pw"}},
    {ETHUSER1={tp=netdrv.CH390, opts={spi=0, cs=15}, pwrpin=13}},
  })
end)
sys.run()
""")
    dev.run_until(r"I/user\.status WiFi 2", within="1m")
    assert "I/user.notify WiFi 2" in dev.lines()
    dev.net.link_down("wifi")
    dev.run_until(r"I/user\.status 8101SPIETH 8", within="1m")
    assert dev.boot is not None
    dev.net.link_up("wifi")
    dev.run_until(r"I/user\.status WiFi 2", within="1m")  # raises if it never comes back
    dft = [e.detail["adapter"] for e in dev.trace if e.kind == "socket_dft"]
    assert dft[-3:] == [2, 8, 2]


UPSTREAM_STYLE_LIBNET = """
-- An independent libnet in the upstream style (sys.waitMsg on the task queue).
LIBNET_FROM = "lib-dir"
local M = {}
local function waitev(task, ev, ms)
    local r = sys.waitMsg(task, ev, ms)
    return type(r) == "table" and r[2] == 0
end
function M.waitLink(task, ms, ...)
    local ok, up = socket.linkup(...)
    if not ok then return false end
    return up or waitev(task, socket.LINK, ms)
end
function M.connect(task, ms, ...)
    local ok, online = socket.connect(...)
    if not ok then return false end
    return online or waitev(task, socket.ON_LINE, ms)
end
function M.tx(task, ms, ...)
    local ok, full, done = socket.tx(...)
    if not ok then return false, full end
    if full then return true, true end
    if done then return true, false end
    if waitev(task, socket.TX_OK, ms) then return true, false end
    return false, full
end
function M.wait(task, ms, c)
    local ok, has = socket.wait(c)
    if not ok then return false, false end
    if has then return true, true end
    local r = sys.waitMsg(task, socket.EVENT, ms)
    if r == nil then return true, false end
    return r[2] == 0, r[2] == 0
end
function M.close(task, ms, c)
    local ok, done = socket.discon(c)
    if ok and not done then sys.waitMsg(task, socket.CLOSED, ms) end
    socket.close(c)
end
return M
"""

UPSTREAM_STYLE_EXNETIF = """
-- An independent exnetif in the upstream style: ping probes through icmp/PING_RESULT.
dnsproxy = require "dnsproxy"
dhcpsrv = require "dhcpsrv"
httpdns = require "httpdns"
local USER1, GP_GW = socket.LWIP_USER1, socket.LWIP_GP_GW
assert(USER1 == 8 and GP_GW == 15)
local M = {}
local cbf
function M.notify_status(f) cbf = f end
function M.set_priority_order(list)
    log.info("exnetif(lib-dir)", #list)
    local ids = {}
    for _, e in ipairs(list) do
        if e.WIFI then
            wlan.init()
            wlan.setMode(wlan.STATION)
            assert(wlan.connect(e.WIFI.ssid, e.WIFI.password, 1))
            ids[#ids + 1] = {socket.LWIP_STA, "WiFi", e.WIFI.ping_ip}
        elseif e.ETHERNET then
            assert(netdrv.setup(socket.LWIP_ETH, e.ETHERNET.tp, e.ETHERNET.opts))
            netdrv.dhcp(socket.LWIP_ETH, true)
            ids[#ids + 1] = {socket.LWIP_ETH, "Ethernet", e.ETHERNET.ping_ip}
        end
    end
    local current
    sys.subscribe("PING_RESULT", function(id, t, dst)
        for _, x in ipairs(ids) do
            if x[1] == id and current == nil then
                current = id
                socket.dft(id)
                socket.close_all(id == 2 and 4 or 2)
                if cbf then cbf(x[2], id) end
                sys.publish("EXLIB_NETDRV_NETWORK_STATUS", x[2], id)
            end
        end
    end)
    sys.taskInit(function()
        while true do
            for _, x in ipairs(ids) do
                if socket.adapter(x[1]) and (x[1] ~= 4 or netdrv.link(4)) then
                    icmp.setup(x[1])
                    icmp.ping(x[1], x[3])
                end
            end
            sys.wait(10000)
        end
    end)
    return true
end
return M
"""


def test_lib_dir_replacements_run_on_the_same_firmware_apis(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libnet.lua").write_text(UPSTREAM_STYLE_LIBNET, encoding="utf-8")
    (lib / "exnetif.lua").write_text(UPSTREAM_STYLE_EXNETIF, encoding="utf-8")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def echo() -> None:
        try:
            c, _ = srv.accept()
            with c:
                c.sendall(b"ack:" + c.recv(100))
        except OSError:
            pass
    threading.Thread(target=echo, daemon=True).start()
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "main.lua").write_text(textwrap.dedent("""
        local libnet = require "libnet"
        local exnetif = require "exnetif"
        sys.subscribe("EXLIB_NETDRV_NETWORK_STATUS", function(t, id) log.info("status", t, id) end)
        local TASK = "client"
        sys.taskInitEx(function()
          exnetif.set_priority_order({
            {WIFI={ssid="home", password="pw", ping_ip="8.8.8.8"}},
            {ETHERNET={tp=netdrv.CH390, opts={spi=0, cs=8}, ping_ip="8.8.8.8"}},
          })
          sys.waitUntil("EXLIB_NETDRV_NETWORK_STATUS")
          local c = socket.create(nil, TASK)
          log.info("libnet", LIBNET_FROM, libnet.connect(TASK, 5000, c, "srv.example.com", 7000))
          log.info("tx", libnet.tx(TASK, 5000, c, "hi"))
          local zb = zbuff.create(64)
          log.info("wait", libnet.wait(TASK, 5000, c))
          socket.rx(c, zb)
          log.info("rx", zb:query())
          libnet.close(TASK, 5000, c)
          log.info("done")
        end, TASK)
        sys.run()
    """), encoding="utf-8")
    dev = Device(proj, lib_dirs=[lib])
    try:
        dev.net.map_address("srv.example.com:7000", f"127.0.0.1:{port}")
        dev.run_until("I/user.done", within="2m")
        lines = dev.lines()
    finally:
        dev.close()
        srv.close()
    assert "I/user.exnetif(lib-dir) 2" in lines
    assert any(x.startswith("I/user.status WiFi 2") or x.startswith("I/user.status Ethernet 4")
               for x in lines)
    assert "I/user.libnet lib-dir true" in lines
    assert "I/user.tx true false" in lines
    assert "I/user.wait true true" in lines
    assert "I/user.rx ack:hi" in lines


def test_multi_network_ping_and_no_probe_options_and_total_loss(
        boot: Callable[..., Device]) -> None:
    dev = boot("""
exnetif = require "exnetif"
""" + WATCH + """
sys.taskInit(function()
  exnetif.notify_status(cb)
  exnetif.set_priority_order({
    {ETHUSER1={tp=netdrv.CH390, opts={spi=0, cs=15}, ping_ip="10.0.0.1"}},
    {WIFI={ssid="home", password="pw", need_ping=false}},
  })
end)
sys.run()
""")
    dev.run_until(r"I/user\.status 8101SPIETH 8", within="1m")
    dev.net.link_down("user1")
    dev.run_until(r"I/user\.status WiFi 2", within="1m")
    dev.net.link_down("wifi")
    dev.run_until(r"I/user\.status nil -1", within="1m")
    assert "I/user.notify nil -1" in dev.lines()
