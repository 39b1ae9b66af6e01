"""Token buckets kept in the database (``rate_buckets``), shared by every instance.

Why in the database: the new-device limits must hold for the fleet, not per instance; the
bucket rule is ratelimit.TokenBuckets', made exact across instances by one UPDATE per token.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from . import schema as t
from .db import Database
from .errors import RateLimited


@dataclass(frozen=True)
class SharedRate:
    """A token bucket kept in the database (``rate_buckets``): ``rate`` tokens/s up to
    ``burst``, the same rule as ratelimit.TokenBuckets but one bucket for every instance."""

    key: str
    rate: float
    burst: float


def _bucket_take_statement() -> sa.Update:
    """One token off a bucket in one statement, refilled first, only if one is there: the row
    lock the UPDATE takes (PostgreSQL re-checks the WHERE on the row it waited for; SQLite
    holds the write lock) makes it exact across instances without a separate SELECT."""
    b = t.rate_buckets.c
    now, rate, burst = (sa.bindparam(n, type_=sa.Float) for n in ("now", "rate", "burst"))
    # Clocks of different hosts may differ a little: time running backwards refills nothing.
    elapsed = sa.case((now > b.updated_at, now - b.updated_at), else_=0.0)
    refilled = b.tokens + elapsed * rate
    tokens = sa.case((refilled > burst, burst), else_=refilled)
    return (t.rate_buckets.update().where(b.key == sa.bindparam("k"), tokens >= 1.0)
            .values(tokens=tokens - 1.0, updated_at=sa.case((now > b.updated_at, now), else_=b.updated_at)))


_Q_BUCKET_TAKE = _bucket_take_statement()
_Q_BUCKET = sa.select(t.rate_buckets.c.tokens, t.rate_buckets.c.updated_at).where(
    t.rate_buckets.c.key == sa.bindparam("k"))


def take_tokens(c: Connection, is_sqlite: bool, limits: Iterable[SharedRate], now: float) -> None:
    """One token from each shared bucket, inside the caller's write transaction (a refusal
    raises, so the caller's writes roll back with the tokens already taken). Keys in sorted
    order so two transactions cannot deadlock on PostgreSQL."""
    for lim in sorted((lim for lim in limits if lim.rate > 0), key=lambda lim: lim.key):
        burst = max(1.0, lim.burst)
        params = {"k": lim.key, "now": now, "rate": lim.rate, "burst": burst}
        if c.execute(_Q_BUCKET_TAKE, params).rowcount == 1:
            continue
        row = c.execute(_Q_BUCKET, {"k": lim.key}).first()
        if row is None:  # first use: a full bucket less this token (whoever inserts first wins)
            values = {"key": lim.key, "tokens": burst - 1.0, "updated_at": now}
            ins = (sqlite_insert(t.rate_buckets).values(**values).on_conflict_do_nothing() if is_sqlite
                   else pg_insert(t.rate_buckets).values(**values).on_conflict_do_nothing())
            # RETURNING says whether this statement inserted the row (rowcount of an upsert is not
            # reliable across drivers).
            inserted = c.execute(ins.returning(t.rate_buckets.c.key)).first() is not None
            if inserted or c.execute(_Q_BUCKET_TAKE, params).rowcount == 1:
                continue
            row = c.execute(_Q_BUCKET, {"k": lim.key}).one()
        tokens = min(burst, float(row[0]) + max(0.0, now - float(row[1])) * lim.rate)
        raise RateLimited(lim.key, max(0.0, 1.0 - tokens) / lim.rate)


class RatesRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def prune(self, idle_s: float) -> int:
        """Drop buckets untouched for ``idle_s`` (long enough to have refilled: they hold no
        information), so per-IP rows do not accumulate."""
        with self.db.tx() as c:
            res = c.execute(t.rate_buckets.delete().where(t.rate_buckets.c.updated_at < time.time() - idle_s))
        return int(res.rowcount or 0)

    def get(self, key: str) -> tuple[float, float] | None:
        """(tokens, updated_at) of a shared bucket, for operators and tests."""
        with self.db.ro() as c:
            r = c.execute(sa.select(t.rate_buckets.c.tokens, t.rate_buckets.c.updated_at)
                          .where(t.rate_buckets.c.key == key)).first()
        return (float(r[0]), float(r[1])) if r else None
