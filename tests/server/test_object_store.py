"""Packages in an S3-compatible bucket (a real moto server on loopback) with a local cache.

What must hold: instances that share only the database and the bucket serve every package,
including Range resumes, from their own disk after the first fetch; an upload while the bucket
is unreachable fails with a message naming the store and records nothing; packages already
cached keep being served while the bucket is down; an object whose content does not match its
name is never served.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from luatos_common.packages import build_air8101_ota
from luatos_fota.blobs import BlobStoreUnavailable, open_blobs
from luatos_fota.cli import main as cli_main
from luatos_fota.objectstore import S3BlobStore
from luatos_fota.testing import RunningServer, device_request, running_server

KEY = "s3_project_key"
FW = "S3DEMO_LuatOS-SoC_Air8101"
MAC = "C8C2C68C5301"
TOKEN = "s3-test-token"


def package(tag: str, filler: int = 0) -> bytes:
    files = {"main.lua": f"PROJECT='S3DEMO'\nVERSION='{tag}'\n".encode()}
    if filler:
        files["pad.bin"] = bytes(range(256)) * (filler // 256)
    return build_air8101_ota(files)


def upload(srv: RunningServer, product_id: int, version: str, data: bytes) -> requests.Response:
    return requests.post(f"{srv.base_url}/admin/api/releases", headers={"Authorization": f"Bearer {TOKEN}"},
                         data={"product_id": str(product_id), "version": version, "skip_preflight": "true"},
                         files={"file": ("pkg.bin", data, "application/octet-stream")}, timeout=60)


def check_in(srv: RunningServer, version: str, mac: str = MAC, headers: bytes = b"") -> Any:
    return device_request(srv.port, f"/api/site/firmware_upgrade?mac={mac}&project_key={KEY}"
                          f"&firmware_name={FW}&version={version}", extra_headers=headers)


def cached_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "blobs").glob("??/*"))


@pytest.mark.postgres
def test_upload_on_a_download_and_resume_on_b(tmp_path: Path, pg_url: str, s3_url: str,
                                                s3_server: Any) -> None:
    opts: dict[str, Any] = {"db_url": pg_url, "admin_token": TOKEN, "blob_url": s3_url}
    with running_server(tmp_path / "a", **opts) as a, running_server(tmp_path / "b", **opts) as b:
        product = a.store.products.add(KEY, FW)
        data = package("001.000.002", filler=200_000)
        rel = upload(a, product.id, "001.000.002", data).json()
        sha = rel["sha256"]
        bucket = s3_url.split("/")[2]
        obj = s3_server.client().get_object(Bucket=bucket, Key=f"packages/{sha[:2]}/{sha}")
        assert obj["Body"].read() == data
        assert cached_files(tmp_path / "b") == []  # nothing shared on disk
        # A device starts the download on A and, after a dropped connection, resumes it on B,
        # which has never seen the package: B fetches it from the bucket and serves the rest.
        first = check_in(a, "2001.001.000", headers=b"Range: bytes=0-99999\r\n")
        assert first.status == 206 and first.body == data[:100000]
        rest = check_in(b, "2001.001.000", headers=b"Range: bytes=100000-\r\n")
        assert rest.status == 206 and first.body + rest.body == data
        assert rest.header("ETag") == f'"{sha}"'
        assert cached_files(tmp_path / "b") == [sha]
        # From now on B answers from its own disk: the whole package, and by the download URL.
        served = check_in(b, "2001.001.000", mac="C8C2C68C5399")
        assert served.status == 200 and served.body == data
        part = device_request(b.port, rel["download_path"],
                              extra_headers=f"Authorization: Bearer {TOKEN}\r\nRange: bytes=5-9\r\n".encode())
        assert part.status == 206 and part.body == data[5:10]
        assert part.header("Content-Range") == f"bytes 5-9/{len(data)}"


def test_bucket_unreachable_uploads_fail_cached_downloads_work(tmp_path: Path, s3_env: None,
                                                              own_s3_server: Any) -> None:
    own = own_s3_server  # this test stops it
    url = own.url(own.new_bucket())
    db = f"sqlite:///{tmp_path / 'fota.db'}"
    opts: dict[str, Any] = {"db_url": db, "admin_token": TOKEN, "blob_url": url}
    with (running_server(tmp_path / "a", **opts) as a,
          running_server(tmp_path / "b", **opts) as b):
        product = a.store.products.add(KEY, FW)
        first = package("001.000.002")
        rel = upload(a, product.id, "001.000.002", first).json()
        assert check_in(a, "2001.001.000").status == 200  # cached on A (upload and serve)
        own.stop()
        refused = upload(a, product.id, "001.000.003", package("001.000.003"))
        assert refused.status_code == 503, refused.text
        msg = refused.json()["msg"]
        assert url.split("?")[0] in msg and "nothing was recorded" in msg
        assert [r.id for r in a.store.releases.all()] == [rel["id"]]
        # Cached on A: served in full and resumed, bucket or not.
        again = check_in(a, "2001.001.000", mac="C8C2C68C5302")
        assert again.status == 200 and again.body == first
        part = device_request(a.port, rel["download_path"],
                              extra_headers=f"Authorization: Bearer {TOKEN}\r\nRange: bytes=10-\r\n".encode())
        assert part.status == 206 and part.body == first[10:]
        # B never fetched it: devices are told to come back, never handed a wrong answer.
        cold = check_in(b, "2001.001.000", mac="C8C2C68C5303")
        assert cold.status == 503 and cold.header("Retry-After")
        # The CLI on the same store says what is wrong, without a traceback.
        pkg = tmp_path / "pkg.bin"
        pkg.write_bytes(package("001.000.004"))
        res = CliRunner().invoke(cli_main, ["release", "add", "--data", str(tmp_path / "a"), "--db", db,
                                            "--product-id", str(product.id), "--version", "001.000.004",
                                            str(pkg)], env={"LUATOS_FOTA_BLOBS": url})
        assert res.exit_code == 5, res.output
        assert "object store s3://" in res.output and "Traceback" not in res.output


def test_fetched_object_must_match_its_digest(tmp_path: Path, s3_url: str, s3_server: Any) -> None:
    store = open_blobs(tmp_path / "blobs", s3_url)
    assert isinstance(store, S3BlobStore)
    good = b"a package" * 100
    sha = store.put(good)
    assert store.put(good) == sha  # idempotent
    # Someone overwrote the object: a fresh instance must refuse it, not serve it.
    s3_server.client().put_object(Bucket=store.bucket, Key=store.key(sha), Body=b"something else")
    fresh = open_blobs(tmp_path / "other", s3_url)
    with pytest.raises(ValueError, match="holds content with sha256"):
        fresh.read(sha)
    assert not fresh.path(sha).exists()
    with pytest.raises(FileNotFoundError):
        fresh.read("0" * 64)
    assert store.read(sha) == good  # the first instance's cache still holds the real content


def test_gc_removes_only_unreferenced_old_objects(tmp_path: Path, s3_url: str) -> None:
    store = open_blobs(tmp_path / "blobs", s3_url)
    keep, drop = store.put(b"kept" * 10), store.put(b"dropped" * 10)
    assert store.all_digests() == sorted([keep, drop])
    assert store.gc([keep], min_age_s=3600) == []  # both too young
    assert store.gc([keep], min_age_s=0) == [drop]
    assert store.all_digests() == [keep]
    assert store.exists(keep) and not store.exists(drop)


def test_blob_urls_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown option"):
        open_blobs(tmp_path, "s3://bucket/p?endpiont=http://x")
    with pytest.raises(ValueError, match="addressing"):
        open_blobs(tmp_path, "s3://bucket/p?addressing=sideways")
    with pytest.raises(ValueError, match="expected s3://"):
        open_blobs(tmp_path, "ftp://bucket")
    local = open_blobs(tmp_path / "default", f"file:{tmp_path / 'elsewhere'}")
    sha = local.put(b"x")
    assert local.path(sha) == tmp_path / "elsewhere" / sha[:2] / sha
    assert open_blobs(tmp_path / "default", None).path(sha) == tmp_path / "default" / sha[:2] / sha


def test_unreachable_endpoint_is_a_clear_error(tmp_path: Path, s3_env: None) -> None:
    with contextlib.closing(__import__("socket").socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    store = open_blobs(tmp_path, f"s3://bucket/p?endpoint=http://127.0.0.1:{port}")
    with pytest.raises(BlobStoreUnavailable, match=f"s3://bucket/p at http://127.0.0.1:{port}"):
        store.put(b"x")
    with pytest.raises(BlobStoreUnavailable):
        store.check()


def test_serve_blobs_flag_puts_uploads_in_the_bucket(tmp_path: Path, s3_url: str, s3_server: Any) -> None:
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("luatos-fota")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "luatos_fota.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUATOS_FOTA_")}
    proc = subprocess.Popen([*cmd, "serve", "--data", str(tmp_path / "d"), "--host", "127.0.0.1", "--port",
                             str(port), "--admin-token", TOKEN, "--blobs", s3_url],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        pkg = tmp_path / "pkg.bin"
        data = package("001.000.002")
        pkg.write_bytes(data)
        res = CliRunner().invoke(cli_main, ["release", "add", "--skip-preflight", "--create-product",
                                            "--server", f"http://127.0.0.1:{port}", "--token",
                                            TOKEN, "--project-key", KEY, "--firmware-name", FW, "--version",
                                            "001.000.002", "--json", str(pkg)], env={"LUATOS_FOTA_DATA": None})
        assert res.exit_code == 0, res.output
        sha = json.loads(res.stdout)["sha256"]
        bucket = s3_url.split("/")[2]
        assert s3_server.client().get_object(Bucket=bucket, Key=f"packages/{sha[:2]}/{sha}")["Body"].read() == data
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert f"packages {s3_url.split('?')[0]}" in out  # the startup line names the package store
