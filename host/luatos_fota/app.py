"""The ASGI application: device endpoint, v2 API, downloads, admin API and dashboard.

``create_app(data_dir, db_url=None, admin_token=None, **cfg)`` returns a Starlette app. Device
traffic (libfota2 check-ins, v2 checks, ``/dl/`` downloads) is answered by a raw-ASGI fast path
in :meth:`FotaApp.__call__` before Starlette routing, for two reasons: a libfota2 request whose
base URL lacked ``?`` has its query glued to the path (``/api/site/firmware_upgrademac=…``), which
no router can match, and check-ins are the hot path (benchmark goal: 2,000 "no update"
check-ins per second on 2 cores).

Device-facing answers (reference §11.4): upgrade -> 200 with the whole package (Content-Length
always, ``application/octet-stream``, ``Accept-Ranges``, strong ``ETag: "<sha256>"``,
``Repr-Digest``), Range -> 206/416; up to date -> 304 without body and ``Cache-Control:
no-store``; refusals -> 4xx JSON ``{"code","msg"}`` with vendor codes; overload/rate limit ->
429/503 with ``Retry-After``. Never a redirect.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .blobs import BlobStore
from .config import ServerConfig
from .devrequest import looks_like_device_request, parse_device_request, raw_target
from .httpio import header, send_bytes, send_json, send_package
from .ratelimit import TokenBuckets, retry_after_seconds
from .service import CODE_INVALID_DEVICE, CODE_WAIT, FotaService, Outcome, Query
from .store import NotFound, Store

log = logging.getLogger("luatos_fota.app")

STATIC_DIR = Path(__file__).with_name("static")
TOKEN_ENV = "LUATOS_FOTA_TOKEN"
TOKEN_FILE = "admin_token"
V2_CHECK = "/api/site/turnkey_fota"
V2_RESULT = "/api/site/turnkey_fota_result"


def resolve_admin_token(data_dir: Path, given: str | None) -> str:
    """``--admin-token``, else ``$LUATOS_FOTA_TOKEN``, else DATA/admin_token (created 0600 once)."""
    if given:
        return given
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env
    path = Path(data_dir) / TOKEN_FILE
    if path.is_file():
        tok = path.read_text().strip()
        if tok:
            return tok
    tok = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(tok + "\n")
    return tok


class BlobCache:
    """Recently served packages kept in memory (bounded), so a rollout does not re-read disk."""

    def __init__(self, blobs: BlobStore, max_bytes: int = 64 << 20) -> None:
        self.blobs = blobs
        self.max_bytes = max_bytes
        self._d: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def get(self, sha: str) -> bytes | None:
        b = self._d.get(sha)
        if b is not None:
            self._d.move_to_end(sha)
            return b
        try:
            b = self.blobs.read(sha)
        except (FileNotFoundError, ValueError):
            return None
        if len(b) <= self.max_bytes // 4:
            self._d[sha] = b
            self._size += len(b)
            while self._size > self.max_bytes:
                _, old = self._d.popitem(last=False)
                self._size -= len(old)
        return b


def client_ip(scope: Any) -> str:
    c = scope.get("client")
    return c[0] if c else ""


class FotaApp(Starlette):
    """Starlette plus the raw fast path for device traffic; see the module docstring."""

    fota: FotaService
    blob_cache: BlobCache
    device_buckets: TokenBuckets
    ip_buckets: TokenBuckets
    artifacts: dict[str, dict[str, Any]]
    inflight: int = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/dl/"):
                return await self._guarded(self._download, scope, receive, send)
            if path == V2_CHECK:
                return await self._guarded(self._v2_check, scope, receive, send)
            if not path.startswith("/admin") and not path.startswith("/dashboard"):
                target = raw_target(scope)
                if looks_like_device_request(target):
                    return await self._guarded(self._device, scope, receive, send, target)
        await super().__call__(scope, receive, send)

    async def _guarded(self, handler: Any, scope: dict, receive: Any, send: Any, *args: Any) -> None:
        if self.inflight >= self.fota.config.max_inflight:
            ra = str(self.fota.config.retry_after_s).encode()
            await send_json(send, 503, {"code": CODE_WAIT, "msg": "server overloaded, retry later"},
                            [(b"retry-after", ra)])
            return
        self.inflight += 1
        started = [False]

        async def tracking_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        try:
            await handler(scope, receive, tracking_send, *args)
        except Exception:
            # A store outage (database unreachable, disk error) must not look like "no update"
            # or a broken package: answer 503 + Retry-After so devices simply try later.
            log.exception("device request failed: %s %s", scope["method"], scope["path"])
            if not started[0]:
                await send_json(send, 503, {"code": CODE_WAIT, "msg": "server error, retry later"},
                                [(b"retry-after", str(self.fota.config.retry_after_s).encode())])
        finally:
            self.inflight -= 1

    def _rate_limited(self, ip: str, device_key: str | None) -> float:
        wait = self.ip_buckets.take(ip) if ip else 0.0
        if not wait and device_key and device_key != "nil":
            wait = self.device_buckets.take(device_key)
        return wait

    async def _send_limited(self, send: Any, wait: float) -> None:
        await send_json(send, 429, {"code": CODE_WAIT, "msg": "too many requests; retry later"},
                        [(b"retry-after", str(retry_after_seconds(wait)).encode())])

    # ------------------------------------------------------------------ libfota2 endpoint

    async def _device(self, scope: dict, receive: Any, send: Any, target: bytes) -> None:
        svc = self.fota
        ip = client_ip(scope)
        req = parse_device_request(target)
        wait = self._rate_limited(ip, req.device_id)
        if wait:
            svc.writer.audit({"ts": time.time(), "event": "rate_limited", "device_key": req.device_id,
                              "product_id": None, "release_id": None, "status": 429, "code": CODE_WAIT,
                              "ip": ip or None, "actor": None, "detail": ""})
            return await self._send_limited(send, wait)
        head = scope["method"] == "HEAD"
        if scope["method"] not in ("GET", "HEAD"):
            return await send_json(send, 405, {"code": CODE_INVALID_DEVICE,
                                               "msg": f"method {scope['method']} not allowed; libfota2 sends GET"},
                                   [(b"allow", b"GET, HEAD")])
        q = Query("v1", req.key_type, req.device_id, req.project_key, req.firmware_name, req.version, ip,
                  alt_project_key=req.alt("project_key"), alt_firmware_name=req.alt("firmware_name"))
        rng = header(scope, b"range")
        # A Range continuation (bytes=N-, N>0) of a download already counted is not a new serve.
        counts = not head and (rng is None or rng.strip().lower().replace(b" ", b"") in (b"bytes=0-",))
        out = svc.decide(q, count_serve=counts)
        svc.seen(out, ip)
        extra_detail: dict[str, Any] = {"path": req.base_path, "glued": req.glued}
        if req.problems:
            extra_detail["problems"] = req.problems
        if out.serve and out.release is not None:
            rel = out.release
            data = self.blob_cache.get(rel.sha256)
            if data is None:
                out = Outcome(CODE_WAIT, "package temporarily unavailable", product=out.product,
                              device=out.device, release=rel, reason="blob vanished")
            else:
                hdrs = [(b"x-fota-release", str(rel.id).encode()),
                        (b"x-fota-version", str(out.target).encode())]
                if out.fota_sn:
                    hdrs.append((b"x-fota-sn", out.fota_sn.encode()))
                status = await send_package(send, scope, data, rel.sha256, hdrs, head=head)
                svc.audit("serve" if status in (200, 206) else "checkin", out, q, status,
                          fota_sn=out.fota_sn, range=rng.decode("latin-1") if rng else None, **extra_detail)
                return
        status = out.status
        if status == 304 and not svc.config.audit_up_to_date:
            pass
        else:
            svc.audit("checkin", out, q, status, **extra_detail)
        if status == 304:
            await send_bytes(send, 304, [(b"cache-control", b"no-store"), (b"x-fota-code", b"27")])
            return
        extra = [(b"retry-after", str(svc.config.retry_after_s).encode())] if status == 503 else []
        await send_json(send, status, {"code": out.code, "msg": out.msg}, extra, head=head)

    # ------------------------------------------------------------------ v2 (libfota3-shaped)

    def _base_url(self, scope: Any) -> str:
        if self.fota.config.public_url:
            return self.fota.config.public_url.rstrip("/")
        host = header(scope, b"host")
        if host:
            return f"{scope.get('scheme', 'http')}://{host.decode('latin-1')}"
        s = scope.get("server") or ("127.0.0.1", 80)
        return f"{scope.get('scheme', 'http')}://{s[0]}:{s[1]}"

    async def _v2_check(self, scope: dict, receive: Any, send: Any) -> None:
        svc = self.fota
        ip = client_ip(scope)
        if scope["method"] != "GET":
            return await send_json(send, 405, {"code": CODE_INVALID_DEVICE, "msg": "use GET"})
        params: dict[str, str] = {}
        for k, v in parse_qsl((scope.get("query_string") or b"").decode("utf-8", "replace"), keep_blank_values=True):
            params.setdefault(k.lower(), v)
        key_type = next((k for k in ("mac", "imei", "uid") if k in params), None)
        dev_id = params.get(key_type) if key_type else None
        wait = self._rate_limited(ip, dev_id)
        if wait:
            return await self._send_limited(send, wait)
        core = (params.get("core_version") or "").strip().lstrip("Vv")
        script = (params.get("script_version") or "").strip()
        version = None
        if core and script:
            parts = script.split(".")
            version = f"{core}.{parts[0]}.{parts[-1]}" if len(parts) == 3 else f"{core}.{script}"
        q = Query("v2", key_type, dev_id, params.get("project_key"), params.get("firmware_name"),
                  version, ip, script_name=params.get("script_name"))
        out = svc.decide(q)
        svc.seen(out, ip)
        svc.audit("v2_check", out, q, 200, model=params.get("model"), core_id=params.get("core_id"))
        body: dict[str, Any] = {"code": out.code, "msg": out.msg}
        if out.serve and out.release is not None and out.target is not None:
            r = out.release
            body.update(core_version=str(out.target.core), script_version=str(r.script),
                        size=r.size, sha256=r.sha256, fota_sn=out.fota_sn,
                        url=f"{self._base_url(scope)}/dl/{r.sha256}.bin?fota_sn={out.fota_sn}")
        else:
            body.update(core_version="", script_version="", size=0, sha256="", fota_sn="", url="")
        await send_json(send, 200, body)

    async def v2_result(self, request: Request) -> Response:
        try:
            obj = json.loads(await request.body())
        except ValueError as e:
            return JSONResponse({"code": 1, "msg": f"body is not JSON: {e}"}, 400)
        if not isinstance(obj, dict) or "fota_sn" not in obj or "result_code" not in obj:
            return JSONResponse({"code": 1, "msg": 'expected {"fota_sn": "...", "result_code": N}'}, 400)
        try:
            rc = int(obj["result_code"])
        except (TypeError, ValueError):
            return JSONResponse({"code": 1, "msg": f"result_code {obj['result_code']!r} is not an integer"}, 400)
        try:
            res = self.fota.store.record_result(str(obj["fota_sn"]), rc, client_ip(request.scope))
        except NotFound as e:
            return JSONResponse({"code": 1, "msg": str(e)}, 404)
        return JSONResponse({"code": 0, "msg": "ok", "success": res["success"]})

    # ------------------------------------------------------------------ downloads

    async def _download(self, scope: dict, receive: Any, send: Any) -> None:
        svc = self.fota
        ip = client_ip(scope)
        if scope["method"] not in ("GET", "HEAD"):
            return await send_json(send, 405, {"code": 1, "msg": "downloads are GET or HEAD"},
                                   [(b"allow", b"GET, HEAD")])
        head = scope["method"] == "HEAD"
        wait = self.ip_buckets.take(ip) if ip else 0.0
        if wait:
            return await self._send_limited(send, wait)
        name = scope["path"][len("/dl/"):]
        art = self.artifacts.get(name)  # artifacts are immutable: cache every hit for good
        if art is None:
            if name.startswith("artifact/"):
                ident = name[len("artifact/"):].removesuffix(".bin")
                if ident.isdigit():
                    art = svc.store.artifact_by_id(int(ident))
            else:
                sha = name.removesuffix(".bin").lower()
                if len(sha) == 64 and all(c in "0123456789abcdef" for c in sha):
                    art = svc.store.artifact_by_sha(sha)
            if art is not None and len(self.artifacts) < 10_000:
                self.artifacts[name] = art
        if art is None:
            return await send_json(send, 404, {"code": 26, "msg": f"no package at {scope['path']}"}, head=head)
        data = self.blob_cache.get(art["sha256"])
        if data is None:
            return await send_json(send, 503, {"code": CODE_WAIT, "msg": "package missing from the blob store"},
                                   [(b"retry-after", b"60")], head=head)
        status = await send_package(send, scope, data, art["sha256"], head=head,
                                    cache=b"public, max-age=31536000, immutable")
        qs = dict(parse_qsl((scope.get("query_string") or b"").decode("utf-8", "replace")))
        svc.writer.audit({"ts": time.time(), "event": "download", "device_key": qs.get("mac") or qs.get("imei")
                          or qs.get("uid"), "product_id": None, "release_id": None, "status": status,
                          "code": None, "ip": ip or None, "actor": None,
                          "detail": json.dumps({"artifact": art["id"], "sha256": art["sha256"],
                                                "fota_sn": qs.get("fota_sn"), "head": head,
                                                "range": (header(scope, b"range") or b"").decode("latin-1") or None})})


def _root(request: Request) -> Response:
    if request.headers.get("user-agent") and STATIC_DIR.is_dir():
        return RedirectResponse("/dashboard/")  # browsers only; devices send no User-Agent
    return JSONResponse({"code": 25, "msg": "no device parameters in this request. A libfota2 URL without a "
                         "path (http://host:port) loses its parameters; use "
                         "http://host:port/api/site/firmware_upgrade?"}, 404)


def _bare_endpoint(request: Request) -> Response:
    return JSONResponse({"code": 25, "msg": "no device parameters: libfota2 sends "
                         "mac=|imei=|uid=, project_key=, firmware_name=, version="}, 400)


async def _healthz(request: Request) -> Response:
    app: FotaApp = request.app
    return JSONResponse({"ok": True, "generation": app.fota.catalog().generation,
                         "inflight": app.inflight})


def create_app(data_dir: str | os.PathLike[str] | Path, db_url: str | None = None,
               admin_token: str | None = None, *, push_hub: Any = None, store: Store | None = None,
               **cfg: Any) -> FotaApp:
    """Build the server app over ``data_dir`` (SQLite ``DATA/fota.db`` unless ``db_url``).

    ``cfg`` keys are :class:`luatos_fota.config.ServerConfig` fields (e.g. ``loop_max_serves``,
    ``loop_window_s``, ``device_rate``, ``ip_rate``, ``public_url``). ``push_hub`` (a
    :class:`luatos_fota.push.PushHub`, optional) is exposed as ``app.state.push_hub``; if it has
    not been started, the app starts it on ``cfg['extra']['push_port']`` in its lifespan.
    """
    from .admin import admin_routes

    data = Path(data_dir)
    config = ServerConfig.from_kwargs(**cfg)
    st = store or Store(data, db_url)
    token = resolve_admin_token(data, admin_token)
    svc = FotaService(st, config)
    if push_hub is not None and getattr(push_hub, "on_event", False) is None:
        push_hub.on_event = svc.push_event

    @contextlib.asynccontextmanager
    async def lifespan(app: FotaApp) -> AsyncIterator[None]:
        svc.writer.start()
        hub = app.state.push_hub
        started_hub = False
        if hub is not None and getattr(hub, "address", None) is None and "push_port" in config.extra:
            await hub.start(config.extra.get("push_host", "0.0.0.0"), int(config.extra["push_port"]))
            started_hub = True
        try:
            yield
        finally:
            if started_hub:
                await hub.stop()
            svc.close()

    routes: list[Any] = [
        Route("/", _root, methods=["GET", "HEAD"]),
        Route("/healthz", _healthz, methods=["GET"]),
        *admin_routes(),
    ]
    routes.append(Route(config.device_endpoint, _bare_endpoint, methods=["GET", "HEAD", "POST"]))
    app = FotaApp(routes=routes, lifespan=lifespan)
    app.router.routes.append(Route(V2_RESULT, app.v2_result, methods=["POST"]))
    if STATIC_DIR.is_dir():
        app.router.routes.append(Mount("/dashboard", app=StaticFiles(directory=STATIC_DIR, html=True),
                                       name="dashboard"))
    app.fota = svc
    app.blob_cache = BlobCache(st.blobs)
    app.device_buckets = TokenBuckets(config.device_rate, config.device_burst)
    app.ip_buckets = TokenBuckets(config.ip_rate, config.ip_burst)
    app.inflight = 0
    app.artifacts = {}
    app.state.store = st
    app.state.service = svc
    app.state.config = config
    app.state.admin_token = token
    app.state.push_hub = push_hub
    app.state.data_dir = data
    return app


def check_token(request: Request) -> bool:
    auth = request.headers.get("authorization", "")
    scheme, _, tok = auth.partition(" ")
    if scheme.lower() != "bearer" or not tok:
        return False
    return hmac.compare_digest(tok.strip().encode(), request.app.state.admin_token.encode())
