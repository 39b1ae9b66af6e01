"""Admin HTTP API under ``/admin/api`` (bearer token), plus its OpenAPI document.

The API is its own Starlette app (:class:`AdminApp`, mounted at ``/admin/api``): the route table
:func:`admin_routes` is the one source of what is served and of the OpenAPI document; the admin
token is checked by one middleware (admintoken.RequireAdminToken) in front of every route but
the OpenAPI document; store errors become JSON answers through the app's exception handlers
(``ERROR_ANSWERS``). Handlers reach what they work on through :class:`AdminContext`.

Every handler is a thin shell over :class:`luatos_fota.store.Store`, the same code the CLI
uses, so the API and ``luatos-fota`` can never disagree about what a release or a ban is. After
each write the app's in-memory caches are dropped, so the change applies to the next check-in
on this instance (other instances follow within ``cache_ttl_s``).

Errors are JSON ``{"code": <http status>, "msg": "..."}`` (plus ``field``/``details`` for
upload refusals); missing or wrong token -> 401.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import records
from .admintoken import RequireAdminToken
from .apidoc import JSON_BODY, AdminRoute, Op, multipart_body, openapi_document
from .blobs import BlobStoreUnavailable
from .codes import VendorCode
from .edge import DeviceEdge
from .jsonlimits import loads_limited
from .preflight import PreflightRunner
from .service import FotaService
from .store import Conflict, NotFound, Store, StoreBusy
from .uploads import UploadError

P = "/admin/api"  # where the admin app is mounted


@dataclass
class PushAccess:
    """The push channel as the admin API reaches it: this instance's hub (None: no push port),
    and the relay (devices on every instance sharing the database) once the lifespan started it."""

    hub: Any = None
    relay: Any = None

    def pusher(self) -> Any:
        """What sends pushes: the relay when it runs, else this instance's hub alone."""
        return self.relay or self.hub

    async def online(self) -> list[dict[str, Any]]:
        if self.relay is not None:
            return list(await self.relay.online())
        return list(self.hub.online())


@dataclass(frozen=True)
class AdminContext:
    """What the admin handlers work on (given to :class:`AdminApp` when it is built)."""

    store: Store
    service: FotaService
    edge: DeviceEdge  # download links (package_url)
    preflight: PreflightRunner
    admin_token: str
    push: PushAccess = field(default_factory=PushAccess)


def _err(status: int, msg: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"code": status, "msg": msg, **extra}, status)


def _ok(obj: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(json.loads(json.dumps(obj, default=records.to_json)), status)


# What a handler's exception answers (Starlette picks the most specific class of the exception):
# errors are JSON {"code": <http status>, "msg": ...}.
def _upload_refused(request: Request, e: Exception) -> Response:
    assert isinstance(e, UploadError)
    return JSONResponse(e.as_json() | {"code": 422}, 422)


def _store_busy(request: Request, e: Exception) -> Response:  # device traffic held the database
    return JSONResponse({"code": 503, "msg": f"{e}; retry later"}, 503, headers={"Retry-After": "5"})


def _blobs_down(request: Request, e: Exception) -> Response:  # the object store is down
    return JSONResponse({"code": 503, "msg": f"{e}; nothing was recorded, retry later"}, 503,
                        headers={"Retry-After": "30"})


ERROR_ANSWERS: dict[Any, Callable[[Request, Exception], Response]] = {
    UploadError: _upload_refused,
    NotFound: lambda request, e: _err(404, str(e)),
    Conflict: lambda request, e: _err(409, str(e)),
    StoreBusy: _store_busy,
    BlobStoreUnavailable: _blobs_down,
    ValueError: lambda request, e: _err(400, str(e)),
    TypeError: lambda request, e: _err(400, str(e)),
}


class AdminApp(Starlette):
    """The admin API as its own Starlette app (mounted at ``/admin/api``): the route table of
    :func:`admin_routes`, the admin-token middleware, and the error answers above."""

    def __init__(self, ctx: AdminContext) -> None:
        routes = admin_routes()
        super().__init__(routes=routes, exception_handlers=ERROR_ANSWERS,
                         middleware=[Middleware(RequireAdminToken, token=ctx.admin_token, routes=routes)])
        self.ctx = ctx


def _ctx(request: Request) -> AdminContext:
    app = request.app
    assert isinstance(app, AdminApp)
    return app.ctx


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        obj = loads_limited(raw, _ctx(request).service.config.json_max_depth)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"request body is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError("request body must be a JSON object")
    return obj


def _store(request: Request) -> Store:
    return _ctx(request).store


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Store calls run in a worker thread: a slow database never stalls device traffic."""
    return await run_in_threadpool(fn, *args, **kwargs)


def _changed(request: Request) -> None:
    _ctx(request).service.invalidate()


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    return str(v).strip().lower() in ("1", "true", "yes", "on")


def _int_param(request: Request, name: str, default: int | None = None) -> int | None:
    v = request.query_params.get(name)
    if v in (None, ""):
        return default
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"query parameter {name}={v!r} is not an integer") from None


def _devices_field(v: Any) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return [d for d in v.replace(",", " ").split() if d]
    if isinstance(v, list):
        return [str(d) for d in v]
    raise ValueError("devices must be a list of ids or a comma-separated string")


# ---------------------------------------------------------------------------- products

async def products(request: Request) -> Response:
    st = _store(request)
    if request.method == "GET":
        return _ok({"products": await _call(st.products.all)})
    body = await _json(request)
    for f in ("project_key", "firmware_name"):
        if not body.get(f):
            raise ValueError(f"field {f!r} is required")
    p = await _call(st.products.add, body["project_key"], body["firmware_name"], body.get("name", ""),
                       _bool(body.get("auto_register", True)), actor="api")
    _changed(request)
    return _ok(p, 201)


async def product_one(request: Request) -> Response:
    st = _store(request)
    pid = int(request.path_params["pid"])
    if request.method == "GET":
        return _ok(await _call(st.products.get, pid))
    body = await _json(request)
    p = await _call(st.products.update, pid, name=body.get("name"),
                          auto_register=_bool(body["auto_register"]) if "auto_register" in body else None,
                          actor="api")
    if "auth_mode" in body:
        p = await _call(st.products.set_auth, pid, str(body["auth_mode"]), secret=body.get("auth_secret"),
                        actor="api")
    _changed(request)
    return _ok(p)


async def product_tokens(request: Request) -> Response:
    """Import per-device tokens: JSON ``{"tokens": [{"device": id, "token": secret}, ...]}`` or a
    CSV body (``device,token`` per line, header optional)."""
    st = _store(request)
    pid = int(request.path_params["pid"])
    if "csv" in request.headers.get("content-type", ""):
        text = (await request.body()).decode("utf-8", "replace")
        pairs = parse_token_csv(text)
    else:
        body = await _json(request)
        rows = body.get("tokens")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError('expected {"tokens": [{"device": "...", "token": "..."}, ...]}')
        pairs = [(str(r.get("device", "")), str(r.get("token", ""))) for r in rows]
    n = await _call(st.products.import_device_tokens, pid, pairs, actor="api")
    _changed(request)
    return _ok({"imported": n})


def parse_token_csv(text: str) -> list[tuple[str, str]]:
    """``device,token`` lines (a ``device,token`` header line is skipped); errors name the line."""
    import csv
    import io

    out = []
    for n, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not "".join(row).strip():
            continue
        if n == 1 and [c.strip().lower() for c in row[:2]] == ["device", "token"]:
            continue
        if len(row) != 2:
            raise ValueError(f"CSV line {n}: expected 'device,token', got {len(row)} fields")
        out.append((row[0], row[1]))
    return out


# ---------------------------------------------------------------------------- releases

async def releases(request: Request) -> Response:
    st = _store(request)
    if request.method == "GET":
        rels = await _call(st.releases.all, _int_param(request, "product_id"))
        if _bool(request.query_params.get("links", "")):  # the dashboard's links: packages are
            return _ok({"releases": [                        # private, so signed and short-lived
                r.to_json() | {"download_link": _ctx(request).edge.package_url(request.scope, r.sha256)}
                for r in rels]})
        return _ok({"releases": rels})
    cap = _ctx(request).service.config.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap + (64 << 10):  # + room for the form fields
        return _err(413, f"upload of {declared} bytes; packages over {cap} bytes (max_upload_bytes) are refused")
    async with request.form(max_files=2, max_fields=50) as form:
        up = form.get("file") or form.get("package")
        if up is None or isinstance(up, str):
            raise UploadError("file", "multipart field 'file' (the package) is missing")
        data = await up.read(cap + 1)
        if len(data) > cap:
            return _err(413, f"package over {cap} bytes (max_upload_bytes); refused")
        base = form.get("baseline")
        baseline = await base.read(cap + 1) if base is not None and not isinstance(base, str) else None
        if baseline is not None and len(baseline) > cap:
            return _err(413, f"baseline over {cap} bytes (max_upload_bytes); refused")
        f = {k: v for k, v in form.items() if isinstance(v, str)}
        filename = f.get("filename") or up.filename
    if f.get("product_id"):
        pid = int(f["product_id"])
    elif f.get("project_key"):
        pid = (await _call(st.products.find, f["project_key"], f.get("firmware_name") or None)).id
    else:
        raise UploadError("product_id", "give product_id, or project_key (+ firmware_name)")
    percent = float(f["percent"]) if f.get("percent") not in (None, "") else None
    skip = _bool(f.get("skip_preflight", "false"))
    if skip and baseline is not None:
        raise UploadError("baseline", "a baseline is for the preflight; it was asked to be skipped")
    # Off the event loop: validation, hashing and the fsynced blob write take a while for big files.
    rel = await run_in_threadpool(
        st.releases.add, data, product_id=pid, version=f.get("version") or None, core=f.get("core") or None,
        kind=f.get("kind") or None, filename=filename, notes=f.get("notes", ""),
        enabled=_bool(f.get("enabled", "true")), forced=_bool(f.get("forced", "false")),
        percent=percent, device_keys=_devices_field(f.get("devices")),
        allow_downgrade=_bool(f.get("downgrade", "false")),
        preflight="skipped" if skip else "pending", actor="api")
    if not skip:
        base_path = None
        if baseline:
            base_path = st.data_dir / "preflight" / f"baseline-{rel.id}.bin"
            base_path.parent.mkdir(exist_ok=True)
            await run_in_threadpool(base_path.write_bytes, baseline)
        _ctx(request).preflight.submit(rel.id, baseline=base_path)
    _changed(request)
    return _ok(rel, 201)


async def release_preflight(request: Request) -> Response:
    """Run the release's preflight again (e.g. after one that could not run); answers at once."""
    st = _store(request)
    rid = int(request.path_params["rid"])
    rel = await _call(st.releases.get, rid)
    if rel.preflight_status == "running":
        return _err(409, f"release {rid}: a preflight is already running")
    await _call(st.releases.request_preflight, rid, actor="api")
    _ctx(request).preflight.submit(rid)
    _changed(request)
    return _ok(await _call(st.releases.get, rid), 202)


async def release_one(request: Request) -> Response:
    st = _store(request)
    rid = int(request.path_params["rid"])
    if request.method == "GET":
        return _ok(await _call(st.releases.get, rid))
    body = await _json(request)
    rel = await _call(st.releases.update, rid, enabled=_bool(body["enabled"]) if "enabled" in body else None,
                            forced=_bool(body["forced"]) if "forced" in body else None,
                            notes=body.get("notes"), actor="api")
    _changed(request)
    return _ok(rel)


async def release_enable(request: Request) -> Response:
    rel = await _call(_store(request).releases.update, int(request.path_params["rid"]), enabled=True, actor="api")
    _changed(request)
    return _ok(rel)


async def release_pause(request: Request) -> Response:
    rel = await _call(_store(request).releases.update, int(request.path_params["rid"]), enabled=False, actor="api")
    _changed(request)
    return _ok(rel)


async def release_archive(request: Request) -> Response:
    rel = await _call(_store(request).releases.archive, int(request.path_params["rid"]), actor="api")
    _changed(request)
    return _ok(rel)


async def release_target(request: Request) -> Response:
    body = await _json(request)
    mode = body.get("mode")
    if mode is None:
        mode = "devices" if body.get("devices") else ("percent" if "percent" in body else "all")
    pct = body.get("percent")
    rel = await _call(_store(request).releases.set_target, int(request.path_params["rid"]), mode,
                                             percent=float(pct) if pct is not None else None,
                                             device_keys=_devices_field(body.get("devices")), actor="api")
    _changed(request)
    return _ok(rel)


async def artifacts(request: Request) -> Response:
    return _ok({"artifacts": await _call(_store(request).releases.artifacts)})


# ---------------------------------------------------------------------------- devices

async def devices(request: Request) -> Response:
    st = _store(request)
    if request.method == "POST":
        body = await _json(request)
        if not body.get("device"):
            raise ValueError("field 'device' is required")
        d = await _call(st.devices.register, body["device"], body.get("product_id"), body.get("key_type", "mac"), actor="api")
        _changed(request)
        return _ok(d, 201)
    banned_q = request.query_params.get("banned")
    rows = await _call(st.devices.all, product_id=_int_param(request, "product_id"),
                           banned=None if banned_q in (None, "") else _bool(banned_q),
                           limit=_int_param(request, "limit", 1000) or 1000,
                           offset=_int_param(request, "offset", 0) or 0)
    return _ok({"devices": rows})


async def device_one(request: Request) -> Response:
    return _ok(await _call(_store(request).devices.require, request.path_params["key"]))


async def device_ban(request: Request) -> Response:
    body = await _json(request)
    d = await _call(_store(request).devices.ban, request.path_params["key"], body.get("reason", ""), actor="api")
    _changed(request)
    return _ok(d)


async def device_unban(request: Request) -> Response:
    d = await _call(_store(request).devices.unban, request.path_params["key"], actor="api")
    _changed(request)
    return _ok(d)


async def device_pin(request: Request) -> Response:
    body = await _json(request)
    rid = body.get("release_id")
    d = await _call(_store(request).devices.pin, request.path_params["key"], int(rid) if rid is not None else None, actor="api")
    _changed(request)
    return _ok(d)


# ---------------------------------------------------------------------------- audit and stats

async def audit(request: Request) -> Response:
    await _call(_ctx(request).service.writer.flush)  # show what was decided up to now, not up to the last flush
    rows = await _call(_store(request).audit.query,
        device_key=request.query_params.get("device") or None, event_=request.query_params.get("event") or None,
        release_id=_int_param(request, "release_id"), limit=_int_param(request, "limit", 200) or 200,
        before_id=_int_param(request, "before_id"))
    return _ok({"audit": rows})


def _seconds(body: dict[str, Any], name: str) -> float:
    v = body.get(name)
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ValueError(f"field {name!r} must be a number of seconds >= 0, not {v!r}")
    return float(v)


async def audit_prune(request: Request) -> Response:
    n = await _call(_store(request).audit.prune, _seconds(await _json(request), "older_than_s"), actor="api")
    return _ok({"deleted": n})


async def blobs_gc(request: Request) -> Response:
    removed = await _call(_store(request).releases.gc_blobs, _seconds(await _json(request), "min_age_s"))
    return _ok({"removed": removed})


async def stats(request: Request) -> Response:
    await _call(_ctx(request).service.writer.flush)
    return _ok({"releases": await _call(_store(request).releases.stats, _int_param(request, "release_id"))})


# ---------------------------------------------------------------------------- push

async def push_online(request: Request) -> Response:
    access = _ctx(request).push
    if access.hub is None:
        return _err(503, "push channel not running (start the server with --push-port)")
    return _ok({"online": await access.online()})


async def push(request: Request) -> Response:
    """Push a FOTA command; by default the ``###`` download URL of the release's package."""
    ctx = _ctx(request)
    if ctx.push.hub is None:
        return _err(503, "push channel not running (start the server with --push-port)")
    from .push import fota_command

    body = await _json(request)
    device_keys = _devices_field(body.get("devices"))
    rid = body.get("release_id")
    url = body.get("url")
    version = body.get("version")
    rel = None
    if rid is not None:
        rel = await _call(ctx.store.releases.get, int(rid))
        version = version or rel.script_version
        if not url:
            url = ctx.edge.package_url(request.scope, rel.sha256)
    if not url and not body.get("message"):
        raise ValueError("give release_id, url or message")
    if rel is None or body.get("message") or body.get("url"):
        # An operator's own message or URL goes out as given (nothing to decide on).
        if device_keys is None:
            raise ValueError("give devices, or release_id to push to its online targeted devices")
        message = body.get("message") or fota_command(str(url), version)
        sent = await ctx.push.pusher().push(device_keys, message)
        return _ok({"message": message, "results": sent, "skipped": {}})
    # A release push: the service decides per device (releasepush.py), each send a counted serve.
    plan = await _call(ctx.service.plan_release_push, rel.id, rel.product_id, await ctx.push.online(),
                       device_keys)
    messages = {s.device_key: fota_command(ctx.edge.package_url(request.scope, rel.sha256, s.fota_sn), version)
                for s in plan.sends.values()}
    # Decided one by one (each a counted serve), sent all at once: a device on another instance
    # costs a relay round trip, and a thousand of them must not queue behind each other.
    pusher = ctx.push.pusher()
    results: dict[str, str] = dict.fromkeys(plan.offline, "offline")
    for one in await asyncio.gather(*(pusher.push([s.session_device], messages[s.device_key])
                                      for s in plan.sends.values())):
        results.update(one)
    ctx.service.audit_release_push(plan, rel.id, results)
    return _ok({"message": next(iter(messages.values()), None), "results": results, "skipped": plan.skipped})


# ---------------------------------------------------------------------------- routes and openapi

RELEASE_UPLOAD = multipart_body(
    ["file"], ["product_id", "project_key", "firmware_name", "version", "core", "kind", "notes", "percent",
               "devices", "forced", "enabled", "downgrade", "skip_preflight", "filename"],
    files=["file", "baseline"])
TOKENS_BODY: dict[str, Any] = {"content": {
    "application/json": {"schema": {"type": "object", "required": ["tokens"]}},
    "text/csv": {"schema": {"type": "string"}}}}


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_doc())


def admin_routes() -> list[AdminRoute]:
    """The admin API: each route with its documentation (the OpenAPI document is built from this)."""
    target = Op("Targeting {mode: all|devices|percent, percent?, devices?}", JSON_BODY)
    return [
        AdminRoute("/openapi.json", openapi, {"get": Op("This document")}, public=True),
        AdminRoute("/products", products, {
            "get": Op("List products"),
            "post": Op("Create a product {project_key, firmware_name, name?, auto_register?}", JSON_BODY, status=201)}),
        AdminRoute("/products/{pid:int}", product_one, {
            "get": Op("One product"),
            "patch": Op("Update {name?, auto_register?, auth_mode?, auth_secret?}", JSON_BODY)}),
        AdminRoute("/products/{pid:int}/tokens", product_tokens, {
            "post": Op('Import per-device tokens {"tokens": [{"device", "token"}]}, or CSV lines '
                       "device,token", TOKENS_BODY)}),
        AdminRoute("/releases", releases, {
            "get": Op("List releases", params=("product_id", "links")),
            "post": Op("Upload a release (multipart: file, version?, core?, kind?, percent?, devices?, enabled?, "
                       "forced?, downgrade?, skip_preflight?, baseline? (file)); 422 with field+msg when refused; "
                       "the release stays disabled until its preflight passes (preflight_status, "
                       "preflight_result)", RELEASE_UPLOAD, status=201)}),
        AdminRoute("/releases/{rid:int}", release_one, {
            "get": Op("One release"),
            "patch": Op("Update {enabled?, forced?, notes?}", JSON_BODY)}),
        AdminRoute("/releases/{rid:int}/enable", release_enable, {"post": Op("Enable (resume) a release")}),
        AdminRoute("/releases/{rid:int}/pause", release_pause, {"post": Op("Pause a release")}),
        AdminRoute("/releases/{rid:int}/archive", release_archive, {
            "post": Op("Archive a release: paused for good, listed apart")}),
        AdminRoute("/releases/{rid:int}/preflight", release_preflight, {
            "post": Op("Run the release's preflight again", status=202)}),
        AdminRoute("/releases/{rid:int}/target", release_target, {"post": target, "put": target}),
        AdminRoute("/artifacts", artifacts, {"get": Op("Stored packages")}),
        AdminRoute("/devices", devices, {
            "get": Op("Devices with versions, last seen, ban state", params=("product_id", "banned", "limit", "offset")),
            "post": Op("Pre-register a device {device, product_id?, key_type?}", JSON_BODY, status=201)}),
        AdminRoute("/devices/{key}", device_one, {"get": Op("One device")}),
        AdminRoute("/devices/{key}/ban", device_ban, {
            "post": Op(f"Bar a device (code {int(VendorCode.NOT_ALLOWED)}) {{reason?}}", JSON_BODY)}),
        AdminRoute("/devices/{key}/unban", device_unban, {"post": Op("Lift a ban (operator or loop ban)")}),
        AdminRoute("/devices/{key}/pin", device_pin, {"post": Op("Pin to a release {release_id|null}", JSON_BODY)}),
        AdminRoute("/audit", audit, {
            "get": Op("Audit log, newest first", params=("device", "event", "release_id", "limit", "before_id"))}),
        AdminRoute("/audit/prune", audit_prune, {"post": Op("Delete audit rows {older_than_s}", JSON_BODY)}),
        AdminRoute("/blobs/gc", blobs_gc, {
            "post": Op("Delete packages no release references {min_age_s}", JSON_BODY)}),
        AdminRoute("/stats", stats, {
            "get": Op("Rollout progress per release (targeted/served/confirmed)", params=("release_id",))}),
        AdminRoute("/push/online", push_online, {"get": Op("Devices connected to the push channel")}),
        AdminRoute("/push", push, {
            "post": Op('Push {"devices":[...]|"release_id":N, "url"?, "version"?, "message"?}', JSON_BODY)}),
    ]


def openapi_doc() -> dict[str, Any]:
    return openapi_document(admin_routes(), "luatos-fota admin API", prefix=P)
