"""Crash safety of ``luatos-fota release add``: killed with SIGKILL at every step of the write
(and at arbitrary moments), the store holds the whole release or none of it, and nothing
references a partial blob."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from luatos_common.packages import build_ec_script
from luatos_fota.store import Store

STAGES_BEFORE_COMMIT = ["blob_partial", "blob_written", "blob_fsynced", "blob_renamed", "before_db", "in_transaction"]


@pytest.fixture(scope="module")
def big_package(tmp_path_factory) -> Path:
    rnd = random.Random(7)
    data = build_ec_script({"main.lua": b'PROJECT = "BIG"\nVERSION = "001.000.002"\n', "blob.bin": rnd.randbytes(24 << 20)})
    path = tmp_path_factory.mktemp("pkg") / "BIG_2001.001.002_LuatOS-SoC_EC618.bin"
    path.write_bytes(data)
    return path


def _cmd(data_dir: Path, pkg: Path) -> list[str]:
    return [sys.executable, "-m", "luatos_fota.cli", "release", "add", "--skip-preflight", "--data", str(data_dir),
            "--project-key", "K", "--firmware-name", "BIG_LuatOS-SoC_EC618", str(pkg)]


def _prepare(data_dir: Path) -> None:
    st = Store(data_dir)
    st.products.add("K", "BIG_LuatOS-SoC_EC618")
    st.close()


def _check_consistent(data_dir: Path) -> int:
    st = Store(data_dir)  # reopening also removes temp files of dead writers
    try:
        rels = st.releases.all()
        for r in rels:
            blob = st.blobs.path(r.sha256)
            assert blob.is_file(), f"release {r.id} references missing blob"
            assert blob.stat().st_size == r.size
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == r.sha256, "partial blob referenced"
        for a in st.releases.artifacts():
            assert st.blobs.exists(a.sha256)
        assert list((data_dir / "blobs" / "tmp").iterdir()) == [], "temp file of a dead writer left"
        assert len(rels) <= 1
        return len(rels)
    finally:
        st.close()


@pytest.mark.parametrize("stage", [*STAGES_BEFORE_COMMIT, "committed"])
def test_kill_at_each_step(tmp_path, big_package, stage):
    data_dir = tmp_path / "d"
    _prepare(data_dir)
    env = {**os.environ, "LUATOS_FOTA_CRASH_AT": stage}
    p = subprocess.run(_cmd(data_dir, big_package), env=env, capture_output=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()[-500:]
    n = _check_consistent(data_dir)
    assert n == (1 if stage == "committed" else 0)
    # and the operator can simply run the command again
    p2 = subprocess.run(_cmd(data_dir, big_package), capture_output=True, timeout=120)
    if stage == "committed":
        assert p2.returncode == 4 and b"already carries" in p2.stderr
    else:
        assert p2.returncode == 0, p2.stderr.decode()[-500:]
    assert _check_consistent(data_dir) == 1


@pytest.mark.slow
def test_kill_at_arbitrary_moments(tmp_path, big_package):
    rnd = random.Random(1234)
    for i in range(4):
        data_dir = tmp_path / f"d{i}"
        _prepare(data_dir)
        proc = subprocess.Popen(_cmd(data_dir, big_package), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.05, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        _check_consistent(data_dir)
