"""The database of a FOTA server: its engines, its transactions and its generation counters.

Why an object of its own: every repository (repo_*.py) needs the same three kinds of
connection (a read, an operator's write that may wait, a device-path write that gives up
quickly) and the same rule for telling caches they are stale; the store used to be all of
that plus seventy queries. SQLite in WAL mode with ``busy_timeout`` lets the CLI and a running
server share the file; PostgreSQL lets several instances share one database.

Every write that changes what a check-in may decide bumps a ``generation`` row inside the same
transaction (:meth:`Database.bump`), which is how other processes and instances learn that
their caches are stale; this process's listeners are told right after the commit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from . import schema as t
from .errors import StoreBusy

log = logging.getLogger("luatos_fota.db")

WRITE_BUSY_TIMEOUT_S = 30.0  # how long an operator or batch write waits for the database

_Q_GENERATION = sa.select(t.generation.c.value).where(t.generation.c.id == t.GEN_CATALOG)
_Q_GENERATIONS = sa.select(t.generation.c.id, t.generation.c.value)


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'fota.db').resolve()}"


def _make_engine(url: str, immediate: bool, busy_timeout_s: float = WRITE_BUSY_TIMEOUT_S) -> Engine:
    if url.startswith("sqlite"):
        eng = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout_s},
                               pool_size=8, max_overflow=16)

        @event.listens_for(eng, "connect")
        def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            # Up to ~70 pooled connections: 256 KB of page cache each, not SQLite's 2 MB, keeps the
            # server's memory bounded under a request flood (the OS caches the file anyway).
            cur.execute("PRAGMA cache_size=-256")
            cur.close()

        @event.listens_for(eng, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the lock up front so a concurrent writer makes us wait (busy_timeout)
            # instead of failing with SQLITE_BUSY on the read-to-write upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return eng
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Database:
    """Open (and migrate) the database at ``url`` (SQLite files get owner-only modes)."""

    def __init__(self, url: str, *, hot_busy_timeout_s: float = 2.0, data_dir: Path | None = None) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.read_engine = _make_engine(url, immediate=False)
        self.write_engine = _make_engine(url, immediate=True) if self.is_sqlite else self.read_engine
        # Writes made while a device waits for its answer give up after hot_busy_timeout_s (the
        # device gets 503 + Retry-After) instead of queueing behind a CLI or another instance.
        self.hot_busy_timeout_s = hot_busy_timeout_s
        self.busy_timeout_s = WRITE_BUSY_TIMEOUT_S
        self.hot_engine = (_make_engine(url, immediate=True, busy_timeout_s=hot_busy_timeout_s)
                           if self.is_sqlite else self.read_engine)
        # SQLite has one writer at a time. Threads of this process take turns on a Python lock
        # before BEGIN IMMEDIATE: a waiter then starts the moment the lock is free, where
        # SQLite's own busy handler would have slept (1, 2, 5 ... 100 ms steps; it made a
        # check-in download wait up to 400 ms at 16 concurrent devices). Other processes still
        # meet busy_timeout. Reentrant, so a (never intended) nested write fails as before.
        self.write_turn: threading.RLock | None = threading.RLock() if self.is_sqlite else None
        # Called (in the writing thread) after a commit that changed decision-relevant state, so
        # an app sharing this database drops its caches at once instead of after cache_ttl_s.
        self.listeners: list[Callable[[], None]] = []
        # Called before reads that must see buffered serve rows (stats, results): an app that
        # writes serves through its batched writer registers that writer's flush here.
        self.pending_writers: list[Callable[[], None]] = []
        with self.write_engine.begin() as c:
            if not self.is_sqlite:  # instances starting together: one migrates, the others wait
                c.execute(sa.text("SELECT pg_advisory_xact_lock(7306150)"))
            t.migrate(c)
        if self.is_sqlite and data_dir is not None:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.chmod(data_dir / f"fota.db{suffix}", 0o600)

    def close(self) -> None:
        for eng in {id(e): e for e in (self.read_engine, self.write_engine, self.hot_engine)}.values():
            eng.dispose()

    @contextmanager
    def turn(self, timeout_s: float) -> Iterator[None]:
        """This process's write turn (SQLite only; a no-op on PostgreSQL)."""
        lock = self.write_turn
        if lock is None:
            yield
            return
        if not lock.acquire(timeout=timeout_s):
            raise StoreBusy(f"database busy: no write turn within {timeout_s:g} s")
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction; after a commit that bumped the generation, listeners are told."""
        with self.turn(self.busy_timeout_s), self.write_engine.begin() as c:
            c.info.pop("bumped", None)
            yield c
            bumped = c.info.pop("bumped", False)
        if bumped:
            self._tell_listeners()

    @contextmanager
    def hot_tx(self) -> Iterator[Connection]:
        """A short write transaction for the device path: waits at most ``hot_busy_timeout_s``
        for a lock (SQLite busy_timeout, PostgreSQL lock_timeout), then raises."""
        with self.turn(self.hot_busy_timeout_s), self.hot_engine.begin() as c:
            c.info.pop("bumped", None)
            if not self.is_sqlite:
                c.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(self.hot_busy_timeout_s * 1000)}ms'")
            yield c
            bumped = c.info.pop("bumped", False)
        if bumped:
            self._tell_listeners()

    def _tell_listeners(self) -> None:
        for fn in list(self.listeners):
            fn()

    @contextmanager
    def ro(self) -> Iterator[Connection]:
        with self.read_engine.connect() as c:
            yield c

    def ping(self) -> None:
        """One round trip to the database (``/readyz``): raises when it cannot be reached."""
        with self.ro() as c:
            c.execute(sa.text("SELECT 1")).scalar()

    def drain(self) -> None:
        """Make buffered rows of this process (serves, audit) durable before reading them."""
        for fn in list(self.pending_writers):
            try:
                fn()
            except Exception:
                log.exception("could not write buffered rows before a read")

    @staticmethod
    def bump(c: Connection, *, devices_only: bool = False) -> None:
        """Tell every instance its caches are stale: the catalogue, or (``devices_only``, for
        bans, pins and registrations) just the cached device rows."""
        c.info["bumped"] = True
        gid = t.GEN_DEVICES if devices_only else t.GEN_CATALOG
        c.execute(t.generation.update().where(t.generation.c.id == gid)
                  .values(value=t.generation.c.value + 1))

    def generation(self) -> int:
        with self.ro() as c:
            return int(c.execute(_Q_GENERATION).scalar_one())

    def generations(self) -> tuple[int, int]:
        """(catalogue generation, device generation) in one round trip."""
        with self.ro() as c:
            vals = dict(c.execute(_Q_GENERATIONS).fetchall())
        return int(vals[t.GEN_CATALOG]), int(vals.get(t.GEN_DEVICES, 0))
