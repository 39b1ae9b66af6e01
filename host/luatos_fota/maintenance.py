"""Housekeeping a server does by itself, so nothing grows without bound while nobody watches.

* Audit retention: rows older than ``audit_max_age_s`` and beyond the newest ``audit_max_rows``
  are deleted every ``retention_interval_s``.
* Shared new-device buckets that have refilled (they hold no information) go with it.
* Memory: glibc keeps freed blocks of the main heap mapped; after a request flood the server
  would keep that high-water mark for good. ``malloc_trim`` hands free pages back every
  ``TRIM_EVERY_S`` (a few ms of work).
* Orphans: writers' temp files whose process is gone (or older than an hour) and blobs no
  artifact references (a crash between the blob rename and the commit), older than an hour so
  an upload in progress is never touched, every ``orphan_gc_interval_s``.

Each step runs in a worker thread; a failure is logged and retried at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import time
from typing import Any

from .config import ServerConfig
from .store import Store

log = logging.getLogger("luatos_fota.maintenance")
TRIM_EVERY_S = 15.0


def trim_memory() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class Maintenance:
    def __init__(self, store: Store, config: ServerConfig) -> None:
        self.store = store
        self.config = config
        self._task: asyncio.Task[None] | None = None
        self.pruned = 0
        self.orphans_removed = 0

    def retention_once(self) -> int:
        n = 0
        if self.config.audit_max_age_s > 0:
            cutoff = time.time() - self.config.audit_max_age_s
            oldest = self.store.audit.oldest_ts()
            if oldest is not None and oldest < cutoff:
                n += self.store.audit.prune(self.config.audit_max_age_s, actor="retention")
        if self.config.audit_max_rows > 0:
            n += self.store.audit.prune_rows(self.config.audit_max_rows)
        self.pruned += n
        self.store.rates.prune(self.rate_bucket_idle_s())
        return n

    def rate_bucket_idle_s(self) -> float:
        """How long a shared new-device bucket takes to refill from empty (then it is dropped)."""
        c = self.config
        return max([b / r for r, b in ((c.new_device_ip_rate, c.new_device_ip_burst),
                                       (c.new_device_product_rate, c.new_device_product_burst)) if r > 0]
                   + [0.0]) + 60.0

    def orphans_once(self) -> int:
        n = self.store.blobs.clean_tmp() + len(self.store.releases.gc_blobs(3600.0))
        self.orphans_removed += n
        return n

    async def _loop(self) -> None:
        next_ret = next_gc = next_trim = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_trim:
                trim_memory()
                next_trim = now + TRIM_EVERY_S
            for due, fn, every in ((next_ret, self.retention_once, self.config.retention_interval_s),
                                   (next_gc, self.orphans_once, self.config.orphan_gc_interval_s)):
                if every > 0 and now >= due:
                    try:
                        await asyncio.to_thread(fn)
                    except Exception:
                        log.exception("maintenance step %s failed; retrying later", fn.__name__)
            if self.config.retention_interval_s > 0 and now >= next_ret:
                next_ret = now + self.config.retention_interval_s
            if self.config.orphan_gc_interval_s > 0 and now >= next_gc:
                next_gc = now + self.config.orphan_gc_interval_s
            await asyncio.sleep(max(0.05, min(next_ret, next_gc, next_trim) - time.monotonic()))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="fota-maintenance")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def stats(self) -> dict[str, Any]:
        return {"audit_pruned": self.pruned, "orphans_removed": self.orphans_removed}
