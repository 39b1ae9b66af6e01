"""libfota2 callback codes against real loopback servers, and the full upgrade cycle."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from luatos_common.loopback_http import start_loopback_http, stop_loopback_http
from luatos_common.packages import build_air8101_ota
from luatos_sim import Device, DeviceOptions

from .conftest import write_project

OPTIONS = DeviceOptions(epoch_at_power_on=1_700_000_000, io_grace_ms=300)

MAIN = """
PROJECT = "FOTA2_DEMO"
VERSION = "001.000.000"
PRODUCT_KEY = "K"
libfota2 = require "libfota2"
log.info("main", PROJECT, VERSION)
sys.taskInit(function()
  wlan.init()
  wlan.connect("ap", "pw")
  sys.waitUntil("IP_READY", 30000)
  libfota2.request(function(ret)
    log.info("fota_cb", ret)
    if ret == 0 then rtos.reboot() end
  end, OPTS)
end)
sys.run()
"""

NEW_MAIN = 'VERSION = "001.000.001"\nlog.info("main", "new", VERSION)\nsys.run()\n'


class Server:
    """A loopback HTTP server whose answer a test sets (status, body, headers)."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                outer.requests.append(self.requestline)
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = start_loopback_http(Handler)
        self.port = self.httpd.server_address[1]

    def close(self) -> None:
        stop_loopback_http(self.httpd)


class RawServer:
    """Accepts TCP connections and then either closes at once or never answers."""

    def __init__(self, mode: str) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            if self.mode == "close":
                conn.recv(4096)
                conn.close()
            else:
                self.held.append(conn)

    def close(self) -> None:
        self.stop.set()
        for c in self.held:
            c.close()
        self.sock.close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def device(tmp_path) -> Iterator[Callable[..., Device]]:
    made: list[Device] = []

    def make(opts: str = '{url = "http://ota.example.com/upgrade?"}', port: int = 1) -> Device:
        proj = write_project(tmp_path / f"p{len(made)}",
                             {"main.lua": MAIN.replace("OPTS", opts)})
        dev = Device(proj, options=OPTIONS)
        dev.net.map_address("ota.example.com", f"127.0.0.1:{port}")
        dev.net.map_address("iot.openluat.com", f"127.0.0.1:{port}")
        made.append(dev)
        return dev

    yield make
    for d in made:
        d.close()


def cb_codes(dev: Device) -> list[str]:
    return [ln for ln in dev.lines() if ln.startswith("I/user.fota_cb")]


def test_valid_package_gives_0_and_the_new_version_boots(device, server):
    server.body = build_air8101_ota({"main.lua": NEW_MAIN.encode()})
    dev = device(port=server.port)
    dev.run_until("I/user.main new 001.000.001", within="2m")
    assert cb_codes(dev) == ["I/user.fota_cb 0"]
    assert server.requests == [
        "GET /upgrade?mac=C8C2C68CD602&project_key=K&firmware_name=FOTA2_DEMO_LuatOS-SoC_Air8101"
        "&version=2001.001.000 HTTP/1.1"]
    kinds = [t.kind for t in dev.trace]
    assert kinds.index("libfota2_cb") < kinds.index("reboot_request") < \
        kinds.index("fota_applied")
    cb = next(t for t in dev.trace if t.kind == "libfota2_cb")
    assert cb.detail == {"ret": 0}


def test_connection_refused_gives_1(device):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: a real refusal
    dev = device(port=port)
    dev.run_until("fota_cb", within="2m")
    assert cb_codes(dev) == ["I/user.fota_cb 1"]
    assert not any(ln.startswith("I/user.libfota2 ") for ln in dev.lines())


def test_server_closing_before_answering_gives_3(device):
    raw = RawServer("close")
    try:
        dev = device(port=raw.port)
        dev.run_until("fota_cb", within="2m")
        assert cb_codes(dev) == ["I/user.fota_cb 3"]
    finally:
        raw.close()


def test_404_gives_4_with_the_code_line(device, server):
    server.status = 404
    server.body = b"no such firmware"
    dev = device(port=server.port)
    dev.run_until("fota_cb", within="2m")
    lines = dev.lines()
    i = lines.index("I/user.fota_cb 4")
    assert lines[i - 1] == "I/user.libfota2 -9 "  # fota mode: any non-200 is -9, body ""
    assert not any("使用合宙服务器" in ln for ln in lines)  # not the vendor host


def test_corrupt_package_gives_4_and_keeps_the_old_scripts(device, server):
    pkg = bytearray(build_air8101_ota({"main.lua": NEW_MAIN.encode()}))
    pkg[-10] ^= 0xFF
    server.body = bytes(pkg)
    dev = device(port=server.port)
    dev.run_until("fota_cb", within="2m")
    assert cb_codes(dev) == ["I/user.fota_cb 4"]
    assert any(ln.startswith("I/user.libfota2 -9 ") for ln in dev.lines())
    assert not dev.fota.has_staged()
    dev.boot.halt("reboot", 3)  # even a reboot now runs the old scripts
    dev.run_until("I/user.main FOTA2_DEMO 001.000.000", within="10s")
    assert any(t.kind == "fota_refused" for t in dev.trace)


def test_timeout_gives_4_after_the_virtual_timeout(device):
    raw = RawServer("hold")
    try:
        dev = device('{url = "http://ota.example.com/upgrade?", timeout = 5000}', port=raw.port)
        dev.run_until("fota_cb", within="2m")
        lines = dev.lines()
        i = lines.index("I/user.fota_cb 4")
        assert lines[i - 1] == "I/user.libfota2 -8 nil"
    finally:
        raw.close()


def test_vendor_server_diagnosis_lines(device, server):
    server.status = 403  # the vendor answers its JSON errors with a non-200 status
    server.body = b'{"code": 27, "msg": "already latest"}'
    dev = device('{url = "http://iot.openluat.com/api/site/firmware_upgrade?"}',
                 port=server.port)
    dev.run_until("fota_cb", within="2m")
    lines = dev.lines()
    i = lines.index("I/user.fota_cb 4")
    assert lines[i - 3] == "I/user.libfota2 -9 "
    assert lines[i - 2] == "I/user.使用合宙服务器,接下来解析body里的code"
    assert lines[i - 1].startswith("I/user.云平台下发的不是json ")  # the -9 body is ""
    dev.close()
    dev = device('{url = "http://iot.openluat.com/api/site/firmware_upgrade?"}',
                 port=server.port)
    dev.net.fota_error_body = "buffered"
    dev.run_until("fota_cb", within="2m")
    assert any(ln.startswith("I/user.已是最新版本 ") for ln in dev.lines())


PSM_MAIN = """
PROJECT = "FOTA2_DEMO"
VERSION = "001.000.000"
PRODUCT_KEY = "K"
libfota2 = require "libfota2"
log.info("boot", pm.lastReson())
sys.taskInit(function()
  log.info("psm", "开始测试PSM+模式功耗。")
  wlan.init()
  wlan.connect("ap", "pw")
  sys.waitUntil("IP_READY", 30000)
  libfota2.request(function(ret)
    sys.publish("FOTA_END", ret)
    log.info("fota_cb", ret)
    if ret == 0 then rtos.reboot() end
  end, {url = "###http://ota.example.com/pkg.bin"})
  sys.waitUntil("FOTA_END", 15000)
  log.info("psm", "升级结束,进入PSM模式")
  wlan.disconnect()
  pm.dtimerStart(2, 14400000)
  pm.power(pm.WORK_MODE, 3)
  sys.wait(15000)
  log.info("psm", "进入PSM+失败,重启")
  rtos.reboot()
end)
sys.run()
"""


def psm_device(tmp_path, port: int) -> Device:
    proj = write_project(tmp_path / "psm", {"main.lua": PSM_MAIN})
    dev = Device(proj, options=OPTIONS)
    dev.net.map_address("ota.example.com", f"127.0.0.1:{port}")
    return dev


def test_psm_check_then_sleep_order_is_traced(tmp_path, server):
    server.status = 404
    dev = psm_device(tmp_path, server.port)
    try:
        dev.run_for("4h30m")
        assert [b.reason for b in dev.boots] == ["power-on", "wake"]
        first = [t for t in dev.trace if t.boot == 1]
        kinds = [t.kind for t in first]
        cb = kinds.index("libfota2_cb")
        assert cb < kinds.index("wlan_disconnect") < kinds.index("dtimer_start") < \
            kinds.index("power_mode") < kinds.index("sleep")
        dt = first[kinds.index("dtimer_start")]
        assert dt.detail == {"id": 2, "ms": 14400000}
        assert first[cb].ms <= dt.ms
        assert not dev.upgrade_checks.warnings
    finally:
        dev.close()


def test_psm_15s_cut_abandons_a_slow_download_and_lint_warns(tmp_path, server):
    server.body = build_air8101_ota({"main.lua": NEW_MAIN.encode(), "pad.bin": bytes(8000)})
    dev = psm_device(tmp_path, server.port)
    try:
        dev.net.bandwidth("300bps")  # ~10 KB at 300 B/s (or bits/s): far more than 15 s
        dev.run_for("1m")
        assert dev.boots[0].outcome == "sleep"
        assert not any(ln.startswith("I/user.fota_cb") for ln in dev.lines())
        assert [w.code for w in dev.upgrade_checks.warnings] == ["sleep-during-download"]
        dev.run_for("4h")
        assert dev.boots[1].reason == "wake"
        assert not any("new" in ln for ln in dev.lines(2))  # nothing was applied
    finally:
        dev.close()


def test_libfota_v1_custom_url_results(tmp_path, server):
    server.body = build_air8101_ota({"main.lua": NEW_MAIN.encode()})
    proj = write_project(tmp_path / "v1", {"main.lua": """
        PROJECT = "V1" VERSION = "001.000.000"
        local libfota = require "libfota"
        sys.taskInit(function()
          wlan.init()
          wlan.connect("ap", "pw")
          sys.waitUntil("IP_READY", 30000)
          libfota.request(function(ret)
            log.info("v1_cb", ret)
            if ret == 0 then rtos.reboot() end
          end, "http://ota.example.com/missing.bin")
          sys.wait(1000)
          libfota.request(function(ret)
            log.info("v1_cb", ret)
            if ret == 0 then rtos.reboot() end
          end, "http://ota.example.com/pkg.bin", nil, nil, nil, nil, nil, nil, nil, nil, nil, true)
        end)
        sys.run()
    """})
    dev = Device(proj, options=OPTIONS)
    dev.net.map_address("ota.example.com", f"127.0.0.1:{server.port}")
    try:
        server.status = 404
        dev.run_until("v1_cb", within="1m")
        assert "I/user.fota -9 " in dev.lines()
        server.status = 200
        dev.run_until("I/user.main new 001.000.001", within="1m")
        assert [ln for ln in dev.lines() if "v1_cb" in ln] == ["I/user.v1_cb 4", "I/user.v1_cb 0"]
        assert "I/user.fota.url http://ota.example.com/pkg.bin" in dev.lines()
    finally:
        dev.close()
