"""Serves: each package handed to a device (``fota_sn``), the loop guard's count of them,
and the device's report of how the upgrade went.

The count-then-record of the device path is the hottest write the server makes: concurrent
calls share one transaction (group commit, groupcommit.py) and, on SQLite, run on the DBAPI
connection. The rule itself is :func:`_decide_serves`, pure and tested on its own.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from . import schema as t
from .db import Database
from .errors import NotFound, StoreBusy
from .groupcommit import BatchBusy, GroupCommit
from .records import FotaResult, Serve
from .repo_audit import audit_change

_Q_INSERT_SERVE = t.serves.insert()
# The hot serve path on SQLite runs these on the DBAPI connection (see ServesRepo._batch_sqlite).
_SQL_SERVE_LOAD = ("SELECT coalesce(sum(CASE WHEN bytes IS NULL THEN 1 ELSE 0 END), 0), "
                   "coalesce(sum(bytes), 0) FROM serves WHERE device_id = ? AND release_id = ? "
                   "AND served_at >= ?")
_SQL_INSERT_SERVE = ("INSERT INTO serves (fota_sn, device_id, release_id, channel, from_version, served_at, "
                     "bytes) VALUES (?, ?, ?, ?, ?, ?, ?)")  # the columns of _SERVE_COLUMNS, in order
_Q_DEVICE_SERVE_LOCK = sa.text("SELECT pg_advisory_xact_lock(7306151, :d)")
_Q_COUNT_SERVES = sa.select(sa.func.count()).select_from(t.serves).where(
    t.serves.c.device_id == sa.bindparam("d"), t.serves.c.release_id == sa.bindparam("r"),
    t.serves.c.served_at >= sa.bindparam("s"))
_Q_SERVE_LOAD = sa.select(
    sa.func.coalesce(sa.func.sum(sa.case((t.serves.c.bytes.is_(None), 1), else_=0)), 0),
    sa.func.coalesce(sa.func.sum(t.serves.c.bytes), 0)).where(
    t.serves.c.device_id == sa.bindparam("d"), t.serves.c.release_id == sa.bindparam("r"),
    t.serves.c.served_at >= sa.bindparam("s"))


@dataclass(frozen=True, slots=True)
class _ServeItem:
    device_id: int
    release_id: int
    since: float
    limit: int
    channel: str
    from_version: str
    mode: str
    size: int = 0  # the whole package, in bytes (0: unknown, every serve counts as one)
    nbytes: int | None = None  # what this serve sends (None: the whole package)


_SERVE_COLUMNS = ("fota_sn", "device_id", "release_id", "channel", "from_version", "served_at", "bytes")


def serves_worth(whole: int, nbytes: int, size: int) -> int:
    """How many serves a device has had of one package: rows without a byte count (older
    rows) are one each; the bytes of the others add up, and each package's worth is one
    serve. A download resumed from byte N adds only what it sent, so a cut-and-resume is
    one serve, while resuming from byte 1 again and again is as many as the bytes say."""
    if size <= 0:
        return whole
    return whole + nbytes // size


def _decide_serves(items: list[_ServeItem], load: Callable[[_ServeItem], tuple[int, int]],
                   ) -> tuple[list[tuple[int, str | None]], list[tuple[Any, ...]]]:
    """The loop-guard rule for one batch, in order: (serves counted before each item, its
    fota_sn or None) and the serve rows to insert (_SERVE_COLUMNS). ``load`` reads the
    database: (rows without bytes, sum of bytes) in the window; what was granted earlier in
    the batch is added, so the count stays exact. ``full`` (a 200 or a Range from 0) and
    ``continuation`` (a Range from N>0) are both served while fewer than ``limit`` packages'
    worth went out; ``head`` is never recorded."""
    out: list[tuple[int, str | None]] = []
    rows: list[tuple[Any, ...]] = []
    granted: dict[tuple[int, int], tuple[int, int]] = {}
    for it in items:
        key = (it.device_id, it.release_id)
        whole, nbytes = load(it)
        g_whole, g_bytes = granted.get(key, (0, 0))
        n = serves_worth(whole + g_whole, nbytes + g_bytes, it.size)
        if it.mode not in ("full", "continuation") or n >= it.limit:
            out.append((n, None))
            continue
        sent: int | None = (it.nbytes if it.nbytes is not None else it.size) if it.size > 0 else None
        sn = secrets.token_hex(12)
        rows.append((sn, it.device_id, it.release_id, it.channel, it.from_version, time.time(), sent))
        granted[key] = (g_whole + 1, g_bytes) if sent is None else (g_whole, g_bytes + sent)
        out.append((n, sn))
    return out, rows


class ServesRepo:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.batches: GroupCommit[_ServeItem, tuple[int, str | None]] = GroupCommit(self._batch)

    def count(self, device_id: int, release_id: int, since: float) -> int:
        with self.db.ro() as c:
            return int(c.execute(_Q_COUNT_SERVES, {"d": device_id, "r": release_id, "s": since}).scalar_one())

    def load(self, device_id: int, release_id: int, since: float) -> tuple[int, int]:
        """(serve rows without a byte count, bytes of the others) since ``since``."""
        with self.db.ro() as c:
            whole, nbytes = c.execute(_Q_SERVE_LOAD, {"d": device_id, "r": release_id, "s": since}).one()
        return int(whole), int(nbytes)

    def count_and_record(self, device_id: int, release_id: int, since: float, limit: int, channel: str,
                         from_version: str, mode: str, *, size: int = 0,
                         nbytes: int | None = None) -> tuple[int, str | None]:
        """Loop-guard count and, when it allows, the serve row, committed before this returns.
        ``mode``: ``full`` and ``continuation`` record below ``limit`` packages' worth of
        ``size`` bytes (see :func:`serves_worth`), ``nbytes`` being what this one sends;
        ``head`` never. Returns (serves counted before this one, fota_sn or None).

        Concurrent calls share one transaction (group commit, see groupcommit.py); each item is
        counted after the ones before it in the batch, so the count stays exact."""
        item = _ServeItem(device_id, release_id, since, limit, channel, from_version, mode, size, nbytes)
        try:
            return self.batches.submit(item, self.db.hot_busy_timeout_s)
        except BatchBusy as e:
            raise StoreBusy(f"database busy: {e}") from None

    def _batch(self, items: list[_ServeItem]) -> list[tuple[int, str | None]]:
        if self.db.is_sqlite:
            return self._batch_sqlite(items)
        with self.db.hot_tx() as c:
            # SQLite's write lock serialises instances; on PostgreSQL each device's
            # count-then-insert is made exact by a transaction lock on that device, taken in id
            # order so two instances' batches cannot deadlock.
            for device_id in sorted({it.device_id for it in items}):
                c.execute(_Q_DEVICE_SERVE_LOCK, {"d": device_id})

            def load(it: _ServeItem) -> tuple[int, int]:
                whole, nbytes = c.execute(_Q_SERVE_LOAD, {"d": it.device_id, "r": it.release_id,
                                                          "s": it.since}).one()
                return int(whole), int(nbytes)

            out, rows = _decide_serves(items, load)
            if rows:
                c.execute(_Q_INSERT_SERVE, [dict(zip(_SERVE_COLUMNS, r, strict=True)) for r in rows])
            return out

    def _batch_sqlite(self, items: list[_ServeItem]) -> list[tuple[int, str | None]]:
        """The same as the SQLAlchemy path above, on the DBAPI connection: every package a
        check-in serves passes here, and Core's per-statement machinery was three quarters of
        its cost (0.15 ms against 0.03 ms raw), on the event loop's GIL."""
        with self.db.turn(self.db.hot_busy_timeout_s):
            raw = self.db.hot_engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("BEGIN IMMEDIATE")  # waits at most busy_timeout for other processes
                try:
                    def load(it: _ServeItem) -> tuple[int, int]:
                        cur.execute(_SQL_SERVE_LOAD, (it.device_id, it.release_id, it.since))
                        whole, nbytes = cur.fetchone() or (0, 0)
                        return int(whole), int(nbytes)

                    out, rows = _decide_serves(items, load)
                    if rows:
                        cur.executemany(_SQL_INSERT_SERVE, rows)
                    cur.execute("COMMIT")
                except BaseException:
                    dbapi = raw.driver_connection
                    if dbapi is not None and dbapi.in_transaction:
                        dbapi.rollback()
                    raise
                finally:
                    cur.close()
            finally:
                raw.close()  # back to the pool
        return out

    def times(self, device_id: int, release_id: int, since: float) -> list[tuple[float, int | None, str]]:
        """(served_at, bytes, fota_sn) of this release's serves to this device since ``since``
        (seeds in-memory counts)."""
        with self.db.ro() as c:
            return sorted((float(r[0]), None if r[1] is None else int(r[1]), str(r[2])) for r in c.execute(
                sa.select(t.serves.c.served_at, t.serves.c.bytes, t.serves.c.fota_sn).where(
                    t.serves.c.device_id == device_id, t.serves.c.release_id == release_id,
                    t.serves.c.served_at >= since)))

    def not_delivered(self, fota_sn: str, sent: int, *, device_key: str | None, release_id: int | None,
                      ip: str = "", planned: int = 0) -> None:
        """The client hung up before the serve's bytes were written: the serve row keeps only
        what was sent (so the loop guard counts that), and the audit says so."""
        self.db.drain()
        with self.db.tx() as c:
            c.execute(t.serves.update().where(t.serves.c.fota_sn == fota_sn).values(bytes=sent))
            audit_change(c, "serve_aborted", device_key=device_key, release_id=release_id, ip=ip or None,
                         fota_sn=fota_sn, bytes_sent=sent, bytes_planned=planned,
                         reason="the client hung up before the package was written")

    def insert(self, rows: list[dict[str, Any]]) -> None:
        """Batched serve rows (fota_sn issued in memory); see BufferedWriter.serve."""
        with self.db.tx() as c:
            c.execute(t.serves.insert(), rows)

    def by_sn(self, fota_sn: str) -> Serve | None:
        self.db.drain()
        with self.db.ro() as c:
            r = c.execute(sa.select(t.serves, t.devices.c.device_key, t.devices.c.ban_code, t.artifacts.c.sha256)
                          .join(t.devices, t.devices.c.id == t.serves.c.device_id)
                          .join(t.releases, t.releases.c.id == t.serves.c.release_id)
                          .join(t.artifacts, t.artifacts.c.id == t.releases.c.artifact_id)
                          .where(t.serves.c.fota_sn == fota_sn)).first()
        return Serve.from_row(r) if r else None

    def record(self, device_id: int, release_id: int, channel: str, from_version: str,
               nbytes: int | None = None) -> str:
        sn = secrets.token_hex(12)
        with self.db.hot_tx() as c:
            c.execute(t.serves.insert().values(fota_sn=sn, device_id=device_id, release_id=release_id,
                                               channel=channel, from_version=from_version,
                                               served_at=time.time(), bytes=nbytes))
        return sn

    def record_result(self, fota_sn: str, result_code: int, ip: str = "") -> FotaResult:
        self.db.drain()
        with self.db.tx() as c:
            row = c.execute(sa.select(t.serves, t.devices.c.device_key)
                            .join(t.devices, t.devices.c.id == t.serves.c.device_id)
                            .where(t.serves.c.fota_sn == fota_sn)).first()
            if row is None:
                raise NotFound(f"unknown fota_sn {fota_sn!r}")
            now = time.time()
            ok = result_code in (0, 1)
            vals: dict[str, Any] = {"result_code": result_code, "reported_at": now}
            if ok and row.confirmed_at is None:
                vals["confirmed_at"] = now
            c.execute(t.serves.update().where(t.serves.c.id == row.id).values(**vals))
            audit_change(c, "fota_result", device_key=row.device_key, release_id=row.release_id,
                         code=result_code, ip=ip or None, fota_sn=fota_sn, success=ok)
            return FotaResult(fota_sn, int(row.release_id), row.device_key, ok)
