"""mqtt.create over TLS to a real Mosquitto TLS listener, with the socket module's certificate
rules: a pinned server CA is checked (verify=2), verify=0 and ``true`` check nothing."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from luatos_sim import Device

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test PKI")


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _self_signed_ca(d: Path, name: str) -> tuple[Path, Path]:
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign")
    return cert, key


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Any, Path, Path]]:
    """(broker with a TLS listener, its CA, an unrelated CA)."""
    from luatos_testing.mosquitto import broker_for_test

    ca = _self_signed_ca(tmp_path, "mqtt-ca")
    other = _self_signed_ca(tmp_path, "other-ca")
    key, csr, cert = tmp_path / "srv.key", tmp_path / "srv.csr", tmp_path / "srv.pem"
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=broker.example.com")
    ext = tmp_path / "srv.ext"
    ext.write_text("subjectAltName=DNS:broker.example.com\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", ext)
    base = tmp_path / "mosquitto"
    base.mkdir()
    with broker_for_test(base, tls_files=(cert, key)) as broker:
        yield broker, ca[0], other[0]


PROJECT = """
sys.taskInit(function()
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
  local ca = io.readFile("/luadb/ca.pem")
  local c = mqtt.create(nil, "broker.example.com", 8883, SSL)
  c:auth("dev-tls")
  c:on(function(cl, ev, a, b) log.info("ev", ev, a, b) end)
  c:connect()
  sys.wait(3000)
  log.info("ready", c:ready())
end)
sys.run()
"""


@pytest.mark.parametrize(("ssl_arg", "ca_name", "ready"), [
    ("{server_cert = ca}", "right", True),
    ("{server_cert = ca}", "wrong", False),
    ("{server_cert = ca, verify = 0}", "wrong", True),
    ("true", "wrong", True),
])
def test_tls_server_ca_rules(boot: Callable[..., Device], tls_broker: tuple[Any, Path, Path],
                             ssl_arg: str, ca_name: str, ready: bool) -> None:
    broker, ca, other = tls_broker
    pem = (ca if ca_name == "right" else other).read_text()
    dev = boot(PROJECT.replace("SSL", ssl_arg), {"ca.pem": pem})
    dev.net.map_address("broker.example.com:8883", f"127.0.0.1:{broker.tls_port}")
    dev.net.reply_window_ms = 10_000  # a TLS broker on a loaded machine may take seconds to answer
    dev.run_until("I/user.ready", within="30s")
    lines = dev.lines()
    assert f"I/user.ready {str(ready).lower()}" in lines
    if ready:
        assert "I/user.ev conack nil nil" in lines
    else:
        assert "I/user.ev error connect 0" in lines
