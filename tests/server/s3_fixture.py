"""A real S3-compatible server for tests: moto's standalone server on a free loopback port.

Why a real server and not an in-process mock: the object store is reached over HTTP by
botocore, with its timeouts, retries and error mapping; only a server on a socket shows what
happens when it answers, refuses, or is gone. Run ``python tests/server/s3_fixture.py`` to get
one for manual poking (Ctrl-C stops it).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luatos_common.ports import free_port

SETUP_HINT = "moto[server] is not installed: pip install -e '.[dev]'"
ACCESS_KEY = "fota-test-key"
SECRET_KEY = "fota-test-secret"
CREDENTIAL_ENV = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                  "AWS_DEFAULT_REGION": "us-east-1"}


def available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("moto", "flask", "boto3"))


@dataclass
class S3Server:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1")

    def new_bucket(self) -> str:
        name = f"fota-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def url(self, bucket: str, prefix: str = "packages") -> str:
        """The ``blob_url`` of ``bucket`` on this server."""
        return f"s3://{bucket}/{prefix}?endpoint={self.endpoint}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_server(timeout_s: float = 30.0) -> S3Server:
    """Start moto's S3 server on loopback and wait until it answers."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="moto-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **CREDENTIAL_ENV})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return S3Server(port, proc, log)
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"moto server did not listen on port {port} within {timeout_s:g} s")


if __name__ == "__main__":  # pragma: no cover
    srv = start_server()
    bucket = srv.new_bucket()
    print(f"S3 endpoint {srv.endpoint}; bucket {bucket}; blob URL {srv.url(bucket)}")
    print(" ".join(f"{k}={v}" for k, v in CREDENTIAL_ENV.items()))
    try:
        srv.proc.wait()
    except KeyboardInterrupt:
        srv.stop()
