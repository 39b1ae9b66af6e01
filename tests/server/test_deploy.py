"""The files in deploy/ do what docs/deploy.md says, as far as this machine can run them.

Run for real: the systemd unit (``systemd-analyze verify``), the single-host nginx TLS config
in front of a server, the load-balancer nginx config in front of two instances that share
PostgreSQL and an S3 bucket (uploads, check-ins, Range resumes and the push channel through it),
and the backup script against a running server (restored and served). Checked statically only
(no container runtime here): that compose.yaml names the services nginx-lb.conf balances over
and only settings the server reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner

from luatos_common.packages import build_air8101_ota
from luatos_common.ports import free_port
from luatos_fota.cli import main as cli_main
from luatos_fota.push import PushHub
from luatos_fota.testing import device_request, running_server

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX = "/usr/sbin/nginx"
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
KEY = "deploy_key"
FW = "DEPLOY_LuatOS-SoC_Air8101"
TOKEN = "deploy-token"


def need(ok: bool, reason: str) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited {proc.returncode}: {log.read_text() if log.exists() else ''}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on {port}")


def replace(text: str, old: str, new: str) -> str:
    """Replace, insisting the deploy file still has ``old`` (so drift breaks this test)."""
    assert old in text, f"deploy file no longer contains {old!r}"
    return text.replace(old, new)


def nginx_conf_file(conf: str, workdir: Path) -> Path:
    """``conf`` (a full nginx.conf) made runnable by an unprivileged nginx under workdir/nginx."""
    prefix = workdir / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    temps = "".join(f"{k}_temp_path {prefix}/{k};\n" for k in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = replace(conf, "\nhttp {", "\nhttp {\n" + temps + "access_log off;\n")
    head = "user root;\n" if os.geteuid() == 0 else ""
    head += f"daemon off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log warn;\n"
    if "stream {" in conf and STREAM_MODULE.exists():
        head = f"load_module {STREAM_MODULE};\n" + head
    path = prefix / "nginx.conf"
    path.write_text(head + conf)
    return path


@contextlib.contextmanager
def nginx(conf: str, workdir: Path, wait_for: int) -> Iterator[None]:
    """Run nginx in the foreground on ``conf`` (a full nginx.conf), its files under workdir."""
    need(Path(NGINX).exists(), "nginx not installed: run make sysdeps")
    path = nginx_conf_file(conf, workdir)
    prefix = path.parent
    log = prefix / "logs" / "error.log"
    proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(path), "-e", str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(wait_for, proc, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def package(tag: str, filler: int = 0) -> bytes:
    files = {"main.lua": f"PROJECT='DEPLOY'\nVERSION='{tag}'\n".encode()}
    if filler:
        files["pad.bin"] = os.urandom(filler)
    return build_air8101_ota(files)


def check_in(port: int, mac: str, version: str = "2001.001.000", headers: bytes = b"") -> Any:
    return device_request(port, f"/api/site/firmware_upgrade?mac={mac}&project_key={KEY}&firmware_name={FW}"
                                f"&version={version}", extra_headers=headers)


def eventually(probe: Any, what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.05)


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    need(tool is not None, "systemd-analyze not installed")
    exe = shutil.which("luatos-fota") or str(Path(sys.executable).with_name("luatos-fota"))
    unit = replace((DEPLOY / "luatos-fota.service").read_text(), "/opt/luatos-fota/bin/luatos-fota", exe)
    path = tmp_path / "luatos-fota.service"
    path.write_text(unit)
    res = subprocess.run([str(tool), "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "luatos-fota.service" not in res.stdout + res.stderr, res.stderr
    # The command line it runs is one the server accepts.
    argv = unit.split("ExecStart=", 1)[1].splitlines()[0].split()
    help_run = CliRunner().invoke(cli_main, [*argv[1:], "--help"])
    assert help_run.exit_code == 0, help_run.output


def test_single_host_tls_through_nginx(tmp_path: Path) -> None:
    need(shutil.which("openssl") is not None, "openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    https, http = free_port(), free_port()
    with running_server(tmp_path / "data", admin_token=TOKEN) as srv:
        srv.store.products.add(KEY, FW)
        conf = (DEPLOY / "nginx-tls.conf").read_text()
        conf = replace(conf, "listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;")
        conf = replace(conf, "listen 80;", f"listen 127.0.0.1:{http};")
        conf = replace(conf, "/etc/letsencrypt/live/fota.example.com/fullchain.pem", str(cert))
        conf = replace(conf, "/etc/letsencrypt/live/fota.example.com/privkey.pem", str(key))
        conf = replace(conf, "server_name fota.example.com;", "server_name localhost;")
        conf = replace(conf, "127.0.0.1:8000", f"127.0.0.1:{srv.port}")
        with nginx("events {}\nhttp {\n" + conf + "\n}\n", tmp_path, https):
            r = requests.get(f"https://localhost:{https}/admin/api/products", verify=str(cert),
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            assert r.status_code == 200 and r.json()["products"][0]["project_key"] == KEY
            # Devices over plain HTTP: check-ins answered by the server through nginx.
            assert check_in(http, "C8C2C68CDE01").status == 304
            # Anything else over plain HTTP moves to HTTPS.
            plain = device_request(http, "/admin/api/products")
            assert plain.status == 301 and plain.header("Location").startswith("https://")


@pytest.mark.postgres
def test_load_balanced_instances_share_database_and_bucket(tmp_path: Path, pg_url: str, s3_url: str) -> None:
    need(Path(NGINX).exists(), "nginx not installed: run make sysdeps")
    need(STREAM_MODULE.exists() or "--with-stream " in subprocess.run(
        [NGINX, "-V"], capture_output=True, text=True).stderr, "nginx stream module missing: run make sysdeps")
    push = [free_port(), free_port()]
    lb_http, lb_push = free_port(), free_port()
    with contextlib.ExitStack() as stack:
        srvs = [stack.enter_context(running_server(
            tmp_path / f"fota-{i + 1}", db_url=pg_url, blob_url=s3_url, admin_token=TOKEN,
            loop_max_serves=1000, push_hub=PushHub(),
            extra={"push_port": push[i], "push_host": "127.0.0.1"})) for i in range(2)]
        conf = (DEPLOY / "nginx-lb.conf").read_text()
        conf = replace(conf, "worker_processes auto;", "worker_processes 1;")
        for i, s in enumerate(srvs):
            conf = replace(conf, f"fota-{i + 1}:8000", f"127.0.0.1:{s.port}")
            conf = replace(conf, f"fota-{i + 1}:9000", f"127.0.0.1:{push[i]}")
        conf = replace(conf, "listen 8080;", f"listen 127.0.0.1:{lb_http};")
        conf = replace(conf, "listen 9000;", f"listen 127.0.0.1:{lb_push};")
        stack.enter_context(nginx(conf, tmp_path, lb_http))
        lb = f"http://127.0.0.1:{lb_http}"

        # CI publishes through the balancer in one command.
        pkg = tmp_path / "pkg.bin"
        data = package("001.000.002", filler=300_000)
        pkg.write_bytes(data)
        res = CliRunner().invoke(cli_main, ["release", "add", "--skip-preflight", "--server", lb, "--token", TOKEN, "--project-key",
                                            KEY, "--firmware-name", FW, "--create-product",
                                            "--version", "001.000.002", "--json",
                                            str(pkg)], env={"LUATOS_FOTA_DATA": None})
        assert res.exit_code == 0, res.output
        rel = json.loads(res.stdout)
        for s in srvs:
            eventually(lambda s=s: s.app.fota.catalog().releases, "release in every instance's catalogue")
        # Devices through the balancer: every answer is the package, whichever instance answers,
        # and both instances end up with it in their own cache (so both served).
        for n in range(6):
            got = check_in(lb_http, f"C8C2C68CDB{n:02X}")
            assert got.status == 200 and got.body == data
        for s in srvs:
            assert (s.data_dir / "blobs" / rel["sha256"][:2] / rel["sha256"]).is_file()
        part = check_in(lb_http, "C8C2C68CDB00", headers=b"Range: bytes=250000-\r\n")
        assert part.status == 206 and part.body == data[250000:]
        assert requests.get(f"{lb}/readyz", timeout=30).status_code == 200
        assert requests.get(f"{lb}/metrics", timeout=30).status_code == 403
        # The push channel through the balancer; the session is seen from any instance.
        with socket.create_connection(("127.0.0.1", lb_push), timeout=10) as dev:
            dev.sendall(json.dumps({"login": {"device": "C8C2C68CDBFF"}}).encode() + b"\n")
            assert json.loads(dev.makefile().readline()) == {"login": "ok"}

            def online() -> bool:
                out = CliRunner().invoke(cli_main, ["push", "--server", lb, "--token", TOKEN, "--online", "--json"])
                return out.exit_code == 0 and any(o["device"] == "C8C2C68CDBFF" for o in json.loads(out.stdout)["online"])
            eventually(online, "push session visible through the balancer")


def lb_conf(http_ports: list[int], push_ports: list[int], lb_http: int, lb_push: int) -> str:
    """deploy/nginx-lb.conf pointed at instances on loopback."""
    conf = (DEPLOY / "nginx-lb.conf").read_text()
    conf = replace(conf, "worker_processes auto;", "worker_processes 1;")
    for i, (h, p) in enumerate(zip(http_ports, push_ports, strict=True)):
        conf = replace(conf, f"fota-{i + 1}:8000", f"127.0.0.1:{h}")
        conf = replace(conf, f"fota-{i + 1}:9000", f"127.0.0.1:{p}")
    conf = replace(conf, "listen 8080;", f"listen 127.0.0.1:{lb_http};")
    return replace(conf, "listen 9000;", f"listen 127.0.0.1:{lb_push};")


def test_load_balancer_config_passes_nginx_t(tmp_path: Path) -> None:
    need(Path(NGINX).exists(), "nginx not installed: run make sysdeps")
    need(STREAM_MODULE.exists() or "--with-stream " in subprocess.run(
        [NGINX, "-V"], capture_output=True, text=True).stderr, "nginx stream module missing: run make sysdeps")
    path = nginx_conf_file(lb_conf([free_port(), free_port()], [free_port(), free_port()], free_port(),
                                   free_port()), tmp_path)
    res = subprocess.run([NGINX, "-t", "-p", str(path.parent), "-c", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "test is successful" in res.stderr, res.stderr


def test_load_balancer_holds_the_per_device_rate_for_all_instances(tmp_path: Path) -> None:
    """Two instances (one SQLite file) with their own device buckets off: the balancer alone
    holds one device to the server's default per-device rate (5/s, 100 at once), whichever
    instance would answer, and refuses in the server's JSON shape."""
    need(Path(NGINX).exists(), "nginx not installed: run make sysdeps")
    need(STREAM_MODULE.exists() or "--with-stream " in subprocess.run(
        [NGINX, "-V"], capture_output=True, text=True).stderr, "nginx stream module missing: run make sysdeps")
    lb_http, lb_push = free_port(), free_port()
    with contextlib.ExitStack() as stack:
        srvs = [stack.enter_context(running_server(tmp_path / "data", admin_token=TOKEN, device_rate=0.0))
                for _ in range(2)]
        srvs[0].store.products.add(KEY, FW)
        stack.enter_context(nginx(lb_conf([s.port for s in srvs], [free_port(), free_port()], lb_http, lb_push),
                                  tmp_path, lb_http))
        started = time.monotonic()
        got = [check_in(lb_http, "C8C2C68CDC01") for _ in range(130)]
        elapsed = time.monotonic() - started
        ok = [r for r in got if r.status == 304]
        refused = [r for r in got if r.status == 429]
        assert len(ok) + len(refused) == len(got), sorted({r.status for r in got})
        # 100 at once, then 5/s for the time the loop took.
        assert 100 <= len(ok) <= 100 + 5 * elapsed + 1, (len(ok), elapsed)
        assert refused[0].json()["code"] == 43 and refused[0].header("Retry-After") == "1"
        # Another device is not affected.
        assert check_in(lb_http, "C8C2C68CDC02").status == 304


def test_backup_script_while_serving_then_restore(tmp_path: Path) -> None:
    data = tmp_path / "data"
    dest = tmp_path / "backup"
    with running_server(data, admin_token=TOKEN) as srv:
        product = srv.store.products.add(KEY, FW)
        pkg = package("001.000.002")
        rel = srv.store.releases.add(pkg, product_id=product.id, version="001.000.002")
        srv.app.fota.invalidate()
        assert check_in(srv.port, "C8C2C68CDC01").status == 200
        first = subprocess.run(["sh", str(DEPLOY / "backup.sh"), str(data), str(dest)], capture_output=True,
                               text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        assert "1 new package(s)" in first.stdout
        time.sleep(1.1)  # next snapshot gets its own second
        again = subprocess.run(["sh", str(DEPLOY / "backup.sh"), str(data), str(dest)], capture_output=True,
                               text=True, timeout=120)
        assert again.returncode == 0 and "0 new package(s)" in again.stdout  # packages are never copied twice
    snaps = sorted(p for p in dest.iterdir() if p.name != "blobs")
    assert len(snaps) == 2
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(snaps[-1] / "fota.db", restored / "fota.db")
    shutil.copytree(dest / "blobs", restored / "blobs")
    with running_server(restored, admin_token=TOKEN) as srv:
        assert [r.id for r in srv.store.releases.all()] == [rel.id]
        got = check_in(srv.port, "C8C2C68CDC02")
        assert got.status == 200 and got.body == pkg
    bad = subprocess.run(["sh", str(DEPLOY / "backup.sh"), str(tmp_path / "nope"), str(dest)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 3 and "fota.db not found" in bad.stderr


def test_compose_and_image_agree_with_the_server() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    lb_conf = (DEPLOY / "nginx-lb.conf").read_text()
    fota = sorted(n for n in services if n.startswith("fota-"))
    assert len(fota) >= 2
    for name in fota:
        assert f"server {name}:8000" in lb_conf and f"server {name}:9000" in lb_conf
        assert services[name]["image"] == "luatos-fota"
        assert name in services["lb"]["depends_on"]
    # The environment names the server reads (shown by --help with their env vars).
    serve_help = CliRunner().invoke(cli_main, ["serve", "--help"]).output
    env = services[fota[0]]["environment"]
    for var in (k for k in env if k.startswith("LUATOS_FOTA_")):
        assert var in serve_help, f"compose sets {var}, which serve does not read"
    # The image's command line is one the server accepts.
    docker = (DEPLOY / "Dockerfile").read_text()
    entry = json.loads(docker.split("ENTRYPOINT", 1)[1].splitlines()[0])
    cmd = json.loads(docker.split("\nCMD", 1)[1].splitlines()[0])
    assert entry[:2] == ["luatos-fota", "serve"]
    ran = CliRunner().invoke(cli_main, [*entry[1:], *cmd, "--help"])
    assert ran.exit_code == 0, ran.output
    copied = [w for line in docker.splitlines() if line.startswith("COPY ") for w in line.split()[1:-1]]
    assert {"pyproject.toml", "host", "tools"} <= set(copied)
    assert all((DEPLOY.parent / src).exists() for src in copied)
