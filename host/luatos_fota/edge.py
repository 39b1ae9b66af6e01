"""What every device-facing handler shares: the :class:`DeviceEdge` built once per app.

The device endpoints (``checkin.py``, ``v2.py``, ``downloads.py``) are small ASGI callables
that each take one ``DeviceEdge`` in their constructor; nothing is wired onto an object after
it was built.

The event loop never waits on the database or the disk: a check-in is first decided from memory
(:meth:`FotaService.decide_fast`); anything that needs a row, a write or a file runs in a worker
thread (:meth:`DeviceEdge.offload`, at most ``db_threads`` at once), and device-path writes give
up after ``hot_busy_timeout_s`` with 503 + ``Retry-After``. Overload (more than ``max_inflight``
device requests at once) and a store outage are answered 503 + ``Retry-After`` by
:class:`InflightGuard`, so devices simply try later.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
from starlette.types import Message, Receive, Scope, Send

from . import metrics, signedurl
from .admintoken import bearer_matches
from .audit import AuditEvent, detail_json
from .blobs import Blobs
from .codes import VendorCode
from .config import ServerConfig
from .httpio import header, send_json
from .ratelimit import TokenBuckets, retry_after_seconds
from .records import Artifact
from .service import FotaService, Outcome, Query
from .store import normalize_device_key

log = logging.getLogger(__name__)

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class BlobCache:
    """Recently served packages kept in memory (bounded), so a rollout does not re-read disk."""

    def __init__(self, blobs: Blobs, max_bytes: int = 64 << 20) -> None:
        self.blobs = blobs
        self.max_bytes = max_bytes
        self._d: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()  # worker threads fill it at the same time

    def peek(self, sha: str) -> bytes | None:
        """The package if it is in memory (no disk access: safe on the event loop)."""
        return self._d.get(sha)

    def known(self, sha: str) -> bool:
        """The package is in memory (what :class:`FotaService` may decide on without the disk)."""
        return sha in self._d

    def get(self, sha: str) -> bytes | None:
        """The package, read from disk if needed (blocking); None if it cannot be read."""
        b = self._d.get(sha)
        if b is not None:
            with contextlib.suppress(KeyError):
                self._d.move_to_end(sha)
            return b
        try:
            b = self.blobs.read(sha)
        except (OSError, ValueError) as e:  # missing, unreadable (permissions), corrupt
            log.error("package %s cannot be read: %s", sha, e)
            return None
        if len(b) <= self.max_bytes // 4:
            with self._lock:
                if sha not in self._d:  # two threads that both missed add it once
                    self._d[sha] = b
                    self._size += len(b)
                while self._size > self.max_bytes and self._d:
                    _, old = self._d.popitem(last=False)
                    self._size -= len(old)
        return b


def client_ip(scope: Any) -> str:
    c = scope.get("client")
    return c[0] if c else ""


class EdgeHandler:
    """A device endpoint: an ASGI callable (``__call__(scope, receive, send)``) over the one
    shared :class:`DeviceEdge`, which it gets in its constructor."""

    def __init__(self, edge: DeviceEdge) -> None:
        self.edge = edge


class InflightGuard:
    """At most ``max_inflight`` device requests at once (more: 503 + ``Retry-After``, audited as
    ``overloaded``), and a handler's failure (database unreachable, disk error) answered 503 +
    ``Retry-After`` instead of looking like "no update" or a broken package."""

    def __init__(self, service: FotaService) -> None:
        self._service = service
        self.count = 0

    async def __call__(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        cfg = self._service.config
        if self.count >= cfg.max_inflight:
            self._service.writer.record(AuditEvent("overloaded", status=503, code=VendorCode.WAIT,
                                                   ip=client_ip(scope) or None,
                                                   detail=detail_json({"path": scope["path"][:200]})))
            ra = str(cfg.retry_after_s).encode()
            await send_json(send, 503, {"code": VendorCode.WAIT, "msg": "server overloaded, retry later"},
                            [(b"retry-after", ra)])
            return
        self.count += 1
        started = [False]

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        try:
            await handler(scope, receive, tracking_send)
        except Exception:
            log.exception("device request failed: %s %s", scope["method"], scope["path"])
            if not started[0]:
                await send_json(send, 503, {"code": VendorCode.WAIT, "msg": "server error, retry later"},
                                [(b"retry-after", str(cfg.retry_after_s).encode())])
        finally:
            self.count -= 1


@dataclass
class DeviceEdge:
    """The shared context of the device handlers: the service, the package cache, the rate
    limits, the download-link key and the worker-thread limit."""

    service: FotaService
    blob_cache: BlobCache
    admin_token: str
    device_buckets: TokenBuckets = field(init=False)
    ip_buckets: TokenBuckets = field(init=False)
    url_key: bytes = field(init=False)
    inflight: InflightGuard = field(init=False)
    # /dl/ name -> artifact row; artifacts are immutable, so every hit is cached for good
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    _limiter: anyio.CapacityLimiter | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        cfg = self.service.config
        self.device_buckets = TokenBuckets(cfg.device_rate, cfg.device_burst)
        self.ip_buckets = TokenBuckets(cfg.ip_rate, cfg.ip_burst)
        self.url_key = signedurl.signing_key(self.admin_token)
        self.inflight = InflightGuard(self.service)

    @property
    def config(self) -> ServerConfig:
        return self.service.config

    async def offload(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a blocking store or disk call in a worker thread (at most ``db_threads`` at once),
        so one slow database or disk never stalls the event loop (review finding 3)."""
        if self._limiter is None:  # created on the loop that runs the app
            self._limiter = anyio.CapacityLimiter(self.service.config.db_threads)
        with metrics.store_call(getattr(fn, "__name__", "call")):
            return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._limiter)

    async def package(self, sha: str) -> bytes | None:
        """The package bytes (from memory, else read in a worker thread), or None if unreadable."""
        data = self.blob_cache.peek(sha)
        return data if data is not None else await self.offload(self.blob_cache.get, sha)

    async def decide(self, q: Query) -> Outcome:
        """The check-in decision without counting a serve: from memory when it can be."""
        out = self.service.decide_fast(q)
        return out if out is not None else await self.offload(self.service.decide, q, count_serve=False)

    def rate_limited(self, ip: str, device_key: str | None) -> float:
        """Seconds to wait when the client IP or the device is over its rate, else 0."""
        wait = self.ip_buckets.take(ip) if ip else 0.0
        if not wait and device_key and device_key != "nil":
            wait = self.device_buckets.take(normalize_device_key(device_key)[:64])
        return wait

    @staticmethod
    async def send_limited(send: Send, wait: float) -> None:
        await send_json(send, 429, {"code": VendorCode.WAIT, "msg": "too many requests; retry later"},
                        [(b"retry-after", str(retry_after_seconds(wait)).encode())])

    def is_admin(self, scope: Scope) -> bool:
        return bearer_matches(header(scope, b"authorization"), self.admin_token)

    def base_url(self, scope: Any) -> str:
        """``public_url``, else the address this connection reached; never the Host header, which
        the client chooses (a forged Host would send devices' downloads elsewhere)."""
        if self.config.public_url:
            return self.config.public_url.rstrip("/")
        s = scope.get("server") or ("127.0.0.1", 80)
        host = f"[{s[0]}]" if ":" in str(s[0]) else str(s[0])
        return f"{scope.get('scheme', 'http')}://{host}:{s[1]}"

    def package_url(self, scope: Any, sha256: str, fota_sn: str | None = None) -> str:
        """The download URL handed to a device: signed and short-lived when downloads are private."""
        path = f"/dl/{sha256}.bin"
        query = [f"fota_sn={fota_sn}"] if fota_sn else []
        if self.config.private_downloads:
            query.append(signedurl.sign_query(self.url_key, path, self.config.signed_url_ttl_s))
        return self.base_url(scope) + path + ("?" + "&".join(query) if query else "")
