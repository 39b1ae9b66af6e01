"""Server tunables in one place, so the CLI, ``create_app(**cfg)`` and tests agree on names.

Defaults follow shared/luatos-reference.md §11 and §13 (loop ban after 6 serves in a sliding
24 h window). Per-IP limiting is off by default because cellular devices often share one
carrier-NAT address; per-device limiting is on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

DEVICE_ENDPOINT = "/api/site/firmware_upgrade"


@dataclass
class ServerConfig:
    """Every knob of a server instance; unknown keys given to :func:`from_kwargs` are an error."""

    # Device endpoint: requests whose path base is this (or any non-reserved path that carries
    # device parameters, see devrequest.py) are device check-ins.
    device_endpoint: str = DEVICE_ENDPOINT
    # Loop guard: ban after `loop_max_serves` serves of one target to one device within
    # `loop_window_s` seconds without the device's reported version changing.
    loop_max_serves: int = 6
    loop_window_s: float = 24 * 3600.0
    # Token buckets: `rate` tokens per second, `burst` capacity; rate <= 0 disables the bucket.
    device_rate: float = 5.0
    device_burst: float = 100.0
    ip_rate: float = 0.0
    ip_burst: float = 1000.0
    # Overload: more than this many requests in flight -> 503 with Retry-After.
    max_inflight: int = 2000
    retry_after_s: int = 30
    # How stale a cached catalogue may be before the DB generation counter is re-read (seconds).
    # Local writes invalidate at once; this bounds staleness across instances.
    cache_ttl_s: float = 1.0
    # Buffered writes (audit entries, last-seen): flush period and batch size.
    flush_interval_s: float = 0.5
    flush_batch: int = 2000
    # Record an audit entry for every "up to date" check-in (cheap: batched).
    audit_up_to_date: bool = True
    # Requests whose device id is the literal ``nil`` or missing: "refuse" (code 3) or "by_ip"
    # (treat the client IP as the device id).
    anonymous_devices: str = "refuse"
    # Base URL put into v2 ``url`` fields and push messages; default: from the Host header.
    public_url: str | None = None
    # Whether a product that is unknown gets created on first check-in (off: code 25).
    auto_create_products: bool = False
    # Loop-guard serve counting: "database" (every serve counted and inserted synchronously, in a
    # worker thread: exact across instances sharing the DB) or "memory" (counts per device +
    # release kept in this process, seeded from the DB on first use, fota_sn issued in memory,
    # serve rows written through the batched writer: faster, but serves made by *other*
    # instances after the seed are not seen, so use it with one instance per database).
    serve_counts: str = "database"
    # Device-path database writes wait at most this long for a lock (another instance, a CLI
    # command), then the device gets 503 + Retry-After instead of a hung connection.
    hot_busy_timeout_s: float = 2.0
    # Worker threads for database and disk calls made while answering devices.
    db_threads: int = 16
    # Largest v2 result report (POST /api/site/turnkey_fota_result) and release upload accepted.
    max_result_body: int = 4096
    max_upload_bytes: int = 64 << 20
    # /dl/ downloads need a fota_sn this server issued (v2 check, push) within download_sn_ttl_s,
    # or the admin bearer token; off by default (libfota2 check-ins are unaffected either way).
    download_auth: bool = False
    download_sn_ttl_s: float = 24 * 3600.0
    # Where packages live: None -> DATA/blobs (or $LUATOS_FOTA_BLOBS); ``s3://bucket/prefix?...``
    # -> an S3-compatible bucket with DATA/blobs as this instance's read-through cache.
    blob_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_kwargs(cls, **cfg: Any) -> ServerConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise TypeError(f"unknown server option(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        conf = cls(**cfg)
        if conf.anonymous_devices not in ("refuse", "by_ip"):
            raise ValueError(f"anonymous_devices must be 'refuse' or 'by_ip', not {conf.anonymous_devices!r}")
        if conf.serve_counts not in ("memory", "database"):
            raise ValueError(f"serve_counts must be 'memory' or 'database', not {conf.serve_counts!r}")
        if conf.loop_max_serves < 1:
            raise ValueError(f"loop_max_serves must be >= 1, not {conf.loop_max_serves}")
        return conf
