"""Buffered writes that must not cost a transaction per check-in: audit rows and last-seen.

A daemon thread flushes every ``interval`` seconds (or sooner when a batch fills) in one
transaction. :meth:`close` performs a final flush, and the app calls it on lifespan shutdown,
so a clean stop loses nothing; a kill -9 can lose at most the last ``interval`` of check-in
audit rows and last-seen times. Decisions that change state (serves, bans, version changes)
are written synchronously and do not go through here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from .store import Store

log = logging.getLogger("luatos_fota.writer")


class BufferedWriter:
    def __init__(self, store: Store, interval: float = 0.5, batch: int = 2000) -> None:
        self.store = store
        self.interval = interval
        self.batch = batch
        self._audit: deque[dict[str, Any]] = deque()
        self._seen: dict[int, tuple[float, str, int]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()
        self.flushed_audit = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fota-writer", daemon=True)
            self._thread.start()

    def audit(self, row: dict[str, Any]) -> None:
        self._audit.append(row)
        if self._thread is None:
            self.start()
        if len(self._audit) >= self.batch:
            self._wake.set()

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
            rows = []
            while self._audit:
                rows.append(self._audit.popleft())
            try:
                if rows:
                    self.store.write_audit(rows)
                    self.flushed_audit += len(rows)
                if seen:
                    self.store.touch_devices(seen)
            except Exception:  # keep the rows for the next attempt rather than losing them
                log.exception("flush failed; will retry")
                self._audit.extendleft(reversed(rows))
                with self._lock:
                    for k, v in seen.items():
                        cur = self._seen.get(k)
                        self._seen[k] = (max(v[0], cur[0]), cur[1], cur[2] + v[2]) if cur else v
                raise

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
