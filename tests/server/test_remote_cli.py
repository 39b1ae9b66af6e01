"""``luatos-fota`` admin commands against a real server on loopback (``--server``/``--token``,
environment, profiles): the same commands, the same answers and exit codes as with ``--data``."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from luatos_common.packages import build_air8101_ota, vendor_filename
from luatos_fota.cli import main
from luatos_fota.remote import RemoteStore, Target
from luatos_fota.testing import RunningServer, device_request, running_server

FW = "REM_LuatOS-SoC_Air8101"
TOKEN = "remote-cli-token"
MAC = "C8C2C68CAA01"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    clean = {k: None for k in ("LUATOS_FOTA_DATA", "LUATOS_FOTA_SERVER", "LUATOS_FOTA_TOKEN",
                               "LUATOS_FOTA_PROFILE", "LUATOS_FOTA_CONFIG")}
    r = CliRunner().invoke(main, list(args), env={**clean, **(env or {})}, catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def package(tag: str, filler: int = 0) -> bytes:
    files = {"main.lua": f"PROJECT='REM'\nVERSION='{tag}'\n".encode()}
    if filler:
        files["pad.bin"] = os.urandom(filler)
    return build_air8101_ota(files)


@pytest.fixture
def srv(tmp_path: Path) -> Any:
    with running_server(tmp_path / "srv", admin_token=TOKEN) as s:
        yield s


def remote(srv: RunningServer) -> list[str]:
    return ["--server", srv.base_url, "--token", TOKEN]


def test_every_admin_command_runs_against_a_server(srv: RunningServer, tmp_path: Path) -> None:
    pkg = tmp_path / "pkg.bin"
    pkg.write_bytes(package("001.000.002"))
    r = remote(srv)
    # CI publishes in one command: the product is created on the way (asked for explicitly).
    code, out, err = run("release", "add", "--skip-preflight", *r, "--project-key", "K", "--firmware-name", FW,
                         "--create-product", "--version", "001.000.002", "--percent", "50",
                         "--json", str(pkg))
    assert code == 0, err
    rel = json.loads(out)
    assert rel["target_mode"] == "percent" and rel["percent"] == 50
    assert srv.store.releases.get(rel["id"]).sha256 == rel["sha256"]  # it is in the server's store
    code, out, _ = run("product", "list", *r, "--json")
    assert [p["firmware_name"] for p in json.loads(out)] == [FW]
    assert run("product", "add", *r, "--project-key", "K2", "--firmware-name", "X_LuatOS-SoC_Air8101")[0] == 0
    assert run("release", "pause", *r, str(rel["id"]))[0] == 0
    assert srv.store.releases.get(rel["id"]).enabled is False
    assert run("release", "enable", *r, str(rel["id"]))[0] == 0
    assert run("release", "target", *r, "--all", str(rel["id"]))[0] == 0
    assert srv.store.releases.get(rel["id"]).target_mode == "all"
    code, out, _ = run("release", "list", *r)
    assert code == 0 and "001.000.002" in out and "enabled" in out
    got = device_request(srv.port, f"/api/site/firmware_upgrade?mac={MAC}&project_key=K&firmware_name={FW}"
                                   "&version=2001.001.000")
    assert got.status == 200
    code, out, _ = run("release", "stats", *r, "--json")
    assert json.loads(out)[0]["served"] == 1
    code, out, _ = run("device", "list", *r, "--json")
    assert [d["device_key"] for d in json.loads(out)] == [MAC]
    code, out, _ = run("device", "show", *r, MAC, "--json")
    assert code == 0 and json.loads(out)["reported_version"] == "2001.001.000"
    code, out, _ = run("device", "show", *r, MAC)  # human output by default
    assert code == 0 and re.search(r"^reported version +2001\.001\.000$", out, re.M), out
    assert run("device", "ban", *r, "--reason", "bench unit", MAC)[0] == 0
    assert srv.store.devices.get(MAC).ban_code == 21
    code, out, _ = run("device", "list", *r, "--banned")
    assert MAC in out and "bench unit" in out
    assert run("device", "unban", *r, MAC)[0] == 0
    assert run("device", "pin", *r, MAC, str(rel["id"]))[0] == 0
    assert srv.store.devices.get(MAC).pinned_release_id == rel["id"]
    assert run("device", "pin", *r, MAC, "none")[0] == 0
    code, out, _ = run("audit", *r, "--device", MAC, "--json")
    events = [a["event"] for a in json.loads(out)]
    assert {"serve", "banned", "unbanned", "pinned"} <= set(events)
    code, out, _ = run("audit", *r, "--event", "serve")
    assert code == 0 and MAC in out
    code, out, _ = run("audit-prune", *r, "--older-than", "30d", "--json")
    assert code == 0 and json.loads(out) == {"deleted": 0}
    code, out, _ = run("blobs", "gc", *r, "--json")
    assert code == 0 and json.loads(out) == {"removed": []}


def test_remote_and_local_answer_alike(srv: RunningServer, tmp_path: Path) -> None:
    pkg = tmp_path / "pkg.bin"
    pkg.write_bytes(package("001.000.002"))
    assert run("release", "add", "--skip-preflight", *remote(srv), "--project-key", "K", "--firmware-name", FW,
               "--create-product", "--version", "001.000.002", str(pkg))[0] == 0
    local = ["--data", str(srv.data_dir)]
    for cmd in (["product", "list"], ["release", "list"], ["release", "stats"]):
        code_r, out_r, _ = run(*cmd, *remote(srv), "--json")
        code_l, out_l, _ = run(*cmd, *local, "--json")
        assert code_r == code_l == 0
        assert json.loads(out_r) == json.loads(out_l), cmd


def test_refusals_keep_their_exit_codes(srv: RunningServer, tmp_path: Path) -> None:
    r = remote(srv)
    code, _, err = run("release", "pause", *r, "999")
    assert code == 3 and "999" in err
    code, _, err = run("device", "show", *r, "NOSUCHDEVICE")
    assert code == 3
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a package at all")
    assert run("product", "add", *r, "--project-key", "K", "--firmware-name", FW)[0] == 0
    code, _, err = run("release", "add", "--skip-preflight", *r, "--project-key", "K", "--version", "001.000.002", str(bad))
    assert code == 4 and "refused (file)" in err
    pkg = tmp_path / "pkg.bin"
    pkg.write_bytes(package("001.000.002"))
    assert run("release", "add", "--skip-preflight", *r, "--project-key", "K", "--version", "001.000.002", str(pkg))[0] == 0
    code, _, err = run("release", "add", "--skip-preflight", *r, "--project-key", "K", "--version", "001.000.002", str(pkg))
    assert code == 4 and "refused" in err  # a duplicate: 409 from the server
    code, _, err = run("release", "target", *r, "--percent", "50", "--devices", "A", "1")
    assert code == 2


def test_server_problems_exit_5_with_the_reason(srv: RunningServer) -> None:
    code, _, err = run("product", "list", "--server", srv.base_url, "--token", "wrong")
    assert code == 5 and "refused the admin token" in err and "Traceback" not in err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run("release", "list", "--server", f"http://127.0.0.1:{port}", "--token", "t")
    assert code == 5 and "cannot reach" in err
    code, _, err = run("product", "list", "--server", srv.base_url + "/dashboard", "--token", TOKEN)
    assert code == 5


def test_choosing_the_store(srv: RunningServer, tmp_path: Path) -> None:
    code, _, err = run("product", "list")
    assert code == 2 and "--data DIR" in err and "--server URL" in err
    code, _, err = run("product", "list", "--data", str(tmp_path / "x"), "--server", srv.base_url, "--token", "t")
    assert code == 2 and "not both" in err
    code, _, err = run("product", "list", "--server", srv.base_url)
    assert code == 2 and "no admin token" in err
    code, _, err = run("product", "list", "--server", "fota.example.com", "--token", "t")
    assert code == 2 and "http://" in err
    # From the environment: the server (CI style); --data in the environment wins over it.
    srv.store.products.add("ENVK", FW)
    code, out, _ = run("product", "list", "--json",
                       env={"LUATOS_FOTA_SERVER": srv.base_url, "LUATOS_FOTA_TOKEN": TOKEN})
    assert code == 0 and json.loads(out)[0]["project_key"] == "ENVK"
    assert run("init", "--data", str(tmp_path / "empty"))[0] == 0  # only serve/init create one
    code, out, _ = run("product", "list", "--json", env={"LUATOS_FOTA_SERVER": srv.base_url,
                                                         "LUATOS_FOTA_TOKEN": TOKEN,
                                                         "LUATOS_FOTA_DATA": str(tmp_path / "empty")})
    assert code == 0 and json.loads(out) == []


def test_profiles(srv: RunningServer, tmp_path: Path) -> None:
    tok = tmp_path / "token"
    tok.write_text(TOKEN + "\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[profile.ci]\nserver = "{srv.base_url}"\ntoken_file = "{tok}"\n'
                   '[profile.broken]\nserver = "http://127.0.0.1:1"\ntokn = "x"\n')
    srv.store.products.add("PROFK", FW)
    env = {"LUATOS_FOTA_CONFIG": str(cfg)}
    code, out, err = run("product", "list", "--profile", "ci", "--json", env=env)
    assert code == 0, err
    assert json.loads(out)[0]["project_key"] == "PROFK"
    code, _, err = run("product", "list", "--profile", "broken", env=env)
    assert code == 2 and "unknown key(s) tokn" in err and str(cfg) in err
    code, _, err = run("product", "list", "--profile", "nope", env=env)
    assert code == 2 and "no [profile.nope]" in err and "ci" in err
    code, _, err = run("product", "list", "--profile", "ci", env={"LUATOS_FOTA_CONFIG": str(tmp_path / "none")})
    assert code == 2 and "no config file" in err
    # push takes the profile too: it reaches this server with the token (no push channel runs
    # here, so the server says so; a wrong token would be a 401).
    code, out, err = run("push", "--profile", "ci", "--online", "--json", env=env)
    assert code == 5 and "push channel not running" in err, err


def test_upload_reports_progress_to_the_end(srv: RunningServer) -> None:
    seen: list[tuple[int, int]] = []
    st = RemoteStore(Target(srv.base_url, TOKEN), progress=lambda sent, total: seen.append((sent, total)))
    p = st.products.add("PK", FW)
    data = package("001.000.002", filler=3 << 20)
    rel = st.releases.add(data, product_id=p.id, version="001.000.002", filename="big.bin")
    assert rel.size == len(data)
    sents = [s for s, _ in seen]
    assert len(seen) > 10 and sents == sorted(sents)
    assert seen[-1][0] == seen[-1][1] > len(data)  # the whole multipart body went out
    assert srv.store.blobs.read(rel.sha256) == data


def test_ci_publish_is_one_command(srv: RunningServer, tmp_path: Path) -> None:
    pkg = tmp_path / vendor_filename("REM", "V2001", "001.000.003", "Air8101")
    pkg.write_bytes(package("001.000.003"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUATOS_FOTA_")}
    env.update(LUATOS_FOTA_SERVER=srv.base_url, LUATOS_FOTA_TOKEN=TOKEN)
    exe = Path(sys.executable).with_name("luatos-fota")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "luatos_fota.cli"]
    res = subprocess.run([*cmd, "release", "add", "--skip-preflight", "--project-key", "K", "--firmware-name", FW,
                          "--create-product", "--json", str(pkg)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rel = json.loads(res.stdout)
    assert rel["script_version"] == "001.000.003"  # taken from the Luatools file name
    assert [r.id for r in srv.store.releases.all()] == [rel["id"]]


def test_progress_bar_shows_only_for_large_uploads(capfd: pytest.CaptureFixture[str]) -> None:
    from luatos_fota.remote import ProgressBar

    small = ProgressBar("uploading small.bin", min_bytes=1000)
    small(50, 100)
    small(100, 100)
    big = ProgressBar("uploading big.bin", min_bytes=1000)
    big(1000, 4000)
    big(4000, 4000)
    err = capfd.readouterr().err
    assert "small.bin" not in err
    assert "big.bin" in err and "4.0/4.0 kB" in err
