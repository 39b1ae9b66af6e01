"""Prometheus metrics of a luatos-fota process: what a fleet operator watches and alerts on.

One registry per process (an instance is one process), exposed at ``/metrics``. The server
calls the named functions below, one line at each place where the thing happens; nothing here
reaches into the server, so the module can be called from anywhere (the preflight of a release,
a CLI run in-process) without an import circle.

No metric has a device label: a scrape costs the same with 10 devices or 10 million.
Names and meanings are listed in docs/operations.md.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import Message, Send

from .codes import outcome_label

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CHECKINS = Counter("luatos_fota_checkins", "Device check-ins answered, by channel (v1 libfota2, v2, dl) "
                   "and outcome (vendor code name)", ["channel", "outcome"], registry=REGISTRY)
SERVES = Counter("luatos_fota_serves", "Packages handed to devices, by mode (full, continuation, head)",
                 ["mode"], registry=REGISTRY)
LOOP_BANS = Counter("luatos_fota_loop_bans", "Devices banned by the loop guard (code 40)", registry=REGISTRY)
PREFLIGHT = Counter("luatos_fota_preflight_results", "Release preflight runs, by result", ["result"],
                    registry=REGISTRY)
RESPONSE_BYTES = Counter("luatos_fota_response_bytes", "Response body bytes sent, by endpoint",
                         ["endpoint"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("luatos_fota_request_duration_seconds", "Time from request to last response "
                            "byte, by endpoint and status", ["endpoint", "status"],
                            buckets=_LATENCY_BUCKETS, registry=REGISTRY)
STORE_SECONDS = Histogram("luatos_fota_store_call_duration_seconds", "Database and disk calls made while "
                          "answering devices (worker-thread wait included), by call", ["call"],
                          buckets=_LATENCY_BUCKETS, registry=REGISTRY)
BLOB_FETCHES = Counter("luatos_fota_blob_fetches", "Packages fetched from the object store into the local "
                       "cache, by result (ok, missing, error)", ["result"], registry=REGISTRY)
BLOB_FETCH_SECONDS = Histogram("luatos_fota_blob_fetch_duration_seconds", "Object-store fetches into the "
                               "local cache", buckets=_LATENCY_BUCKETS, registry=REGISTRY)


class _PushSessions(Collector):
    """Devices logged in on this process's push channels, counted at scrape time."""

    def __init__(self) -> None:
        self.hubs: weakref.WeakSet[Any] = weakref.WeakSet()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("luatos_fota_push_sessions_online", "Devices logged in on the push channel",
                                value=sum(int(h.online_count) for h in list(self.hubs)))

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("luatos_fota_push_sessions_online", "Devices logged in on the push channel")


_PUSH = _PushSessions()
REGISTRY.register(_PUSH)


# ---------------------------------------------------------------------------- called by the server

# Labelled children looked up once: ``.labels()`` costs a lock and a dict build per call, and
# these run on every device request.
_checkin_children: dict[tuple[str, int | None], Any] = {}
_latency_children: dict[tuple[str, str], Any] = {}
_bytes_children: dict[str, Any] = {}
_serve_children: dict[str, Any] = {}


def checkin(channel: str, code: int | None) -> None:
    """A device check-in was answered with vendor ``code``."""
    child = _checkin_children.get((channel, code))
    if child is None:
        child = _checkin_children.setdefault((channel, code), CHECKINS.labels(channel, outcome_label(code)))
    child.inc()


def serve(mode: str) -> None:
    """A package was handed to a device (``full``, ``continuation``, ``head`` or ``download``)."""
    child = _serve_children.get(mode)
    if child is None:
        child = _serve_children.setdefault(mode, SERVES.labels(mode))
    child.inc()


def loop_ban() -> None:
    LOOP_BANS.inc()


def preflight(result: str) -> None:
    """A release preflight finished with ``result`` (e.g. ``passed``, ``failed``, ``skipped``)."""
    PREFLIGHT.labels(result).inc()


def watch_push_hub(hub: Any) -> None:
    """Count ``hub.online_count`` into luatos_fota_push_sessions_online while the hub lives."""
    if hub is not None:
        _PUSH.hubs.add(hub)


@contextmanager
def store_call(name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        STORE_SECONDS.labels(name).observe(time.perf_counter() - t0)


@contextmanager
def blob_fetch() -> Iterator[None]:
    """Around a fetch from the object store: counts it by result and times it."""
    t0 = time.perf_counter()
    result = "error"
    try:
        yield
        result = "ok"
    except FileNotFoundError:
        result = "missing"
        raise
    finally:
        BLOB_FETCHES.labels(result).inc()
        BLOB_FETCH_SECONDS.observe(time.perf_counter() - t0)


def endpoint_of(path: str) -> str:
    """The endpoint label of a request path (a handful of values, never the raw path)."""
    if path.startswith("/dl/"):
        return "download"
    if path.startswith("/admin"):
        return "admin"
    if path.startswith("/dashboard"):
        return "dashboard"
    if path in ("/metrics", "/healthz", "/readyz"):
        return "ops"
    if path.startswith("/api/site/turnkey_fota"):
        return "v2"
    return "device"


def observe_response(path: str, send: Send) -> Send:
    """Wrap an ASGI ``send`` so the response's body bytes and its time to the last byte are
    recorded under the endpoint of ``path``."""
    t0 = time.perf_counter()
    endpoint = endpoint_of(path)
    status = ["0"]

    async def counting_send(message: Message) -> None:
        await send(message)
        kind = message["type"]
        if kind == "http.response.start":
            status[0] = str(message["status"])
        elif kind == "http.response.body":
            body = message.get("body")
            if body:
                sent = _bytes_children.get(endpoint)
                if sent is None:
                    sent = _bytes_children.setdefault(endpoint, RESPONSE_BYTES.labels(endpoint))
                sent.inc(len(body))
            if not message.get("more_body", False):
                key = (endpoint, status[0])
                hist = _latency_children.get(key)
                if hist is None:
                    hist = _latency_children.setdefault(key, REQUEST_SECONDS.labels(*key))
                hist.observe(time.perf_counter() - t0)
    return counting_send


def exposition() -> bytes:
    """The text a Prometheus scrape gets."""
    return generate_latest(REGISTRY)
