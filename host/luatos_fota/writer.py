"""Buffered writes that must not cost a transaction per check-in: audit rows and last-seen.

A daemon thread flushes every ``interval`` seconds (or sooner when a batch fills) in one
transaction. :meth:`close` performs a final flush, and the app calls it on lifespan shutdown,
so a clean stop loses nothing; a kill -9 can lose at most the last ``interval`` of check-in
audit rows and last-seen times. Decisions that change state (bans, version changes) are written
synchronously and do not go through here; serves do only with ``serve_counts="memory"`` (the
store drains this buffer before reads that must see them: stats, results, confirmations).

One bad row must not stop audit writing for good (review finding 2): strings are clipped to
their column sizes before they are queued, and when a batch is refused for its content (not for
an outage) the rows are written one by one and the ones the database refuses are logged and
dropped. During an outage the rows are kept for the next attempt, up to ``max_buffer`` rows
(oldest dropped first, counted in ``dropped_audit``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from typing import Any

import sqlalchemy as sa

from . import schema
from .audit import AuditEvent, detail_json
from .ratelimit import TokenBuckets
from .store import Store, StoreBusy

log = logging.getLogger("luatos_fota.writer")

# Column sizes of the audit table's bounded strings, so an oversized value is cut, not refused.
_AUDIT_LIMITS: dict[str, int] = {c.name: int(c.type.length) for c in schema.audit.columns
                                  if isinstance(c.type, sa.String) and c.type.length}


#: Events that describe a request, not a change of state: one client could write them as fast
#: as it can send requests, so they are written within a per-IP budget (``audit_budget``).
BUDGETED_EVENTS = frozenset({"checkin", "head", "rate_limited", "bad_method", "overloaded", "unauthorized",
                             "download", "download_refused", "v2_check", "new_device_limited", "push_protocol_error",
                             "push_login", "push_disconnect", "push_answer", "push_replaced"})
#: How often suppressed rows are summarised (one ``audit_suppressed`` row per IP, at most 100).
SUPPRESSED_EVERY_S = 60.0


def _clip(event: AuditEvent, detail_max: int = 1000) -> AuditEvent:
    cut: dict[str, Any] = {k: v[:n] for k, n in _AUDIT_LIMITS.items()
                           if isinstance(v := getattr(event, k), str) and len(v) > n}
    if len(event.detail) > detail_max:
        cut["detail"] = event.detail[:detail_max]
    return dataclasses.replace(event, **cut) if cut else event


def _is_outage(e: BaseException) -> bool:
    """Database unreachable or busy (retry later) as opposed to a row it refuses (drop it)."""
    if isinstance(e, sa.exc.DBAPIError) and e.connection_invalidated:
        return True
    return isinstance(e, (sa.exc.OperationalError, sa.exc.TimeoutError, OSError, StoreBusy))


class BufferedWriter:
    def __init__(self, store: Store, interval: float = 0.5, batch: int = 2000,
                 max_buffer: int = 200_000, *, detail_max: int = 1000,
                 audit_budget: TokenBuckets | None = None) -> None:
        self.store = store
        self.interval = interval
        self.batch = batch
        self._audit: deque[AuditEvent] = deque()
        self._serves: deque[dict[str, Any]] = deque()
        self._seen: dict[int, tuple[float, str, int]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()
        self.flushed_audit = 0
        self.dropped_audit = 0  # refused by the database, or pushed out of a full buffer
        self.max_buffer = max_buffer
        self.dropped_serves = 0
        self.detail_max = detail_max
        self.audit_budget = audit_budget
        self.suppressed: dict[str, int] = {}
        self.suppressed_total = 0
        self._summarised_at = time.monotonic()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fota-writer", daemon=True)
            self._thread.start()

    def record(self, event: AuditEvent) -> None:
        """Queue an audit entry for the next flush (dropped into a per-IP count when over budget)."""
        budget = self.audit_budget
        if budget is not None and budget.enabled and event.event in BUDGETED_EVENTS:
            ip = event.ip or ""
            if budget.take(ip):
                with self._lock:
                    if ip in self.suppressed or len(self.suppressed) < 10_000:
                        self.suppressed[ip] = self.suppressed.get(ip, 0) + 1
                    self.suppressed_total += 1
                return
        self._audit.append(_clip(event, self.detail_max))
        if len(self._audit) > self.max_buffer:
            try:
                self._audit.popleft()
                self.dropped_audit += 1
            except IndexError:
                pass
        if self._thread is None:
            self.start()
        if len(self._audit) >= self.batch:
            self._wake.set()

    def serve(self, row: dict[str, Any]) -> None:
        """A serve row (columns of ``serves``) whose fota_sn was issued in memory."""
        self._serves.append(row)
        if self._thread is None:
            self.start()

    def seen(self, device_id: int, ts: float, ip: str) -> None:
        with self._lock:
            prev = self._seen.get(device_id)
            self._seen[device_id] = (ts, ip, (prev[2] if prev else 0) + 1)
        if self._thread is None:
            self.start()

    def flush(self) -> None:
        with self._flush_lock:
            with self._lock:
                seen, self._seen = self._seen, {}
            serves = []
            while self._serves:
                serves.append(self._serves.popleft())
            if serves:
                try:
                    self._write_serves(serves)
                except Exception:
                    log.exception("serve flush failed; will retry")
                    self._serves.extendleft(reversed(serves))
                    raise
            rows = self._suppressed_rows()
            while self._audit:
                rows.append(self._audit.popleft())
            try:
                if rows:
                    self._write_rows(rows)
                if seen:
                    self.store.devices.touch(seen)
            except Exception:  # an outage: keep the rows for the next attempt rather than losing them
                log.exception("flush failed; will retry")
                self._audit.extendleft(reversed(rows))
                while len(self._audit) > self.max_buffer:
                    self._audit.popleft()
                    self.dropped_audit += 1
                with self._lock:
                    for k, v in seen.items():
                        cur = self._seen.get(k)
                        self._seen[k] = (max(v[0], cur[0]), cur[1], cur[2] + v[2]) if cur else v
                raise

    def _suppressed_rows(self) -> list[AuditEvent]:
        now = time.monotonic()
        if not self.suppressed or (now - self._summarised_at < SUPPRESSED_EVERY_S and not self._stop.is_set()):
            return []
        self._summarised_at = now
        with self._lock:
            counts, self.suppressed = self.suppressed, {}
        top = sorted(counts.items(), key=lambda kv: -kv[1])
        rows = [AuditEvent("audit_suppressed", ip=ip or None,
                           detail=detail_json({"suppressed": n, "why": "over the audit budget of this IP"}))
                for ip, n in top[:100]]
        rest = sum(n for _, n in top[100:])
        if rest:
            rows.append(AuditEvent("audit_suppressed", detail=detail_json({"suppressed": rest, "ips": len(top) - 100})))
        return rows

    def _write_serves(self, rows: list[dict[str, Any]]) -> None:
        try:
            self.store.serves.insert(rows)
            return
        except Exception as e:
            if _is_outage(e):
                raise
        for i, row in enumerate(rows):
            try:
                self.store.serves.insert([row])
            except Exception as e:
                if _is_outage(e):
                    del rows[:i]
                    raise
                self.dropped_serves += 1
                log.error("serve row dropped, the database refuses it: %s: %s; row=%r",
                          type(e).__name__, str(e).splitlines()[0][:200], row)

    def _write_rows(self, rows: list[AuditEvent]) -> None:
        try:
            self.store.audit.write(rows)
            self.flushed_audit += len(rows)
            return
        except Exception as e:
            if _is_outage(e):
                raise
            log.warning("audit batch of %d rows refused (%s); writing them one by one", len(rows),
                        type(e).__name__)
        for i, row in enumerate(rows):
            try:
                self.store.audit.write([row])
                self.flushed_audit += 1
            except Exception as e:
                if _is_outage(e):
                    del rows[:i]  # the caller re-queues what is left
                    raise
                self.dropped_audit += 1
                log.error("audit row dropped, the database refuses it: %s: %s; row=%r",
                          type(e).__name__, str(e).splitlines()[0][:200], {k: (v[:80] if isinstance(v, str) else v)
                                                                          for k, v in row.row().items()})

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                time.sleep(min(5.0, self.interval * 4))

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for _ in range(3):
            try:
                self.flush()
                return
            except Exception:
                time.sleep(0.2)
