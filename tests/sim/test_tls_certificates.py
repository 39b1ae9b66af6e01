"""Certificate arguments of http.request and socket.config over real TLS on loopback: a pinned
server CA is checked (a FOTA server behind the wrong certificate fails as it would on the
device), client certificates work for mutual TLS, and without a CA nothing is checked, as on
the device."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from luatos_sim import Device, DeviceOptions

from .conftest import missing_dependency

HOST = "secure.example.com"

@pytest.fixture(autouse=True, scope="module")
def _needs_openssl() -> None:
    """openssl makes the test PKI: skip without it locally, fail on CI (which must run these)."""
    if shutil.which("openssl") is None:
        missing_dependency("openssl is needed to make the test PKI (apt-get install openssl)")


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    return cert, key


def _leaf(d: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    cert, key, csr, extfile = d / f"{name}.pem", d / f"{name}.key", d / f"{name}.csr", d / f"{name}.ext"
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    extfile.write_text(ext)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", extfile)
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = _ca(d, "fleet-ca")
    other = _ca(d, "other-ca")
    server = _leaf(d, HOST, ca, f"subjectAltName=DNS:{HOST}\nextendedKeyUsage=serverAuth\n")
    client = _leaf(d, "device-0001", ca, "extendedKeyUsage=clientAuth\n")
    return Pki(ca[0], other[0], server[0], server[1], client[0], client[1])


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[Callable[..., int]]:
    """start(require_client_cert=False) -> port of a one-shot HTTPS server answering 200."""
    listeners: list[socket.socket] = []

    def start(require_client_cert: bool = False, status: bytes = b"200 OK", raw: bytes | None = None) -> int:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.server_cert, pki.server_key)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(pki.ca)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.settimeout(20)
        listeners.append(listener)

        def serve() -> None:
            for _ in range(2):  # bounded: at most two connections per test
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                try:
                    conn.settimeout(10)  # bounded: a client that never writes is dropped
                    with ctx.wrap_socket(conn, server_side=True) as c:
                        got = c.recv(4000)
                        c.sendall(raw + got if raw is not None
                                  else b"HTTP/1.1 " + status + b"\r\nContent-Length: 6\r\n\r\nsecret")
                except OSError:
                    pass  # a client that refused our certificate, or we refused its

        threading.Thread(target=serve, daemon=True).start()
        return int(listener.getsockname()[1])

    yield start
    for listener in listeners:
        listener.close()


def lua_text(path: Path) -> str:
    return "[==[" + path.read_text() + "]==]"


def request_result(boot: Callable[..., Device], port: int, args: str, *, host: str = HOST,
                   options: DeviceOptions | None = None) -> str:
    dev = boot(f"""
        sys.taskInit(function()
          wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
          local code, headers, body = http.request("GET", "https://{host}/pkg", nil, nil, nil{args}).wait()
          log.info("result", code, body)
        end)
        sys.run()
    """, **({"options": options} if options else {}))
    dev.net.map_address(f"{host}:443", f"127.0.0.1:{port}")
    return dev.run_until("I/user.result", within="5m").line


def test_without_server_ca_nothing_is_checked(boot, tls_server) -> None:
    assert request_result(boot, tls_server(), "") == "I/user.result 200 secret"


def test_server_ca_of_the_fleet_passes(boot, pki: Pki, tls_server) -> None:
    assert request_result(boot, tls_server(), ", " + lua_text(pki.ca)) == "I/user.result 200 secret"


def test_a_server_behind_another_ca_is_refused_like_a_failed_connect(boot, pki: Pki, tls_server) -> None:
    line = request_result(boot, tls_server(), ", " + lua_text(pki.other_ca))
    assert line.startswith("I/user.result -4")


def test_server_ca_that_is_not_a_certificate_fails_the_request(boot, tls_server) -> None:
    line = request_result(boot, tls_server(), ', "-----BEGIN CERTIFICATE-----\\nnot base64\\n"')
    assert line.startswith("I/user.result -4")


def test_mutual_tls_needs_the_client_certificate(boot, pki: Pki, tls_server) -> None:
    port = tls_server(require_client_cert=True)
    with_cert = f", {lua_text(pki.ca)}, {lua_text(pki.client_cert)}, {lua_text(pki.client_key)}"
    assert request_result(boot, port, with_cert) == "I/user.result 200 secret"
    port = tls_server(require_client_cert=True)
    line = request_result(boot, port, ", " + lua_text(pki.ca))
    # TLS 1.3: the client's handshake completes, then the server checks for a certificate,
    # finds none and hangs up: the request fails with -5 (connection closed), not a status
    assert line == "I/user.result -5 nil"


def test_host_name_is_checked_only_when_configured(boot, pki: Pki, tls_server) -> None:
    other_name = "fota.other-name.example"
    args = ", " + lua_text(pki.ca)
    assert request_result(boot, tls_server(), args, host=other_name) == "I/user.result 200 secret"
    strict = DeviceOptions(epoch_at_power_on=1_700_000_000, tls_check_hostname=True)
    line = request_result(boot, tls_server(), args, host=other_name, options=strict)
    assert line.startswith("I/user.result -4")
    assert request_result(boot, tls_server(), args, options=strict) == "I/user.result 200 secret"


def test_libfota2_passes_server_cert_to_the_request(boot, pki: Pki, tls_server) -> None:
    """Wrong CA: the connect fails (cb 1). Right CA: the TLS session is up and the server's
    "no update" answer arrives (cb 4)."""
    results = []
    for ca in (pki.other_ca, pki.ca):
        port = tls_server(status=b"304 Not Modified")
        dev = boot(f"""
            PROJECT, VERSION = "TLS", "001.000.000"
            local libfota2 = require "libfota2"
            sys.taskInit(function()
              wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
              libfota2.request(function(r) log.info("fota", r) end,
                {{url = "###https://{HOST}/pkg.bin", server_cert = {lua_text(ca)}}})
            end)
            sys.run()
        """)
        dev.net.map_address(f"{HOST}:443", f"127.0.0.1:{port}")
        results.append(dev.run_until("I/user.fota ", within="15m").line)
    assert results == ["I/user.fota 1", "I/user.fota 4"]


def socket_result(boot: Callable[..., Device], port: int, config_args: str, *,
                  settle_before_tx_s: float = 0.0) -> list[str]:
    """A TLS socket in callback mode: connect, send "hi", read the echo. ``settle_before_tx_s``:
    once online, the device idles that long in wall time (and 500 ms in virtual time) before it
    writes, so whatever the server sent after the handshake has reached its reader."""
    pause = "sys.wait(500)" if settle_before_tx_s else ""
    dev = boot(f"""
        sys.taskInit(function()
          wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
          local c = socket.create(nil, function(ctrl, ev, p) sys.publish("SEV", ev, p) end)
          socket.config(c, nil, nil, true{config_args})
          socket.connect(c, "{HOST}", 8883)
          local _, ev, p = sys.waitUntil("SEV", 30000)
          log.info("online", ev == socket.ON_LINE, p)
          if p ~= 0 then return end
          {pause}
          socket.tx(c, "hi")
          repeat _, ev, p = sys.waitUntil("SEV", 30000) until ev == socket.EVENT
          local zb = zbuff.create(64)
          local ok, n = socket.rx(c, zb)
          log.info("rx", ok, n, zb:query())
        end)
        sys.run()
    """)
    dev.net.map_address(f"{HOST}:8883", f"127.0.0.1:{port}")
    if settle_before_tx_s:
        dev.run_until(r"I/user\.online", within="5m")
        time.sleep(settle_before_tx_s)
    dev.run_until(r"I/user\.(rx|online false|online true -1)", within="5m")
    return [ln for ln in dev.lines() if ln.startswith(("I/user.online", "I/user.rx"))]


def test_socket_tls_with_the_fleet_ca_and_a_client_certificate(boot, pki: Pki, tls_server) -> None:
    port = tls_server(require_client_cert=True, raw=b"echo:")
    args = f", nil, nil, nil, {lua_text(pki.ca)}, {lua_text(pki.client_cert)}, {lua_text(pki.client_key)}"
    assert socket_result(boot, port, args) == ["I/user.online true 0", "I/user.rx true 7 echo:hi"]


def test_socket_tls_refuses_a_server_behind_another_ca(boot, pki: Pki, tls_server) -> None:
    lines = socket_result(boot, tls_server(raw=b"echo:"), f", nil, nil, nil, {lua_text(pki.other_ca)}")
    assert lines == ["I/user.online true -1"]


def test_socket_tls_without_a_ca_checks_nothing(boot, tls_server) -> None:
    assert socket_result(boot, tls_server(raw=b"echo:"), "") == ["I/user.online true 0",
                                                                 "I/user.rx true 7 echo:hi"]


def test_socket_tls_handshake_with_a_silent_peer_times_out_like_a_connect(boot) -> None:
    """A peer that accepts TCP and never answers the ClientHello: the device's stack gives up
    after its connect timeout and reports a failed connect, in bounded wall time (before, the
    handshake waited forever and held the virtual clock with it)."""
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    taker = threading.Thread(target=lambda: held.append(silent.accept()[0]), daemon=True)
    taker.start()
    try:
        dev = boot(f"""
            sys.taskInit(function()
              wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
              local c = socket.create(nil, function(ctrl, ev, p) sys.publish("SEV", ev, p) end)
              socket.config(c, nil, nil, true)
              local t0 = mcu.ticks()
              socket.connect(c, "{HOST}", 8883)
              local _, ev, p = sys.waitUntil("SEV", 60000)
              log.info("online", ev == socket.ON_LINE, p, mcu.ticks() - t0 >= 1000)
            end)
            sys.run()
        """)
        dev.net.timings.connect_timeout_ms = 1000
        dev.net.map_address(f"{HOST}:8883", f"127.0.0.1:{silent.getsockname()[1]}")
        assert dev.run_until(r"I/user\.online", within="5m").line == "I/user.online true -1 true"
        assert [t.detail["why"] for t in dev.trace if t.kind == "socket_connect_failed"] == ["timeout"]
    finally:
        for s in held:
            s.close()
        silent.close()


def test_socket_tls_write_after_the_session_ticket_arrived(boot, tls_server) -> None:
    """TLS 1.3 servers send session tickets right after the handshake, so the socket turns
    readable with no application data behind it. The device then writes first and the server
    answers. Before, the emulator's reader sat inside a blocking SSL_read holding its lock,
    and the device froze until the server gave up (about 95 s with Mosquitto)."""
    started = time.monotonic()
    lines = socket_result(boot, tls_server(raw=b"echo:"), "", settle_before_tx_s=0.3)
    assert lines == ["I/user.online true 0", "I/user.rx true 7 echo:hi"]
    assert time.monotonic() - started < 4  # the server gives up after 10 s
