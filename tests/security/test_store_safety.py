"""Files, TLS and crash consistency: permissions of the data directory, HTTPS and TLS on the push
port, `luatos-fota check`, automatic retention and orphan collection, and serve audit rows
surviving a kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from luatos_fota.audit import AuditEvent
from luatos_fota.store import Store

from .attack import FW, KEY, check_target, get, package, raw, served, status_of


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_data_directory_is_private(tmp_path: Path) -> None:
    def setup(st):  # type: ignore[no-untyped-def]
        p = st.products.add(KEY, FW)
        st.releases.add(package(), product_id=p.id, version="001.000.002")

    with served(tmp_path, setup=setup) as s:
        get(s.port, check_target("2001.001.000"))
        data = s.data
        assert _mode(data) == 0o700
        files = [p for p in data.rglob("*") if p.is_file()]
        dirs = [p for p in data.rglob("*") if p.is_dir()]
        assert any(p.name == "fota.db" for p in files) and any(len(p.name) == 64 for p in files)
        assert all(_mode(p) & 0o077 == 0 for p in files), {str(p): oct(_mode(p)) for p in files}
        assert all(_mode(p) & 0o077 == 0 for p in dirs), {str(p): oct(_mode(p)) for p in dirs}


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        if os.environ.get("CI"):
            pytest.fail("openssl is missing (make sysdeps installs it)")
        pytest.skip("openssl is not installed")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key


def test_https_and_tls_push_channel(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    ctx = ssl.create_default_context(cafile=str(cert))
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    http_port = port.getsockname()[1]
    port.close()
    push = socket.socket()
    push.bind(("127.0.0.1", 0))
    push_port = push.getsockname()[1]
    push.close()
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "luatos_fota.cli", "serve", "--data", str(data), "--host",
                             "127.0.0.1", "--port", str(http_port), "--push-port", str(push_port),
                             "--tls-cert", str(cert), "--tls-key", str(key)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", http_port), timeout=5) as raw_sock, \
                        ctx.wrap_socket(raw_sock, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    answer = tls.recv(65536)
                break
            except (OSError, ssl.SSLError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert status_of(answer) == 200
        with socket.create_connection(("127.0.0.1", push_port), timeout=5) as raw_sock, \
                ctx.wrap_socket(raw_sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(b'{"login":{"device":"C8C2C68CD602"}}\n')
            assert json.loads(tls.recv(4096).split(b"\n")[0]) == {"login": "ok"}
        # plain HTTP on the TLS port is refused, not served
        assert status_of(raw(http_port, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 5)) != 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert b"Traceback" not in err, err[-2000:]


def test_check_reports_and_repairs(tmp_path: Path) -> None:
    st = Store(tmp_path / "d")
    p = st.products.add(KEY, FW)
    good = st.releases.add(package("001.000.002"), product_id=p.id, version="001.000.002")
    bad = st.releases.add(package("001.000.003"), product_id=p.id, version="001.000.003")
    gone = st.releases.add(package("001.000.004"), product_id=p.id, version="001.000.004")
    st.blobs.path(bad.sha256).write_bytes(b"flipped bits")
    st.blobs.path(gone.sha256).unlink()
    orphan = st.blobs.put(b"left by a crash between the rename and the commit")
    tmpfile = st.data_dir / "blobs" / "tmp" / "otherhost-1-abc"
    tmpfile.write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(st.blobs.path(orphan), (old, old))
    os.utime(tmpfile, (old, old))
    rep = st.check()
    assert not rep["ok"] and rep["corrupt_blobs"] == [bad.sha256] and rep["missing_blobs"] == [gone.sha256]
    assert rep["orphan_blobs"] == [orphan] and rep["temp_files"] == ["otherhost-1-abc"]
    assert sorted(rep["releases_affected"]) == sorted([bad.id, gone.id])
    out = subprocess.run([sys.executable, "-m", "luatos_fota.cli", "check", "--data", str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 4 and "corrupt package" in out.stdout and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "luatos_fota.cli", "check", "--data", str(tmp_path / "d"),
                          "--repair", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["repaired"]
    after = st.check()
    assert after["orphan_blobs"] == [] and after["temp_files"] == [] and after["corrupt_blobs"] == []
    assert (st.data_dir / "blobs" / "quarantine" / bad.sha256).is_file()
    assert st.releases.get(bad.id).enabled is False and st.releases.get(good.id).enabled is True
    st.close()


def test_retention_and_orphan_collection_run_by_themselves(tmp_path: Path) -> None:
    def setup(st):  # type: ignore[no-untyped-def]
        st.products.add(KEY, FW)
        st.audit.write([AuditEvent("checkin", "OLD", status=304, code=27, ts=time.time() - 400 * 86400)])
        orphan = st.blobs.put(b"orphan blob")
        old = time.time() - 7200
        os.utime(st.blobs.path(orphan), (old, old))
        tmpfile = st.data_dir / "blobs" / "tmp" / "otherhost-1-zzz"
        tmpfile.write_bytes(b"x")
        os.utime(tmpfile, (old, old))

    cfg = {"audit_max_age_s": 30 * 86400, "audit_max_rows": 50, "retention_interval_s": 0.5,
           "orphan_gc_interval_s": 0.5, "audit_ip_rate": 0.0}
    with served(tmp_path, cfg, setup=setup) as s:
        for i in range(120):
            get(s.port, check_target("2001.001.000", mac=f"C8C2C6{i:06X}"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            st = Store(s.data)
            try:
                rows = st.audit.query(limit=1000)
                blobs = st.blobs.all_digests()
                temps = list((st.data_dir / "blobs" / "tmp").iterdir())
            finally:
                st.close()
            if len(rows) <= 60 and not blobs and not temps and not any(r.device_key == "OLD" for r in rows):
                break
            time.sleep(0.3)
        assert len(rows) <= 60 and not any(r.device_key == "OLD" for r in rows), len(rows)
        assert blobs == [] and temps == []


def test_serve_audit_rows_survive_kill_9(tmp_path: Path) -> None:
    def setup(st):  # type: ignore[no-untyped-def]
        p = st.products.add(KEY, FW)
        st.releases.add(package(), product_id=p.id, version="001.000.002")

    cfg = {"flush_interval_s": 3600.0}
    with served(tmp_path, cfg, setup=setup) as s:
        assert status_of(get(s.port, check_target("2001.001.000"))) == 200
        st = Store(s.data)
        assert st.audit.query(event_="serve", limit=5) == []  # still in the writer's buffer
        st.close()
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(10)
    with served(tmp_path) as s2:
        st = Store(s2.data)
        rows = st.audit.query(event_="serve", limit=5)
        st.close()
    assert len(rows) == 1 and rows[0].device_key == "C8C2C68CD602", rows
    assert rows[0].detail["recovered"] is True
