"""Server tunables in one place, so the CLI, ``create_app(**cfg)`` and tests agree on names.

Defaults follow docs/behaviour.md §11 and §13 (loop ban after 6 serves in a sliding
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
    cache_ttl_s: float = 0.2
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
    # Preflight of uploaded releases (worker process): its wall-time limit, and the virtual
    # time each run (cold boot, upgrade path) gets.
    preflight_wall_s: float = 60.0
    preflight_window_s: float = 600.0
    # Private packages: /dl/<sha>.bin needs the admin token, a device credential of a device a
    # release with this package targets, or a signed URL the server handed out (v2 answer, push
    # command) whose expiry is at most this far ahead. /dl/artifact/<id> is admin-only always.
    private_downloads: bool = True
    signed_url_ttl_s: float = 3600.0
    # --- HTTP edge (server.py), sized for a 2-core machine ---------------------------------
    max_head_bytes: int = 16384       # request line + headers; more -> 431
    max_request_line: int = 8192      # more -> 414
    header_timeout_s: float = 10.0    # a head must be complete this long after its first byte
    body_timeout_s: float = 30.0      # longest pause inside a request body
    keep_alive_s: float = 5.0         # idle keep-alive connections close after this
    max_connections: int = 2048       # open HTTP connections in total; more -> 503 + Retry-After
    max_connections_per_ip: int = 256
    json_max_depth: int = 32          # nesting accepted in JSON bodies and push lines
    # --- growth bounds -----------------------------------------------------------------------
    # Audit rows written for refused or up-to-date requests of one client IP (token bucket);
    # beyond it they are counted and summarised once a minute as one "audit_suppressed" row.
    # Serves, bans and version changes are always written.
    audit_ip_rate: float = 5.0
    audit_ip_burst: float = 100.0
    audit_detail_max: int = 1000      # characters of an audit row's detail kept
    audit_max_age_s: float = 90 * 86400.0  # automatic retention (0: keep forever)
    audit_max_rows: int = 2_000_000   # automatic retention by count (0: no cap)
    retention_interval_s: float = 300.0
    # New device ids (rows created on first check-in) per client IP and per product.
    new_device_ip_rate: float = 1.0
    new_device_ip_burst: float = 50.0
    new_device_product_rate: float = 20.0
    new_device_product_burst: float = 2000.0
    # --- push channel ------------------------------------------------------------------------
    push_keepalive_idle_s: int = 60   # TCP keepalive: first probe after this idle time
    push_keepalive_interval_s: int = 10
    push_keepalive_count: int = 3     # a vanished peer is dropped ~idle + interval * count
    push_idle_timeout_s: float = 900.0  # no line at all (not even a heartbeat) for this long
    push_line_rate: float = 2.0       # lines per second per connection (burst push_line_burst);
    push_line_burst: float = 30.0     # above it the connection is closed
    push_max_connections: int = 20000
    push_max_connections_per_ip: int = 1000
    # --- orphan collection ---------------------------------------------------------------------
    orphan_gc_interval_s: float = 3600.0  # temp files and unreferenced blobs older than 1 h
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
        for f in fields(cls):
            v = getattr(conf, f.name)
            if f.type in ("int", "float") and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ValueError(f"{f.name} must be a number, not {v!r}")
            if f.type in ("int", "float") and v < 0:
                raise ValueError(f"{f.name} must be >= 0, not {v}")
        if conf.loop_max_serves < 1:
            raise ValueError(f"loop_max_serves must be >= 1, not {conf.loop_max_serves}")
        return conf
