"""http.request end to end against real loopback servers: exact bytes, modes and result codes."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from luatos_sim import Device, DeviceOptions

Handler = Callable[[socket.socket, bytes], None]


class RawHttpServer:
    """One thread per connection; records each request's exact bytes, then runs ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.release = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        c.settimeout(10)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                more = c.recv(4096)
                if not more:
                    return
                data += more
            head = data.split(b"\r\n\r\n", 1)[0].lower()
            if b"content-length:" in head:
                n = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                while len(data.split(b"\r\n\r\n", 1)[1]) < n:
                    data += c.recv(4096)
            self.requests.append(data)
            self.handler(c, data)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self) -> None:
        self.release.set()
        self.sock.close()
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def http_server() -> Iterator[Callable[[Handler], RawHttpServer]]:
    made: list[RawHttpServer] = []

    def make(handler: Handler) -> RawHttpServer:
        srv = RawHttpServer(handler)
        made.append(srv)
        return srv
    yield make
    for srv in made:
        srv.close()


def reply(status: str, body: bytes = b"", headers: str = "",
          length: int | None = None) -> Handler:
    def h(c: socket.socket, _req: bytes) -> None:
        n = len(body) if length is None else length
        c.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {n}\r\n{headers}\r\n".encode() + body)
    return h


def run_request(boot: Callable[..., Device], call: str, *, setup: Callable[[Device], Any]
                | None = None, within: str = "15m", **kw: Any) -> tuple[Device, str]:
    """Run ``local code, headers, body = <call>.wait()`` in a task; return the result line."""
    dev = boot("""
sys.taskInit(function()
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
  local t0 = mcu.ticks()
  local code, headers, body = CALL.wait()
  local h = {}
  if type(headers) == "table" then
    for k, v in pairs(headers) do h[#h + 1] = k .. "=" .. v end
    table.sort(h)
  end
  log.info("result", code, type(headers), table.concat(h, ","), type(body),
    type(body) == "string" and ("[" .. body .. "]") or body, mcu.ticks() - t0)
end)
sys.run()
""".replace("CALL", call), **kw)
    if setup:
        setup(dev)
    rec = dev.run_until("I/user.result", within=within)
    return dev, rec.line


class FakeArea:
    """Stands in for the FOTA area where a test needs to steer its answers."""

    def __init__(self, busy_polls: int = 0, refuse_at: int | None = None) -> None:
        self.calls: list[Any] = []
        self.busy = busy_polls
        self.refuse_at = refuse_at
        self.written = 0

    def begin(self) -> bool:
        self.calls.append("begin")
        return True

    def write(self, chunk: bytes) -> int:
        self.written += len(chunk)
        self.calls.append(("write", len(chunk)))
        if self.refuse_at is not None and self.written >= self.refuse_at:
            return -1
        return 1

    def is_done(self) -> int:
        self.calls.append("is_done")
        if self.busy > 0:
            self.busy -= 1
            return 1
        return 0

    def end(self, ok: bool) -> bool:
        self.calls.append(("end", ok))
        return True


@pytest.fixture
def fake_area(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeArea]:
    import luatos_sim.platform.fota_area as fa

    def make(**kw: Any) -> FakeArea:
        area = FakeArea(**kw)
        monkeypatch.setattr(fa, "area_for", lambda boot: area)
        return area
    return make


# -- exact request bytes -------------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["requests", "raw"])
def test_libfota2_style_get_sends_exactly_the_device_bytes(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer],
        transport: str) -> None:
    from luatos_sim.modules.http_mod import RawTransport, RequestsTransport

    srv = http_server(reply("200 OK", b"x"))
    url = ("http://ota.example.com:8000/upgrade?mac=C8C2C68CD602&project_key=K&firmware_name="
           "FOTA2_DEMO_LuatOS-SoC_Air8101&version=2001.001.000")

    def setup(d: Device) -> None:
        d.net.map_address("ota.example.com:8000", f"127.0.0.1:{srv.port}")
        d.net.http_transport = RequestsTransport() if transport == "requests" else RawTransport()
    _, line = run_request(boot, f'http.request("GET", "{url}")', setup=setup)
    assert line.startswith("I/user.result 200 table")
    assert srv.requests == [
        b"GET /upgrade?mac=C8C2C68CD602&project_key=K&firmware_name=FOTA2_DEMO_LuatOS-SoC_Air8101"
        b"&version=2001.001.000 HTTP/1.1\r\nConnection: Close\r\nHost: ota.example.com:8000\r\n"
        b"\r\n"]


def test_post_with_auth_headers_and_body_port_80(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer]) -> None:
    srv = http_server(reply("201 Created", b"ok"))
    call = ('http.request("POST", "http://user:pw@api.example.com/v1/report?a=1", '
            '{["X-Device"]="C8C2", ["Content-Length"]="999", ["X-Empty"]=""}, "hello")')
    _, line = run_request(boot, call, setup=lambda d: d.net.map_address(
        "api.example.com:80", f"127.0.0.1:{srv.port}"))
    assert line.startswith("I/user.result 201 table")
    assert srv.requests == [
        b"POST /v1/report?a=1 HTTP/1.1\r\nConnection: Close\r\nHost: api.example.com:80\r\n"
        b"Authorization: Basic dXNlcjpwdw==\r\nX-Device: C8C2\r\nContent-Length: 5\r\n\r\nhello"]


def test_path_is_sent_verbatim_and_callers_connection_host_win(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer]) -> None:
    srv = http_server(reply("200 OK"))
    call = ('http.request("GET", "http://127.0.0.1:PORT/a b/%2f?q=é&x=%41", '
            '{connection="keep-alive", Host="h.example"})').replace("PORT", "SRVPORT")
    dev = None

    def setup(d: Device) -> None:
        nonlocal dev
        dev = d
    _, line = run_request(boot, call.replace("SRVPORT", str(srv.port)), setup=setup)
    assert line.startswith("I/user.result 200")
    # Custom headers go out in Lua table order, which for hash keys varies from VM to VM.
    req = srv.requests[0]
    assert req.startswith("GET /a b/%2f?q=é&x=%41 HTTP/1.1\r\n".encode())
    assert req.endswith(b"\r\n\r\n")
    assert sorted(req.split(b"\r\n")[1:-2]) == [b"Host: h.example", b"connection: keep-alive"]


# -- setup failures ------------------------------------------------------------------------------

def test_head_and_fota_with_dst_fail_at_once_without_yielding(boot: Callable[..., Device]) -> None:
    dev = boot("""
log.info("head", http.request("HEAD", "http://127.0.0.1:1/").wait())
log.info("both", http.request("GET", "http://127.0.0.1:1/", nil, nil,
  {fota=true, dst="/a.bin"}).wait())
log.info("short", http.request("GET", "http://ab").wait())
log.info("scheme", http.request("GET", "ftp://example.com/x").wait())
log.info("lower", http.request("get", "http://example.com/x").wait())
log.info("adapter", http.request("GET", "http://example.com/x", nil, nil, {adapter=99}).wait())
sys.run()
""")
    dev.run_for("1s")
    lines = dev.lines()
    for name in ("head", "both", "short", "scheme", "lower", "adapter"):
        assert f"I/user.{name} -4" in lines


def test_refused_and_dns_failure_give_minus_4(boot: Callable[..., Device]) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    _, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{port}/")')
    assert line.startswith("I/user.result -4 nil  nil nil")
    _, line = run_request(boot, 'http.request("GET", "http://nx.example.com/")',
                          setup=lambda d: d.net.dns_fail("nx.example.com"))
    assert line.startswith("I/user.result -4 nil  nil nil")


def test_close_before_headers_gives_minus_5(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer]) -> None:
    srv = http_server(lambda c, r: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Le"))
    _, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{srv.port}/x")')
    assert line.startswith("I/user.result -5 nil  nil nil")
    srv2 = http_server(lambda c, r: None)
    _, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{srv2.port}/x", '
                                'nil, nil, {fota=true})')
    assert line.startswith("I/user.result -5 nil")


def test_redirect_is_a_status_and_chunked_bodies_are_joined(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer]) -> None:
    srv = http_server(reply("302 Found", b"", "Location: http://127.0.0.1:1/\r\n"))
    _, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{srv.port}/")')
    assert line.startswith("I/user.result 302 table Content-Length=0,Location=http://127.0.0.1:1/")

    def chunked(c: socket.socket, _r: bytes) -> None:
        c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Case: Kept\r\n\r\n"
                  b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    srv2 = http_server(chunked)
    _, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{srv2.port}/")')
    assert line.startswith("I/user.result 200 table Transfer-Encoding=chunked,X-Case=Kept "
                           "string [hello world]")


# -- timeouts ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("opts", "expected_ms"), [
    ("{timeout=1500}", 1500), ("{dst='/f.bin'}", 300_000), ("{fota=true}", 600_000),
    ("{timeout=999}", 60_000),
])
def test_a_server_that_never_answers_gives_minus_8_in_virtual_time(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer],
        opts: str, expected_ms: int) -> None:
    seen: list[bytes] = []
    gone = threading.Event()

    def hang(c: socket.socket, _r: bytes) -> None:
        seen.append(c.recv(10))  # blocks until the device gives up and closes
        gone.set()
    srv = http_server(hang)
    dev, line = run_request(
        boot, f'http.request("GET", "http://127.0.0.1:{srv.port}/", nil, nil, {opts})',
        options=DeviceOptions(io_grace_ms=100, epoch_at_power_on=1_700_000_000))
    assert line.startswith("I/user.result -8 nil  nil nil")
    elapsed = int(line.rsplit(" ", 1)[1])
    assert expected_ms <= elapsed <= expected_ms + 50
    assert not (dev.fs.root / "f.bin").exists()
    assert gone.wait(5) and seen == [b""]  # the timeout closed the host connection


# -- dst mode ------------------------------------------------------------------------------------

def test_dst_mode_writes_the_file_and_deletes_it_on_error_status(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer]) -> None:
    ok = http_server(reply("200 OK", b"0123456789"))
    dev, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{ok.port}/f", nil, '
                                  'nil, {dst="/dl/pkg.bin"})')
    assert " number 10 " in line and line.startswith("I/user.result 200 table")
    assert (dev.fs.root / "dl" / "pkg.bin").read_bytes() == b"0123456789"

    missing = http_server(reply("404 Not Found", b"nope"))
    dev, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{missing.port}/f", '
                                  'nil, nil, {dst="/pkg.bin"})')
    assert line.startswith("I/user.result 404 table") and " number 4 " in line
    assert not (dev.fs.root / "pkg.bin").exists()

    short = http_server(reply("200 OK", b"01234", length=10))
    dev, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{short.port}/f", '
                                  'nil, nil, {dst="/short.bin"})')
    assert line.startswith("I/user.result 200 table") and " number 5 " in line
    assert (dev.fs.root / "short.bin").read_bytes() == b"01234"


def test_dst_mode_interrupted_download_gives_minus_1_and_no_file(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer]) -> None:
    def reset_mid_body(c: socket.socket, _r: bytes) -> None:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    srv = http_server(reset_mid_body)
    dev, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{srv.port}/f", nil, '
                                  'nil, {dst="/cut.bin"})')
    assert line.startswith("I/user.result -1 nil  nil nil")
    assert not (dev.fs.root / "cut.bin").exists()


# -- fota mode -----------------------------------------------------------------------------------

def test_fota_mode_404_gives_minus_9_and_empty_body(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer],
        fake_area: Callable[..., FakeArea]) -> None:
    area = fake_area()
    srv = http_server(reply("404 Not Found", b'{"code": 27}'))
    call = f'http.request("GET", "http://127.0.0.1:{srv.port}/u", nil, nil, {{fota=true}})'
    _, line = run_request(boot, call)
    assert line.startswith("I/user.result -9 table Content-Length=12 string [] ")
    assert area.calls == [("end", False)]  # never begun, still ended with 0
    _, line = run_request(boot, call, setup=lambda d: setattr(d.net, "fota_error_body",
                                                              "buffered"))
    assert line.startswith('I/user.result -9 table Content-Length=12 string [{"code": 27}] ')


def test_fota_mode_success_polls_done_and_reports_206_as_200(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer],
        fake_area: Callable[..., FakeArea]) -> None:
    area = fake_area(busy_polls=3)
    srv = http_server(reply("206 Partial Content", b"P" * 5000))
    _, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{srv.port}/u", nil, '
                                'nil, {fota=true})')
    assert line.startswith("I/user.result 200 table") and " number 5000 " in line
    assert area.calls[0] == "begin"
    assert sum(c[1] for c in area.calls if isinstance(c, tuple) and c[0] == "write") == 5000
    assert area.calls[-5:] == ["is_done"] * 4 + [("end", True)]
    assert int(line.rsplit(" ", 1)[1]) >= 300  # three busy polls, 100 ms apart


def test_fota_mode_short_body_and_refused_image_give_minus_9(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer],
        fake_area: Callable[..., FakeArea]) -> None:
    area = fake_area()
    srv = http_server(reply("200 OK", b"A" * 600, length=1000))
    dev, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{srv.port}/u", nil, '
                                  'nil, {fota=true})')
    assert line.startswith("I/user.result -9 table") and " number 600 " in line
    assert "http:fota body incomplete, 600/1000" in dev.lines()
    assert area.calls[-1] == ("end", False)

    area2 = fake_area(refuse_at=1)
    srv2 = http_server(reply("200 OK", b"B" * 100))
    _, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{srv2.port}/u", nil, '
                                'nil, {fota=true})')
    assert line.startswith("I/user.result -9 table")
    assert area2.calls[-1] == ("end", False)


def test_fota_mode_cut_after_headers_gives_minus_9(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer],
        fake_area: Callable[..., FakeArea]) -> None:
    area = fake_area()
    srv = http_server(reply("200 OK", b"C" * 4000))
    head = len(b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n")
    _, line = run_request(boot, f'http.request("GET", "http://ota.example.com:{srv.port}/u", '
                                'nil, nil, {fota=true})',
                          setup=lambda d: (d.net.map_address("ota.example.com", "127.0.0.1"),
                                           d.net.cut_after(head + 1000, "ota.example.com")))
    assert line.startswith("I/user.result -9 table") and " number 1000 " in line
    assert area.calls[-1] == ("end", False)


def test_fota_mode_with_the_real_area_refuses_a_non_package(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer]) -> None:
    srv = http_server(reply("200 OK", b"<html>not a package</html>"))
    dev, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{srv.port}/u", nil, '
                                  'nil, {fota=true})')
    assert line.startswith("I/user.result -9 table")
    ends = [e for e in dev.trace if e.kind == "fota_end"]
    assert ends and ends[-1].detail.get("ok") is False


def test_progress_callback_and_plain_body(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer]) -> None:
    srv = http_server(reply("200 OK", b"z" * 3000))
    dev = boot(f"""
sys.taskInit(function()
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
  local last
  local code, h, body = http.request("GET", "http://127.0.0.1:{srv.port}/", nil, nil,
    {{callback=function(total, got, ud) last = total .. "/" .. got .. "/" .. tostring(ud) end,
      userdata="u1"}}).wait()
  log.info("done", code, #body, last)
end)
sys.run()
""")
    dev.run_until("I/user.done", within="1m")
    assert "I/user.done 200 3000 3000/3000/u1" in dev.lines()


def test_bandwidth_and_latency_stretch_a_download_in_virtual_time(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer]) -> None:
    srv = http_server(reply("200 OK", b"d" * 20_000))

    def slow(d: Device) -> None:
        d.net.bandwidth("10kB/s")
        d.net.latency("100ms")
    _, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{srv.port}/")',
                          setup=slow)
    assert line.startswith("I/user.result 200 table")
    assert int(line.rsplit(" ", 1)[1]) >= 2000 + 200


def test_fota_mode_with_the_real_area_stages_a_valid_package(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer]) -> None:
    from luatos_common.packages import build_air8101_ota

    pkg = build_air8101_ota({"main.lua": b'log.info("v2")\nsys.run()\n'})
    srv = http_server(reply("200 OK", pkg))
    dev, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{srv.port}/u", nil, '
                                  'nil, {fota=true})')
    assert line.startswith("I/user.result 200 table") and f" number {len(pkg)} " in line
    assert [e.detail.get("staged") for e in dev.trace if e.kind == "fota_end"] == [True]


@pytest.mark.parametrize(("opts", "expected"), [
    ("nil", "I/user.result -1 nil  nil nil"),
    ("{dst='/part.bin'}", "I/user.result -1 nil  nil nil"),
    ("{fota=true}", "I/user.result -9 table Content-Length=20000 number "),
])
def test_link_loss_mid_body_fails_the_exchange(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer],
        fake_area: Callable[..., FakeArea], opts: str, expected: str) -> None:
    area = fake_area()
    srv = http_server(reply("200 OK", b"L" * 20_000))

    def slow_then_lose(d: Device) -> None:
        d.net.bandwidth("4kB/s")  # 5 s of device time for the body
        d.net.link_down("wifi", at="4s")  # IP is up at 1.9 s; the link goes at 4 s
    dev, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{srv.port}/", nil, '
                                  f'nil, {opts})', setup=slow_then_lose)
    assert line.startswith(expected)
    assert not (dev.fs.root / "part.bin").exists()
    if "fota" in opts:
        written = int(line.split()[5])
        assert 0 < written < 20_000
        assert area.calls[-1] == ("end", False)
    # the result comes before the IP_LOSE status message
    assert 0 < int(line.rsplit(" ", 1)[1]) < 4000


def test_link_loss_before_the_answer_gives_minus_5(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer]) -> None:
    srv = http_server(lambda c, r: srv.release.wait(10))

    def lose(d: Device) -> None:
        d.net.link_down("wifi", at="3s")
    _, line = run_request(boot, f'http.request("GET", "http://127.0.0.1:{srv.port}/")',
                          setup=lose,
                          options=DeviceOptions(io_grace_ms=100, epoch_at_power_on=1))
    assert line.startswith("I/user.result -5 nil  nil nil")


def test_unreachable_host_times_out_and_refused_host_fails_at_once(
        boot: Callable[..., Device]) -> None:
    def faults(d: Device) -> None:
        d.net.unreachable("blackhole.example.com", mode="timeout")
    _, line = run_request(boot, 'http.request("GET", "http://blackhole.example.com/", nil, nil, '
                                '{timeout=5000})', setup=faults)
    assert line.startswith("I/user.result -8 nil  nil nil")
    assert 5000 <= int(line.rsplit(" ", 1)[1]) <= 5050
    _, line = run_request(boot, 'http.request("GET", "http://closed.example.com/")',
                          setup=lambda d: d.net.unreachable("closed.example.com"))
    assert line.startswith("I/user.result -4 nil  nil nil") and line.endswith(" 0")


def test_zbuff_body_has_content_length_for_post_and_put_only(
        boot: Callable[..., Device], http_server: Callable[[Handler], RawHttpServer]) -> None:
    srv = http_server(reply("200 OK"))
    call = ('(function() local z = zbuff.create(16); z:write("hello"); '
            'return http.request("{m}", "http://127.0.0.1:{port}/z", nil, z) end)()')
    _, line = run_request(boot, call.format(m="PUT", port=srv.port))
    assert line.startswith("I/user.result 200")
    assert srv.requests[-1] == (b"PUT /z HTTP/1.1\r\nConnection: Close\r\nHost: 127.0.0.1:"
                                + str(srv.port).encode() + b"\r\nContent-Length: 5\r\n\r\nhello")
    _, line = run_request(boot, call.format(m="DELETE", port=srv.port))
    assert srv.requests[-1] == (b"DELETE /z HTTP/1.1\r\nConnection: Close\r\nHost: 127.0.0.1:"
                                + str(srv.port).encode() + b"\r\n\r\nhello")


def test_https_over_loopback_tls(boot: Callable[..., Device], tmp_path: Path) -> None:
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            with ctx.wrap_socket(listener.accept()[0], server_side=True) as c:
                c.recv(1000)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")
        except OSError:
            pass
    threading.Thread(target=serve, daemon=True).start()
    try:
        _, line = run_request(boot, 'http.request("GET", "https://secure.example.com/k")',
                              setup=lambda d: d.net.map_address("secure.example.com:443",
                                                                f"127.0.0.1:{port}"))
    finally:
        listener.close()
    assert line.startswith("I/user.result 200 table Content-Length=6 string [secret]")
