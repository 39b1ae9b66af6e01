"""The ASGI application: device endpoints, v2 API, downloads, admin API and dashboard.

``create_app(data_dir, db_url=None, admin_token=None, **cfg)`` returns a Starlette app. Device
traffic (libfota2 check-ins, v2 checks, ``/dl/`` downloads) is handed by
:class:`DeviceDispatcher` to small ASGI handlers (checkin.py, v2.py, downloads.py) before
Starlette routing, for two reasons: a libfota2 request whose base URL lacked ``?`` has its query
glued to the path (``/api/site/firmware_upgrademac=…``), which no router can match, and
check-ins are the hot path (benchmark goal: 2,000 "no update" check-ins per second on 2 cores).
The handlers share one :class:`~luatos_fota.edge.DeviceEdge`, built here once. Device-facing
answers never redirect; everything else (admin API, dashboard, ops endpoints) goes through
Starlette routing and carries the security headers below.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from . import metrics
from .admin import AdminApp, AdminContext, PushAccess
from .admin import P as ADMIN_PREFIX
from .admintoken import resolve_admin_token
from .checkin import CheckIn
from .codes import VendorCode
from .config import ServerConfig
from .devrequest import looks_like_device_request, raw_target
from .downloads import PREFIX as DL_PREFIX
from .downloads import Download
from .edge import BlobCache, DeviceEdge, Handler
from .maintenance import Maintenance
from .ops import ops_routes
from .preflight import PreflightRunner, PreflightSettings
from .push import PushHub
from .pushrelay import PushRelay
from .service import FotaService
from .store import Store
from .v2 import V2_CHECK, V2_RESULT, V2Check, V2Result

log = logging.getLogger("luatos_fota.app")

STATIC_DIR = Path(__file__).with_name("static")
# Sent with every dashboard, admin API and other non-device answer: the dashboard loads only its
# own files, cannot be framed, and leaks no URL to other sites.
# Inline style *attributes* stay allowed (the rollout bars set their width); <style> and inline
# scripts do not.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
       "img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]


class DeviceDispatcher:
    """Routes device traffic to its handler before Starlette routing: ``/dl/`` downloads, the v2
    check, and any request that looks like a libfota2 check-in (glued queries included)."""

    def __init__(self, edge: DeviceEdge) -> None:
        self.checkin = CheckIn(edge)
        self.v2_check = V2Check(edge)
        self.download = Download(edge)

    def handler(self, scope: Scope) -> Handler | None:
        """The device handler for this HTTP request, or None (Starlette routing takes it)."""
        path: str = scope["path"]
        if path.startswith(DL_PREFIX):
            return self.download
        if path == V2_CHECK:
            return self.v2_check
        if not path.startswith("/admin") and not path.startswith("/dashboard") \
                and looks_like_device_request(raw_target(scope)):
            return self.checkin
        return None


class FotaApp(Starlette):
    """Starlette plus the device handlers in front of its routing; see the module docstring.

    Everything it needs comes in through the constructor: the :class:`DeviceEdge` shared by the
    device handlers, and the objects that tests, the CLI and the ops endpoints reach as
    ``app.state.*``. ``app.state.push_relay`` is set by the lifespan once the relay runs."""

    def __init__(self, edge: DeviceEdge, *, routes: list[Any], lifespan: Any, store: Store,
                 maintenance: Maintenance, data_dir: Path, push_hub: Any, preflight: PreflightRunner) -> None:
        super().__init__(routes=routes, lifespan=lifespan)
        self.edge = edge
        self.preflight = preflight
        self.devices = DeviceDispatcher(edge)
        self.state.store = store
        self.state.service = edge.service
        self.state.config = edge.config
        self.state.admin_token = edge.admin_token
        self.state.maintenance = maintenance
        self.state.data_dir = data_dir
        self.state.push_hub = push_hub
        self.state.push_relay = None

    # Public handles on the edge (tests, the CLI and the admin API use them).
    @property
    def fota(self) -> FotaService:
        return self.edge.service

    @property
    def blob_cache(self) -> BlobCache:
        return self.edge.blob_cache


    @property
    def inflight(self) -> int:
        """Device requests being answered now."""
        return self.edge.inflight.count

    async def offload(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await self.edge.offload(fn, *args, **kwargs)

    def package_url(self, scope: Any, sha256: str, fota_sn: str | None = None) -> str:
        return self.edge.package_url(scope, sha256, fota_sn)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            send = metrics.observe_response(scope["path"], send)
            handler = self.devices.handler(scope)
            if handler is not None:
                return await self.edge.inflight(handler, scope, receive, send)

            async def secured_send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
                await send(message)

            return await super().__call__(scope, receive, secured_send)
        await super().__call__(scope, receive, send)


def _root(request: Request) -> Response:
    if request.headers.get("user-agent") and STATIC_DIR.is_dir():
        return RedirectResponse("/dashboard/")  # browsers only; devices send no User-Agent
    return JSONResponse({"code": VendorCode.INVALID_PROJECT, "msg": "no device parameters in this request. A libfota2 URL without a "
                         "path (http://host:port) loses its parameters; use "
                         "http://host:port/api/site/firmware_upgrade?"}, 404)


def _bare_endpoint(request: Request) -> Response:
    return JSONResponse({"code": VendorCode.INVALID_PROJECT, "msg": "no device parameters: libfota2 sends "
                         "mac=|imei=|uid=, project_key=, firmware_name=, version="}, 400)


def create_app(data_dir: str | os.PathLike[str] | Path, db_url: str | None = None,
               admin_token: str | None = None, *, push_hub: Any = None, store: Store | None = None,
               **cfg: Any) -> FotaApp:
    """Build the server app over ``data_dir`` (SQLite ``DATA/fota.db`` unless ``db_url``).

    ``cfg`` keys are :class:`luatos_fota.config.ServerConfig` fields (e.g. ``loop_max_serves``,
    ``loop_window_s``, ``device_rate``, ``ip_rate``, ``public_url``). ``push_hub`` (a
    :class:`luatos_fota.push.PushHub`, optional) is exposed as ``app.state.push_hub``; if it has
    not been started, the app starts it on ``cfg['extra']['push_port']`` in its lifespan.
    """
    data = Path(data_dir)
    config = ServerConfig.from_kwargs(**cfg)
    st = store or Store(data, db_url, hot_busy_timeout_s=config.hot_busy_timeout_s, blob_url=config.blob_url)
    token = resolve_admin_token(data, admin_token)
    blob_cache = BlobCache(st.blobs)
    svc = FotaService(st, config, blob_known=blob_cache.known)
    maintenance = Maintenance(st, config)
    push_access = PushAccess(push_hub)  # holds the relay once the hub listens (lifespan)
    if push_hub is not None:
        first_hook = getattr(push_hub, "on_event", None)

        async def on_push_event(kind: str, device_key: str, data: dict[str, Any]) -> None:
            if first_hook is None:
                peer = str(data.get("peer") or "").rsplit(":", 1)[0]
                ip = peer or (push_hub.peer_ip(device_key) if isinstance(push_hub, PushHub) else "")
                svc.push_event(kind, device_key, data, ip or None)
            else:
                result = first_hook(kind, device_key, data)
                if inspect.isawaitable(result):
                    await result
            if push_access.relay is not None:
                await push_access.relay.on_hub_event(kind, device_key, data)

        push_hub.on_event = on_push_event
        if getattr(push_hub, "authenticate", None) is None and isinstance(push_hub, PushHub):
            async def authenticate(device_key: str, info: dict[str, str], credential: str | None) -> str | None:
                return await anyio.to_thread.run_sync(svc.push_login_refusal, device_key, info, credential)

            push_hub.authenticate = authenticate

    @contextlib.asynccontextmanager
    async def lifespan(app: FotaApp) -> AsyncIterator[None]:
        try:  # serves whose audit rows a crash lost (store.audit.recover_serves)
            recovered = await anyio.to_thread.run_sync(st.audit.recover_serves)
            if recovered:
                log.warning("recovered the audit rows of %d serves lost by an unclean stop", recovered)
        except Exception:
            log.exception("serve audit recovery failed; continuing")
        svc.writer.start()
        maintenance.start()
        hub = app.state.push_hub
        started_hub = False
        if hub is not None and getattr(hub, "address", None) is None and "push_port" in config.extra:
            await hub.start(config.extra.get("push_host", "0.0.0.0"), int(config.extra["push_port"]))
            started_hub = True
        relay = None
        if isinstance(hub, PushHub) and hub.address is not None:
            relay = PushRelay(st.push_sessions, hub, **config.extra.get("push_relay", {}))
            await relay.start()
            app.state.push_relay = push_access.relay = relay
        app.preflight.resume_pending()
        try:
            yield
        finally:
            if relay is not None:
                app.state.push_relay = push_access.relay = None
                await relay.stop()
            if started_hub:
                await hub.stop()
            await maintenance.stop()
            svc.close()

    edge = DeviceEdge(svc, blob_cache, token)
    preflight = PreflightRunner(st, PreflightSettings(wall_limit_s=config.preflight_wall_s,
                                                      window_s=config.preflight_window_s))
    routes: list[Any] = [
        Route("/", _root, methods=["GET", "HEAD"]),
        *ops_routes(),
        Mount(ADMIN_PREFIX, app=AdminApp(AdminContext(st, svc, edge, preflight, token, push_access))),
        Route(config.device_endpoint, _bare_endpoint, methods=["GET", "HEAD", "POST"]),
        Route(V2_RESULT, V2Result(edge), methods=["POST"]),
    ]
    if STATIC_DIR.is_dir():
        routes.append(Mount("/dashboard", app=StaticFiles(directory=STATIC_DIR, html=True), name="dashboard"))
    metrics.watch_push_hub(push_hub)
    return FotaApp(edge, routes=routes, lifespan=lifespan, store=st, maintenance=maintenance, data_dir=data,
                   push_hub=push_hub, preflight=preflight)
