"""httpsrv: the device's HTTP server, reached by a real HTTP client at the loopback port
dev.net.server_address(port) gives; the firmware's answers (HTTP/1.0, Connection: close, the
/luadb static files, the callback's code/headers/body, bad requests dropped)."""

from __future__ import annotations

import gzip
import http.client
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from luatos_common.logline import SIM
from luatos_sim import Device, DeviceOptions

UP = 'wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")\n'

SERVER = """
sys.taskInit(function()
  """ + UP + """
  log.info("start", httpsrv.start(80, function(fd, method, uri, headers, body)
    log.info("req", type(fd), method, uri, type(headers), next(headers), body)
    if uri == "/led/1" then
      return 200, {["X-Led"] = "on"}, "ok"
    elseif uri == "/echo" then
      return 200, {}, "got:" .. body
    elseif uri == "/odd" then
      return 299, {}, "odd"
    elseif uri == "/zero" then
      return 0, nil, 42
    elseif uri == "/nothing" then
      return
    elseif uri == "/boom" then
      error("callback failed")
    end
    return 404, {}, "Not Found" .. uri
  end))
  sys.wait(600000)
end)
sys.run()
"""


def connect(dev: Device, port: int = 80) -> http.client.HTTPConnection:
    host, hport = dev.net.server_address(port)
    return http.client.HTTPConnection(host, hport, timeout=5)


def started(dev: Device, port: int = 80) -> http.client.HTTPConnection:
    dev.run_until("I/user.start", within="10s")
    return connect(dev, port)


def exchange(dev: Device, conn: http.client.HTTPConnection, method: str, path: str,
             body: bytes | None = None) -> http.client.HTTPResponse:
    """Send, let the device run (the callback runs in virtual time), then read the answer."""
    conn.request(method, path, body=body)
    time.sleep(0.05)
    dev.run_for("200ms")
    return conn.getresponse()


def test_callback_answers_with_its_code_headers_and_body(boot: Callable[..., Device]) -> None:
    dev = boot(SERVER)
    conn = started(dev)
    assert "I/user.start true" in dev.lines()
    assert any("httpsrv:http listen at 192.168.1.100:80" in ln for ln in dev.lines())
    r = exchange(dev, conn, "GET", "/led/1")
    assert (r.status, r.reason, r.version) == (200, "OK", 10)
    assert r.getheader("X-Led") == "on"
    assert r.getheader("Connection") == "close"
    assert r.getheader("Content-Length") == "2"
    assert r.read() == b"ok"
    # the callback got an integer client id, the method, the URI, an (empty) headers table
    assert "I/user.req number GET /led/1 table nil " in dev.lines()


def test_no_file_and_no_answer_is_404_and_unknown_codes_become_200_ok(
        boot: Callable[..., Device]) -> None:
    dev = boot(SERVER)
    conn = started(dev)
    r = exchange(dev, conn, "GET", "/missing?x=1")
    assert (r.status, r.reason) == (404, "Not Found")
    assert r.read() == b"Not Found/missing?x=1"
    conn = connect(dev)
    r = exchange(dev, conn, "GET", "/nothing")
    assert (r.status, r.read()) == (404, b"")
    conn = connect(dev)
    r = exchange(dev, conn, "GET", "/odd")
    assert (r.status, r.reason, r.read()) == (200, "Ok", b"odd")
    assert any("httpsrv:unkown http code 299, set as 200 Ok" in ln for ln in dev.lines())
    conn = connect(dev)
    r = exchange(dev, conn, "GET", "/zero")  # a code under 100 is 200; a number body is text
    assert (r.status, r.reason, r.read()) == (200, "OK", b"42")


def test_post_body_reaches_the_callback(boot: Callable[..., Device]) -> None:
    dev = boot(SERVER)
    conn = started(dev)
    payload = b'{"led": 1, "name": "' + b"x" * 3000 + b'"}'
    r = exchange(dev, conn, "POST", "/echo", body=payload)
    assert (r.status, r.reason) == (200, "OK")
    assert r.read() == b"got:" + payload


def test_static_files_from_luadb_index_and_gzip(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "main.lua").write_text(SERVER, encoding="utf-8")
    (proj / "index.html").write_text("<h1>home</h1>", encoding="utf-8")
    (proj / "app.js.gz").write_bytes(gzip.compress(b"console.log(1)"))
    (proj / "data.json").write_text('{"a":1}', encoding="utf-8")
    with Device(proj, options=DeviceOptions(epoch_at_power_on=1_700_000_000)) as dev:
        conn = started(dev)
        r = exchange(dev, conn, "GET", "/")
        assert r.status == 200
        assert r.getheader("Content-Type") == "text/html; charset=utf-8"
        assert r.getheader("X-Powered-By") == "LuatOS"
        assert r.read() == b"<h1>home</h1>"
        conn = connect(dev)
        r = exchange(dev, conn, "GET", "/app.js")
        assert r.getheader("Content-Encoding") == "gzip"
        assert r.getheader("Content-Type") == "application/javascript; charset=utf-8"
        assert gzip.decompress(r.read()) == b"console.log(1)"
        conn = connect(dev)
        r = exchange(dev, conn, "GET", "/data.json")
        assert r.getheader("Content-Type") == "application/json; charset=utf-8"
        assert r.read() == b'{"a":1}'
        # a static file never reaches the callback
        assert not any(ln.startswith("I/user.req") for ln in dev.lines())


def test_stop_closes_the_port_and_two_ports_serve_apart(boot: Callable[..., Device]) -> None:
    dev = boot("""
sys.taskInit(function()
  """ + UP + """
  log.info("a", httpsrv.start(80, function() return 200, {}, "port80" end))
  log.info("b", httpsrv.start(8080, function() return 200, {}, "port8080" end))
  log.info("again", httpsrv.start(80, function() end))
  sys.wait(5000)
  log.info("stop", httpsrv.stop(80), httpsrv.stop(80), httpsrv.stop(9999))
  sys.wait(600000)
end)
sys.run()
""")
    dev.run_until("I/user.again", within="10s")
    assert "I/user.a true" in dev.lines()
    assert "I/user.b true" in dev.lines()
    assert "I/user.again" in dev.lines()  # nothing returned: already in use
    assert any("httpsrv port 80 already in use" in ln for ln in dev.lines())
    for port, text in ((80, b"port80"), (8080, b"port8080")):
        host, hport = dev.net.server_address(port)
        r = exchange(dev, http.client.HTTPConnection(host, hport, timeout=5), "GET", "/x")
        assert r.read() == text
    old = dev.net.server_address(80)
    dev.run_until("I/user.stop", within="10s")
    assert "I/user.stop true nil" in dev.lines()  # a second stop and an unknown port: nothing
    with pytest.raises(KeyError, match="no port 80"):
        dev.net.server_address(80)
    with pytest.raises(OSError):
        socket.create_connection(old, timeout=2).close()
    host, hport = dev.net.server_address(8080)
    r = exchange(dev, http.client.HTTPConnection(host, hport, timeout=5), "GET", "/")
    assert r.read() == b"port8080"


def test_start_needs_a_callback_and_a_ready_network(boot: Callable[..., Device]) -> None:
    dev = boot("""
log.info("nofunc", httpsrv.start(80, "x"))
log.info("nonet", httpsrv.start(80, function() end))
sys.run()
""")
    dev.run_for("2s")
    assert "I/user.nofunc" in dev.lines()
    assert "I/user.nonet" in dev.lines()
    assert any("httpsrv need callback function!!!" in ln for ln in dev.lines())
    assert any("httpsrv:该网络还没准备好 2" in ln for ln in dev.lines())


def test_a_malformed_request_is_dropped_without_an_answer(boot: Callable[..., Device]) -> None:
    dev = boot(SERVER)
    started(dev)
    for garbage in (b"HELLO\r\n\r\n", b"FETCH / HTTP/1.1\r\n\r\n",
                    b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                    b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n\r\n"):
        s = socket.create_connection(dev.net.server_address(80), timeout=5)
        s.sendall(garbage)
        time.sleep(0.05)
        dev.run_for("100ms")
        assert s.recv(100) == b""  # closed, nothing said
        s.close()
    assert sum("httpsrv:bad request, close socket" in ln for ln in dev.lines()) == 4
    assert not any(ln.startswith("I/user.req") for ln in dev.lines())
    # the server still serves
    r = exchange(dev, connect(dev), "GET", "/led/1")
    assert r.read() == b"ok"


def test_an_oversized_or_stalled_request_is_bounded(boot: Callable[..., Device]) -> None:
    dev = boot(SERVER)
    started(dev)
    dev.net.httpsrv_read_timeout_ms = 300
    s = socket.create_connection(dev.net.server_address(80), timeout=5)
    s.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
    time.sleep(0.05)
    dev.run_for("100ms")
    assert s.recv(100) == b""
    s.close()
    stalled = socket.create_connection(dev.net.server_address(80), timeout=5)
    stalled.sendall(b"GET /led/1 HTTP/1.1\r\n")  # never finishes its head
    time.sleep(0.5)
    dev.run_for("100ms")
    assert stalled.recv(100) == b""
    stalled.close()
    notes = [r.text for r in dev.log if r.source == SIM]
    assert any("over 1048576" in n for n in notes)
    assert any("no whole request within 300 ms" in n for n in notes)


def test_a_callback_error_is_a_script_error_and_the_device_reboots(
        boot: Callable[..., Device]) -> None:
    dev = boot(SERVER)
    conn = started(dev)
    conn.request("GET", "/boom")
    time.sleep(0.05)
    dev.run_for("1s")
    assert any("callback failed" in ln for ln in dev.lines())
    # the firmware never answers that client; the reboot drops the connection
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        conn.getresponse()
    dev.run_until("I/user.start true", within="30s")  # the next boot serves again


def test_a_web_setup_page_on_the_access_point(boot: Callable[..., Device]) -> None:
    """The vendor demo's shape: the device opens an access point, serves its page there and
    takes Wi-Fi credentials as a JSON POST."""
    dev = boot("""
sys.taskInit(function()
  wlan.init()
  wlan.createAP("setup-ap", "12345678")
  while not netdrv.ready(socket.LWIP_AP) do sys.wait(100) end
  local ok = httpsrv.start(80, function(fd, method, uri, headers, body)
    if uri == "/connect" and method == "POST" then
      local cfg = json.decode(body)
      if cfg and cfg.ssid then
        log.info("creds", cfg.ssid, cfg.passwd)
        return 200, {["Content-Type"] = "application/json"}, json.encode({ok = true})
      end
      return 400, {}, "bad json"
    end
    return 404, {}, "Not Found" .. uri
  end, socket.LWIP_AP)
  log.info("start", ok, socket.localIP(socket.LWIP_AP))
  sys.wait(600000)
end)
sys.run()
""", files={"index.html": "<form>setup</form>"})
    conn = started(dev)
    assert any("httpsrv:http listen at 192.168.4.1:80" in ln for ln in dev.lines())
    r = exchange(dev, conn, "GET", "/")
    assert r.read() == b"<form>setup</form>"
    r = exchange(dev, connect(dev), "POST", "/connect", body=b'{"ssid":"home","passwd":"pw1"}')
    assert (r.status, r.getheader("Content-Type")) == (200, "application/json")
    assert r.read() == b'{"ok":true}'
    assert "I/user.creds home pw1" in dev.lines()
    r = exchange(dev, connect(dev), "POST", "/connect", body=b"not json")
    assert (r.status, r.reason, r.read()) == (400, "Bad Request", b"bad json")
    dev.run_for("10min")  # ten virtual minutes later it still serves, on the same boot
    r = exchange(dev, connect(dev), "GET", "/index.html")
    assert r.read() == b"<form>setup</form>"
    assert sum(ln.startswith("I/user.start") for ln in dev.lines()) == 1
