"""Endpoints for the machinery around a server: ``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` says the process answers (a supervisor restarts it when it does not): it touches
nothing outside memory, so a slow database never makes a healthy process look dead.
``/readyz`` says this instance can do its work: the database answers and the package store is
reachable (a load balancer takes the instance out of rotation while it is not). ``/metrics``
is the Prometheus exposition of :mod:`luatos_fota.metrics`.

None of them needs the admin token: they carry no device data. Keep them off the public
listener if that matters (docs/deploy.md shows the nginx rule).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import metrics

READY_TIMEOUT_S = 5.0
_STARTED = time.time()


async def healthz(request: Request) -> Response:
    app: Any = request.app
    edge = getattr(app.state, "edge", None)  # the HTTP edge's counters (server.py)
    return JSONResponse({"ok": True, "inflight": app.inflight, "uptime_s": round(time.time() - _STARTED, 1),
                         "connections": edge.open_total if edge else None,
                         "refused_connections": edge.refused if edge else None,
                         "timed_out": edge.timed_out if edge else None,
                         "too_large": edge.too_large if edge else None,
                         "audit_suppressed": app.fota.writer.suppressed_total})


async def readyz(request: Request) -> Response:
    app: Any = request.app
    store = app.state.store
    checks: dict[str, str] = {}
    for name, probe in (("database", store.db.ping), ("blobs", store.blobs.check)):
        try:
            with anyio.fail_after(READY_TIMEOUT_S):
                await app.offload(probe)
            checks[name] = "ok"
        except TimeoutError:
            checks[name] = f"no answer within {READY_TIMEOUT_S:g} s"
        except Exception as e:  # any failure means "not ready"; the reason goes to the operator
            checks[name] = f"{type(e).__name__}: {e}"[:500]
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"ok": ok, **checks}, 200 if ok else 503)


async def metrics_endpoint(request: Request) -> Response:
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)


def ops_routes() -> list[Route]:
    return [Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"])]
