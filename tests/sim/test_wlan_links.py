"""WiFi and wired links: event order and timing in virtual time, faults, constants, CLI flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from luatos_sim import Device
from luatos_sim.network_args import add_network_arguments, apply_network_arguments
from luatos_sim.platform.network import parse_rate

JOIN = """
sys.subscribe("WLAN_STA_INC", function(ev, a, b)
  if b ~= nil then log.info("sta", ev, a, #b) elseif a ~= nil then log.info("sta", ev, a)
  else log.info("sta", ev) end
end)
sys.subscribe("IP_READY", function(ip, a) log.info("ipready", ip, a) end)
sys.subscribe("IP_LOSE", function(a) log.info("iplose", a) end)
"""


def stamped(dev: Device, prefix: str) -> list[tuple[int, str]]:
    return [(r.device_ms or 0, r.line) for r in dev.log if r.line.startswith(prefix)]


def test_connect_publishes_connected_then_ip_at_reference_offsets(boot: Callable[..., Device]) -> None:
    dev = boot(JOIN + """
sys.taskInit(function()
  log.info("init", wlan.init())
  sys.wait(100)
  log.info("t0", mcu and mcu.ticks and mcu.ticks() or 0)
  log.info("connect", wlan.connect("home", "secret"))
  log.info("ready?", wlan.ready())
  sys.waitUntil("IP_READY")
  log.info("ready!", wlan.ready(), wlan.getIP())
end)
sys.run()
""")
    dev.run_until(r"ready! true", within="10s")
    t0 = [ms for ms, line in stamped(dev, "I/user.connect true")][0]
    sta = stamped(dev, "I/user.sta CONNECTED home 6")
    ip = stamped(dev, "I/user.ipready 192.168.1.100 2")
    assert sta and ip
    assert sta[0][0] - t0 == 1000
    assert ip[0][0] - t0 == 1100
    assert "I/user.ready? false" in dev.lines()
    assert "I/user.ready! true 192.168.1.100" in dev.lines()


def test_getmac_and_empty_ssid(boot: Callable[..., Device]) -> None:
    dev = boot("""
log.info("mac", wlan.getMac(), wlan.getMac(1), #wlan.getMac(0, false))
log.info("empty", wlan.connect(""))
sys.run()
""")
    dev.run_for("1s")
    assert "I/user.mac C8C2C68CD602 C8C2C68CD603 6" in dev.lines()
    assert "I/user.empty" in dev.lines()
    assert any(line.endswith("wlan:ssid is emtry!!!") for line in dev.lines())


def test_declared_access_points_refuse_wrong_password_and_missing_ssid(
        boot: Callable[..., Device]) -> None:
    dev = boot(JOIN + """
sys.taskInit(function()
  wlan.init()
  wlan.connect("office", "wrong")
  sys.wait(5000)
  wlan.connect("nowhere", "x")
  sys.wait(5000)
  wlan.connect("office", "right")
  sys.wait(5000)
  log.info("done", wlan.ready())
end)
sys.run()
""")
    dev.net.access_point("office", password="right")
    dev.net.access_point("nowhere", exists=False)
    dev.run_until("I/user.done", within="30s")
    lines = dev.lines()
    assert "I/user.sta DISCONNECTED 202" in lines
    assert "I/user.sta DISCONNECTED 201" in lines
    assert "I/user.sta CONNECTED office 6" in lines
    assert lines.count("I/user.ipready 192.168.1.100 2") == 1
    assert "I/user.done true" in lines


def test_disconnect_and_link_loss(boot: Callable[..., Device]) -> None:
    dev = boot(JOIN + """
sys.taskInit(function()
  wlan.init()
  wlan.connect("home", "pw")
  sys.waitUntil("IP_READY")
  sys.waitUntil("IP_LOSE")
  log.info("lost", wlan.ready(), socket.adapter(2))
  sys.waitUntil("IP_READY")
  log.info("back")
  wlan.disconnect()
  sys.wait(10)
  log.info("after", wlan.ready())
end)
sys.run()
""")
    dev.net.link_down("wifi", at="5s")
    dev.net.link_up("wifi", at="8s")
    dev.run_until("I/user.after", within="20s")
    lines = dev.lines()
    assert "I/user.lost false false 2" in lines
    assert "I/user.sta DISCONNECTED 200" in lines
    assert lines.count("I/user.iplose 2") == 2
    assert lines.count("I/user.ipready 192.168.1.100 2") == 2
    assert "I/user.after false" in lines
    back = stamped(dev, "I/user.back")[0][0]
    assert back >= 8000 + 1100


def test_socket_constants_and_adapter_queries(boot: Callable[..., Device]) -> None:
    dev = boot("""
log.info("ids", socket.LWIP_GP, socket.LWIP_STA, socket.LWIP_AP, socket.LWIP_ETH,
  socket.LWIP_SPI, socket.LWIP_USER0, socket.LWIP_USER7, socket.LWIP_GP_GW, socket.ETH0)
log.info("ev", socket.LINK, socket.ON_LINE, socket.TX_OK, socket.CLOSED, socket.EVENT)
log.info("dft", socket.dft())
log.info("adapter", socket.adapter())
log.info("localIP", socket.localIP())
log.info("netdrv.on", netdrv.on)
sys.taskInit(function()
  wlan.init(); wlan.connect("x", "y")
  sys.waitUntil("IP_READY")
  log.info("adapter2", socket.adapter())
  log.info("localIP2", socket.localIP(socket.LWIP_STA))
  log.info("setdns", socket.setDNS(socket.LWIP_STA, 1, "114.114.114.114"))
  log.info("dft2", socket.dft(socket.LWIP_ETH))
end)
sys.run()
""")
    dev.run_until("I/user.dft2", within="10s")
    lines = dev.lines()
    assert "I/user.ids 1 2 3 4 5 7 14 15 16" in lines
    assert "I/user.ev 33554448 33554449 33554450 33554451 33554452" in lines
    assert "I/user.dft 2 2" in lines
    assert "I/user.adapter false -1" in lines
    assert "I/user.localIP" in lines
    assert "I/user.netdrv.on nil" in lines
    assert "I/user.adapter2 true 2" in lines
    assert "I/user.localIP2 192.168.1.100 255.255.255.0 192.168.1.1 nil" in lines
    assert "I/user.setdns true" in lines
    assert "I/user.dft2 4 2" in lines


def test_netdrv_ch390_dhcp_and_static(boot: Callable[..., Device]) -> None:
    dev = boot("""
sys.subscribe("IP_READY", function(ip, a) log.info("ipready", ip, a) end)
log.info("setup", netdrv.setup(socket.LWIP_ETH, netdrv.CH390, {spi=0, cs=8}))
log.info("setup spi", netdrv.setup(socket.LWIP_SPI, netdrv.CH390, {spi=1, cs=9}))
netdrv.dhcp(socket.LWIP_SPI, false)
netdrv.ipv4(socket.LWIP_SPI, "10.0.0.5", "255.0.0.0", "10.0.0.1")
sys.taskInit(function()
  sys.wait(3000)
  log.info("state", netdrv.link(socket.LWIP_ETH), netdrv.ready(socket.LWIP_ETH),
    netdrv.ipv4(socket.LWIP_ETH))
end)
sys.run()
""")
    dev.run_until("I/user.state", within="10s")
    lines = dev.lines()
    assert "I/user.ipready 192.168.2.100 4" in lines
    assert "I/user.ipready 10.0.0.5 5" in lines
    assert "I/user.state true true 192.168.2.100 255.255.255.0 192.168.2.1" in lines
    eth = stamped(dev, "I/user.ipready 192.168.2.100 4")[0][0]
    spi = stamped(dev, "I/user.ipready 10.0.0.5 5")[0][0]
    assert spi < eth  # a static address is up with the link, DHCP takes longer


def test_cli_flags_configure_the_network(boot: Callable[..., Device]) -> None:
    parser = argparse.ArgumentParser()
    add_network_arguments(parser)
    args = parser.parse_args([
        "--map", "112.125.89.8:45433=127.0.0.1:9000", "--map", "ota.example.com=127.0.0.1",
        "--latency", "50ms", "--bandwidth", "20kB/s", "--cut-after", "100@ota.example.com",
        "--dns-fail", "bad.example.com", "--unreachable", "10.9.9.9",
        "--unreachable", "10.9.9.8:timeout", "--ap", "office:pw", "--no-ap", "ghost",
        "--link-down", "10s", "--link-up", "eth@20s", "--fota-error-body", "buffered",
        "--reply-window", "250ms",
    ])
    dev = boot("sys.run()")
    apply_network_arguments(dev, args)
    net = dev.net
    assert net.resolve("112.125.89.8", 45433) == ("127.0.0.1", 9000)
    assert net.resolve("ota.example.com", 8000) == ("127.0.0.1", 8000)
    with pytest.raises(Exception, match="not mapped to a local address"):
        net.resolve("other.example.com", 80)  # hermetic by default
    net.allow_real_network = True
    assert net.resolve("other.example.com", 80) == ("other.example.com", 80)
    assert net.latency_ms == 50 and net.bandwidth_bps == 20_000
    assert net.cut_rules == [(100, "ota.example.com")]
    assert net.unreachable_hosts == {"10.9.9.9": "refused", "10.9.9.8": "timeout"}
    assert net.access_points["office"].password == "pw"
    assert not net.access_points["ghost"].exists
    assert net.fota_error_body == "buffered" and net.reply_window_ms == 250
    for bad in ("bad.example.com", "10.9.9.9", "10.9.9.8"):
        with pytest.raises(Exception, match="dns_fail|unreachable"):
            net.resolve(bad, 80)
    dev.run_for("25s")
    kinds = [(e.detail["adapter"], e.detail["up"]) for e in dev.trace if e.kind == "link"]
    assert kinds == [(2, False), (4, True)]


def test_bad_flag_values_are_named() -> None:
    with pytest.raises(ValueError, match="bandwidth 'fast'"):
        parse_rate("fast")
    parser = argparse.ArgumentParser()
    add_network_arguments(parser)
    with pytest.raises(ValueError, match="--map 'nonsense'"):
        apply_network_arguments(Device(files={"main.lua": b"sys.run()"}),
                                parser.parse_args(["--map", "nonsense"]))


def test_cli_run_with_map_and_link_down(tmp_path: Path) -> None:
    import io
    import socket
    import threading

    from luatos_sim.cli import main

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def answer() -> None:
        try:
            c, _ = srv.accept()
            with c:
                c.recv(1000)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            pass
    threading.Thread(target=answer, daemon=True).start()
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "main.lua").write_text("""
sys.subscribe("IP_LOSE", function(a) log.info("iplose", a) end)
sys.taskInit(function()
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
  log.info("http", http.request("GET", "http://ota.example.com:8000/x").wait())
end)
sys.run()
""", encoding="utf-8")
    out = io.StringIO()
    try:
        code = main(["run", str(proj), "--for", "30s", "--map",
                     f"ota.example.com:8000=127.0.0.1:{port}", "--link-down", "20s"], out=out)
    finally:
        srv.close()
    assert code == 0
    text = out.getvalue()
    assert "I/user.http 200" in text
    assert "I/user.iplose 2" in text


def test_scan_reports_declared_access_points(boot: Callable[..., Device]) -> None:
    dev = boot("""
sys.taskInit(function()
  wlan.init()
  log.info("scan", wlan.scan())
  sys.waitUntil("WLAN_SCAN_DONE")
  local names = {}
  for _, ap in ipairs(wlan.scanResult()) do names[#names + 1] = ap.ssid .. "/" .. ap.rssi end
  table.sort(names)
  log.info("found", table.concat(names, ","))
end)
sys.run()
""")
    dev.net.access_point("office", password="x", rssi=-40)
    dev.net.access_point("lab")
    dev.net.access_point("ghost", exists=False)
    dev.run_until("I/user.found", within="10s")
    assert "I/user.found lab/-50,office/-40" in dev.lines()


def test_cat1_bearer_comes_up_and_follows_its_link(boot: Callable[..., Device]) -> None:
    dev = boot("""
sys.subscribe("IP_READY", function(ip, a) log.info("ipready", ip, a, socket.dft()) end)
sys.subscribe("IP_LOSE", function(a) log.info("iplose", a) end)
sys.run()
""", model="Air780E")
    dev.net.link_down("4g", at="10s")
    dev.net.link_up("4g", at="20s")
    dev.run_for("30s")
    got = stamped(dev, "I/user.ip")
    assert [line for _, line in got] == ["I/user.ipready 10.64.12.34 1 1 1", "I/user.iplose 1",
                                         "I/user.ipready 10.64.12.34 1 1 1"]
    assert got[0][0] == 800 + 3000 and got[2][0] == 20_000 + 3000
