"""The ``luatos-fota`` CLI: store commands, --json output, exit codes, and that it writes to a
data directory a running server is using (the server sees the change)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from luatos_common.ports import free_port
from luatos_fota.cli import main
from luatos_fota.testing import device_request, running_server, script_package

FW = "CLI_LuatOS-SoC_Air8101"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def init(path: Path) -> str:
    """A data directory as `luatos-fota init` makes it (only serve/init create one)."""
    assert run("init", "--data", str(path))[0] == 0
    return str(path)


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    p = tmp_path / "pkg.bin"
    p.write_bytes(script_package(FW, "001.000.002", "-- cli"))
    return p


def test_product_and_release_commands(tmp_path, pkg):
    d = init(tmp_path / "data")
    assert run("product", "add", "--data", d, "--project-key", "K", "--firmware-name", FW)[0] == 0
    code, out, _ = run("product", "list", "--data", d, "--json")
    assert code == 0 and json.loads(out)[0]["firmware_name"] == FW
    code, out, _ = run("release", "add", "--skip-preflight", "--data", d, "--project-key", "K", "--version", "001.000.002",
                       "--percent", "25", "--json", str(pkg))
    assert code == 0
    rel = json.loads(out)
    assert rel["target_mode"] == "percent" and rel["percent"] == 25
    assert run("release", "pause", "--data", d, str(rel["id"]))[0] == 0
    code, out, _ = run("release", "list", "--data", d, "--json")
    assert json.loads(out)[0]["enabled"] is False
    assert run("release", "enable", "--data", d, str(rel["id"]))[0] == 0
    assert run("release", "target", "--data", d, "--devices", "AABBCCDDEEFF", str(rel["id"]))[0] == 0
    code, out, _ = run("release", "list", "--data", d)
    assert "devices 1" in out and "enabled" in out
    code, out, _ = run("release", "stats", "--data", d, "--json")
    assert json.loads(out)[0]["targeted"] == 1


def test_release_add_creates_product_and_refusals_exit_4(tmp_path, pkg):
    d = init(tmp_path / "data")
    code, _, err = run("release", "add", "--skip-preflight", "--data", d, "--project-key", "K", "--firmware-name", FW,
                       "--version", "001.000.003", "--create-product", str(pkg))
    assert code == 4 and "sets VERSION = '001.000.002'" in err
    assert run("product", "list", "--data", d, "--json")[1].strip() == "[]"  # refused: no trace
    code, _, err = run("release", "add", "--skip-preflight", "--data", d, "--project-key", "K", "--firmware-name", FW,
                       "--version", "001.000.002", str(pkg))
    assert code == 3 and "no product K / CLI_LuatOS-SoC_Air8101" in err and "--create-product" in err
    assert run("product", "list", "--data", d, "--json")[1].strip() == "[]"  # nothing created
    code, _, err = run("release", "add", "--skip-preflight", "--data", d, "--project-key", "K",
                       "--firmware-name", FW, "--version", "001.000.002", "--create-product", str(pkg))
    assert code == 0 and "created product" in err
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"")
    code, _, err = run("release", "add", "--skip-preflight", "--data", d, "--project-key", "K", "--version", "001.000.003", str(bad))
    assert code == 4 and "empty file" in err
    assert run("release", "add", "--skip-preflight", "--data", d, "--project-key", "K", "--version", "001.000.002", str(pkg))[0] == 4


def test_not_found_exit_3_and_usage_exit_2(tmp_path):
    d = init(tmp_path / "data")
    assert run("device", "ban", "--data", d, "C8C2C68CD602")[0] == 3
    assert run("release", "pause", "--data", d, "42")[0] == 3
    assert run("release", "target", "--data", d, "1")[0] == 2


def test_cli_writes_while_server_runs_and_device_commands(tmp_path, pkg):
    d = tmp_path / "data"
    with running_server(d, cache_ttl_s=0) as srv:
        assert run("release", "add", "--skip-preflight", "--data", str(d), "--project-key", "K", "--firmware-name", FW,
                   "--version", "001.000.002", "--create-product", str(pkg))[0] == 0
        check = f"/api/site/firmware_upgrade?mac=C8C2C68CD602&project_key=K&firmware_name={FW}&version=2001.001.000"
        assert device_request(srv.port, check).status == 200  # the running server saw the CLI's release
        code, out, _ = run("device", "list", "--data", str(d), "--json")
        assert json.loads(out)[0]["device_key"] == "C8C2C68CD602"
        assert run("device", "ban", "--data", str(d), "--reason", "lost", "c8:c2:c6:8c:d6:02")[0] == 0
        assert device_request(srv.port, check).json()["code"] == 21
        assert run("device", "unban", "--data", str(d), "C8C2C68CD602")[0] == 0
        assert run("device", "pin", "--data", str(d), "C8C2C68CD602", "1")[0] == 0
        code, out, _ = run("device", "list", "--data", str(d), "--banned", "--json")
        assert json.loads(out) == []
        srv.flush()
        code, out, _ = run("audit", "--data", str(d), "--device", "C8C2C68CD602", "--json")
        events = [a["event"] for a in json.loads(out)]
        assert "banned" in events and "serve" in events and "pinned" in events
        code, out, _ = run("audit", "--data", str(d), "--device", "C8C2C68CD602")
        assert code == 0 and "serve" in out


def test_push_command_needs_server(tmp_path):
    code, _, err = run("push", "--server", "http://127.0.0.1:9", "--token", "x", "--release-id", "1")
    assert code == 5 and "cannot reach" in err


def test_push_command_against_running_server(tmp_path):
    d = tmp_path / "data"
    with running_server(d, admin_token="tok") as srv:
        code, out, err = run("push", "--server", srv.base_url, "--token", "tok", "--online")
        assert code == 5 and "push channel not running" in err
        code, out, err = run("push", "--server", srv.base_url, "--token", "bad", "--online")
        assert code == 5 and "401" in err


def test_audit_prune(tmp_path):
    d = init(tmp_path / "data")
    assert run("product", "add", "--data", d, "--project-key", "K", "--firmware-name", FW)[0] == 0
    code, out, _ = run("audit-prune", "--data", d, "--older-than", "0s", "--json")
    assert code == 0 and json.loads(out)["deleted"] == 1
    code, out, _ = run("audit", "--data", d, "--json")
    assert [a["event"] for a in json.loads(out)] == ["audit_pruned"]
    assert run("audit-prune", "--data", d, "--older-than", "soon")[0] == 2


def test_devices_option_is_repeatable_and_comma_separated(tmp_path, pkg):
    d = init(tmp_path / "data")
    code, out, _ = run("release", "add", "--skip-preflight", "--data", d, "--project-key", "K", "--firmware-name", FW,
                       "--version", "001.000.002", "--devices", "A1,A2", "--devices", "c8:c2:c6:8c:d6:02",
                       "--create-product", "--json", str(pkg))
    assert code == 0 and json.loads(out)["devices"] == ["A1", "A2", "C8C2C68CD602"]


def test_serve_subprocess_flushes_audit_on_sigterm(tmp_path, pkg):
    """The real `luatos-fota serve`: check-ins are audited even when the buffer had no time to
    flush on its own, because SIGTERM runs the lifespan shutdown."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    from luatos_fota.store import Store

    d = Path(init(tmp_path / "data"))
    assert run("product", "add", "--data", str(d), "--project-key", "K", "--firmware-name", FW)[0] == 0
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "luatos_fota.cli", "serve", "--data", str(d), "--host", "127.0.0.1",
                             "--port", str(port), "--admin-token", "t"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-800:]
                time.sleep(0.05)
        check = f"/api/site/firmware_upgrade?mac=C8C2C68CD6{{:02X}}&project_key=K&firmware_name={FW}&version=2001.001.000"
        for i in range(10):
            assert device_request(port, check.format(i)).status == 304
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    # uvicorn re-raises the signal after its clean shutdown, so -SIGTERM is the normal end
    assert proc.returncode in (0, -signal.SIGTERM), out[-800:]
    assert "Application shutdown complete" in out
    st = Store(d)
    assert len(st.audit.query(event_="checkin")) == 10
    st.close()


def test_release_archive_retires_it_for_good(tmp_path, pkg):
    d = init(tmp_path / "data")
    assert run("product", "add", "--data", d, "--project-key", "K", "--firmware-name", FW)[0] == 0
    code, out, _ = run("release", "add", "--skip-preflight", "--data", d, "--project-key", "K",
                       "--version", "001.000.002", "--json", str(pkg))
    rid = str(json.loads(out)["id"])
    with running_server(Path(d), cache_ttl_s=0) as srv:
        check = f"/api/site/firmware_upgrade?mac=C8C2C68CD602&project_key=K&firmware_name={FW}&version=2001.001.000"
        assert device_request(srv.port, check).status == 200
        code, out, _ = run("release", "archive", "--data", d, rid)
        assert code == 0 and out.strip() == f"release {rid} archived"
        assert device_request(srv.port, check).status == 304  # the running server stopped serving it
    code, out, _ = run("release", "list", "--data", d)
    assert "archived" in out
    code, _, err = run("release", "enable", "--data", d, rid)
    assert code == 4 and "archived" in err
    code, out, _ = run("audit", "--data", d, "--event", "release_archived", "--json")
    assert [a["release_id"] for a in json.loads(out)] == [int(rid)]
