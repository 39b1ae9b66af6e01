"""The audit log: the one function every entry is written through, and reading it back.

Why one writer: entries come from state changes (inside the change's own transaction, through
:func:`audit_change`), from the buffered writer of the device path (:meth:`AuditRepo.write`)
and from crash recovery; all of them reach the table through :func:`insert_audit`, so the
columns and the JSON of ``detail`` are decided once (audit.AuditEvent).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from luatos_common.deviceid import normalize_device_key

from . import schema as t
from .audit import AuditEvent, detail_json
from .codes import VendorCode
from .db import Database
from .records import AuditRecord

_Q_INSERT_AUDIT = t.audit.insert()


def insert_audit(c: Connection, events: Sequence[AuditEvent]) -> None:
    """Every audit entry reaches the table through here (audit.py)."""
    c.execute(_Q_INSERT_AUDIT, [e.row() for e in events])


def audit_change(c: Connection, event_: str, *, actor: str | None = None, device_key: str | None = None,
                 product_id: int | None = None, release_id: int | None = None, code: int | None = None,
                 status: int | None = None, ip: str | None = None, **detail: Any) -> None:
    """A state change's entry, in the transaction that made the change."""
    insert_audit(c, [AuditEvent(event_, device_key, product_id, release_id, status, code, ip, actor,
                                detail_json(detail or None))])


def version_changes(c: Connection, device_key: str, since: float) -> list[tuple[str, str]]:
    """(old, new) of a device's reported version changes since ``since``, oldest first (the
    loop guard's memory of them is the audit log)."""
    history = [json.loads(d or "{}") for (d,) in c.execute(
        sa.select(t.audit.c.detail).where(
            t.audit.c.device_key == device_key, t.audit.c.event == "version_changed",
            t.audit.c.ts >= since).order_by(t.audit.c.id))]
    return [(h.get("old", ""), h.get("new", "")) for h in history if h.get("old")]


class AuditRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def write(self, events: Sequence[AuditEvent]) -> int:
        """Entries decided elsewhere (the buffered writer), in one transaction."""
        if not events:
            return 0
        with self.db.tx() as c:
            insert_audit(c, events)
        return len(events)

    def query(self, *, device_key: str | None = None, event_: str | None = None,
              release_id: int | None = None, limit: int = 200,
              before_id: int | None = None) -> list[AuditRecord]:
        q = sa.select(t.audit).order_by(t.audit.c.id.desc()).limit(max(1, min(limit, 10000)))
        if device_key:
            q = q.where(t.audit.c.device_key == normalize_device_key(device_key))
        if event_:
            q = q.where(t.audit.c.event == event_)
        if release_id is not None:
            q = q.where(t.audit.c.release_id == release_id)
        if before_id is not None:
            q = q.where(t.audit.c.id < before_id)
        with self.db.ro() as c:
            return [AuditRecord.from_row(r) for r in c.execute(q)]

    def prune(self, older_than_s: float, *, actor: str = "admin") -> int:
        """Delete audit rows older than ``older_than_s`` seconds; returns how many went."""
        cutoff = time.time() - older_than_s
        with self.db.tx() as c:
            n = c.execute(t.audit.delete().where(t.audit.c.ts < cutoff)).rowcount
            audit_change(c, "audit_pruned", actor=actor, rows=n, older_than_s=older_than_s)
        return int(n or 0)

    def prune_rows(self, max_rows: int) -> int:
        """Keep only the newest ``max_rows`` audit rows (automatic retention by count)."""
        with self.db.ro() as c:
            top = c.execute(sa.select(sa.func.max(t.audit.c.id))).scalar()
        if not top or top <= max_rows:
            return 0
        with self.db.tx() as c:
            n = c.execute(t.audit.delete().where(t.audit.c.id <= int(top) - max_rows)).rowcount
        return int(n or 0)

    def oldest_ts(self) -> float | None:
        with self.db.ro() as c:
            v = c.execute(sa.select(sa.func.min(t.audit.c.ts))).scalar()
        return None if v is None else float(v)

    def recover_serves(self, window_s: float = 300.0) -> int:
        """Re-create the audit rows of serves whose row went down with the process.

        Serve rows (``serves``) are committed before the package is sent; their audit rows go
        through the batched writer, so a kill -9 can lose the last flush interval of them. At
        start-up, every check-in serve (channels v1, v2) from shortly before the newest audit row
        on, whose ``fota_sn`` no audit row mentions, gets a ``serve`` row marked ``recovered``."""
        with self.db.ro() as c:
            last = c.execute(sa.select(sa.func.max(t.audit.c.ts))).scalar()
            since = (float(last) if last is not None else time.time()) - window_s
            rows = c.execute(sa.select(t.serves.c.fota_sn, t.serves.c.channel, t.serves.c.served_at,
                                       t.serves.c.release_id, t.serves.c.from_version, t.devices.c.device_key,
                                       t.releases.c.product_id)
                             .join(t.devices, t.devices.c.id == t.serves.c.device_id)
                             .join(t.releases, t.releases.c.id == t.serves.c.release_id)
                             .where(t.serves.c.served_at >= since, t.serves.c.channel.in_(("v1", "v2")))).fetchall()
            if not rows:
                return 0
            seen = set()
            for (detail,) in c.execute(sa.select(t.audit.c.detail).where(t.audit.c.ts >= since - 60,
                                                                          t.audit.c.event.in_(("serve", "v2_check")))):
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    sn = json.loads(detail or "{}").get("fota_sn")
                    if sn:
                        seen.add(sn)
        lost = [r for r in rows if r.fota_sn not in seen]
        if lost:
            with self.db.tx() as c:
                insert_audit(c, [AuditEvent(
                    "serve", r.device_key, r.product_id, r.release_id, code=VendorCode.OK, actor="recovery",
                    detail=detail_json({"fota_sn": r.fota_sn, "channel": r.channel, "version": r.from_version,
                                        "recovered": True}), ts=float(r.served_at)) for r in lost])
        return len(lost)
