"""A throwaway PostgreSQL cluster for tests: initdb into a temp dir, run on a free loopback port.

Why a real cluster: the multi-instance story (two servers, one database) only means something
against the real thing; SQLite-vs-PostgreSQL differences (locking, types, upserts) show up
only there. PostgreSQL refuses to run as root, so when the tests run as root (CI containers)
the server is started as the ``postgres`` user via ``runuser``.

Run ``python tests/server/pg_fixture.py`` to get a cluster for manual poking (Ctrl-C stops it).
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from luatos_common.ports import free_port

SETUP_HINT = "PostgreSQL not installed: run make sysdeps"
DEFAULT_BIN_DIRS = ("/usr/lib/postgresql/15/bin",)


def find_bin_dir() -> Path | None:
    """The directory holding initdb/pg_ctl/postgres (env PG_BIN_DIR wins), or None."""
    candidates = [os.environ.get("PG_BIN_DIR", "")]
    candidates += list(DEFAULT_BIN_DIRS)
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for cand in candidates:
        if cand and all((Path(cand) / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return Path(cand)
    which = shutil.which("pg_ctl")
    if which and shutil.which("initdb"):
        return Path(which).parent
    return None


class PgError(RuntimeError):
    """The cluster could not be set up; the message carries the tool's output."""


@dataclass
class PgCluster:
    bin_dir: Path
    base: Path
    port: int
    user: str = "postgres"
    _as_user: list[str] | None = None

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "sock"

    @property
    def log_file(self) -> Path:
        return self.base / "postgres.log"

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        """SQLAlchemy URL over TCP on 127.0.0.1 (trust auth, no password)."""
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> str:
        cmd = [*(self._as_user or []), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            log = ""
            if self.log_file.exists():
                log = self.log_file.read_text(errors="replace")[-2000:]
            raise PgError(
                f"{' '.join(args[:2])} failed with exit code {proc.returncode}:\n"
                f"{proc.stdout}{proc.stderr}\n{log}"
            )
        return proc.stdout

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg

        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: use letters, digits and underscores")
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.data_dir.exists():
            try:
                self._run(
                    str(self.bin_dir / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "immediate",
                    "-w",
                )
            except (PgError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.base, ignore_errors=True)


def start_cluster(bin_dir: Path | None = None, attempts: int = 3) -> PgCluster:
    """initdb + pg_ctl start on a free port; raise PgError with the tool output on failure."""
    bin_dir = bin_dir or find_bin_dir()
    if bin_dir is None:
        raise PgError(SETUP_HINT)
    as_user: list[str] | None = None
    base = Path(tempfile.mkdtemp(prefix="fota-pg-"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError as exc:
            shutil.rmtree(base, ignore_errors=True)
            raise PgError(
                "running as root but there is no 'postgres' user to run the server"
            ) from exc
        os.chown(base, pw.pw_uid, pw.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    cluster = PgCluster(bin_dir=bin_dir, base=base, port=0, _as_user=as_user)
    try:
        cluster._run(
            str(bin_dir / "initdb"),
            "-D",
            str(cluster.data_dir),
            "-U",
            cluster.user,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            timeout=120,
        )
        cluster._run("mkdir", "-p", str(cluster.socket_dir))
        last: Exception | None = None
        for _ in range(attempts):
            cluster.port = free_port()
            options = (
                f"-p {cluster.port} -k {cluster.socket_dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200 -c shared_buffers=32MB"
            )
            try:
                cluster._run(
                    str(bin_dir / "pg_ctl"),
                    "start",
                    "-D",
                    str(cluster.data_dir),
                    "-l",
                    str(cluster.log_file),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    timeout=90,
                )
                _wait_ready(cluster)
                atexit.register(cluster.stop)  # also when the session dies without teardown
                return cluster
            except (PgError, subprocess.TimeoutExpired) as exc:  # port taken meanwhile: retry
                last = exc
        raise PgError(f"could not start PostgreSQL after {attempts} attempts: {last}")
    except BaseException:
        cluster.stop()
        raise


def _wait_ready(cluster: PgCluster, timeout: float = 30) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(
                host="127.0.0.1",
                port=cluster.port,
                user=cluster.user,
                dbname="postgres",
                connect_timeout=5,
            ):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PgError(
                    f"PostgreSQL on port {cluster.port} did not accept connections: {exc}"
                ) from exc
            time.sleep(0.1)


if __name__ == "__main__":
    pg = start_cluster()
    print(pg.url(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        pg.stop()
