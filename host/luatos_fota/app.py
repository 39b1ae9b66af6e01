"""The ASGI application: device endpoint, v2 API, downloads, admin API and dashboard.

``create_app(data_dir, db_url=None, admin_token=None, **cfg)`` returns a Starlette app. Device
traffic (libfota2 check-ins, v2 checks, ``/dl/`` downloads) is answered by a raw-ASGI fast path
in :meth:`FotaApp.__call__` before Starlette routing, for two reasons: a libfota2 request whose
base URL lacked ``?`` has its query glued to the path (``/api/site/firmware_upgrademac=…``), which
no router can match, and check-ins are the hot path (benchmark goal: 2,000 "no update"
check-ins per second on 2 cores).

Device-facing answers (behaviour.md §11.4): upgrade -> 200 with the whole package (Content-Length
always, ``application/octet-stream``, ``Accept-Ranges``, strong ``ETag: "<sha256>"``,
``Repr-Digest``), Range -> 206/416; up to date -> 304 without body and ``Cache-Control:
no-store``; refusals -> 4xx JSON ``{"code","msg"}`` with vendor codes; overload/rate limit ->
429/503 with ``Retry-After``. Never a redirect.

The event loop never waits on the database or the disk: a check-in is first decided from memory
(:meth:`FotaService.decide_fast`); anything that needs a row, a write or a file runs in a worker
thread (:meth:`FotaApp.offload`, at most ``db_threads`` at once), and device-path writes give up
after ``hot_busy_timeout_s`` with 503 + ``Retry-After``.

What counts as a serve (loop guard, ``release stats``): a check-in answered with the package,
counted only once the package is open (a failed read is a 503 and not a serve); a Range from
byte N>0 continues a counted download and is a new serve only if none was counted in the window;
HEAD gets what GET would get (including code 40) but records nothing and is audited as ``head``.
Downloads from ``/dl/``: a URL carrying ``fota_sn`` (v2 check, admin push) was counted when it
was issued; a URL carrying ``mac=``/``imei=``/``uid=`` of a known device is counted (and guarded)
against that device's release with this package; anonymous downloads are audited only.
``download_auth`` makes ``/dl/`` require a recent ``fota_sn`` or the admin token.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import metrics, signedurl
from .admin import admin_routes
from .admintoken import bearer_matches, resolve_admin_token
from .audit import AuditEvent, detail_json
from .blobs import Blobs
from .codes import VendorCode
from .config import ServerConfig
from .deviceauth import credential_from_header
from .devrequest import FIELD_LIMITS, looks_like_device_request, parse_device_request, raw_target
from .httpio import RangePlan, header, plan_range, send_bytes, send_json, send_package
from .jsonlimits import loads_limited
from .maintenance import Maintenance
from .ops import ops_routes
from .preflight import PreflightRunner, PreflightSettings
from .push import PushHub
from .pushrelay import PushRelay
from .ratelimit import TokenBuckets, retry_after_seconds
from .records import Artifact
from .service import FotaService, Outcome, Query
from .store import NotFound, Store, normalize_device_key

log = logging.getLogger("luatos_fota.app")

STATIC_DIR = Path(__file__).with_name("static")
V2_CHECK = "/api/site/turnkey_fota"
V2_RESULT = "/api/site/turnkey_fota_result"
LATEST_HEADER = str(int(VendorCode.LATEST)).encode()  # x-fota-code of a 304
# Sent with every dashboard, admin API and other non-device answer: the dashboard loads only its
# own files, cannot be framed, and leaks no URL to other sites.
# Inline style *attributes* stay allowed (the rollout bars set their width); <style> and inline
# scripts do not.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
       "img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]


class BlobCache:
    """Recently served packages kept in memory (bounded), so a rollout does not re-read disk."""

    def __init__(self, blobs: Blobs, max_bytes: int = 64 << 20) -> None:
        self.blobs = blobs
        self.max_bytes = max_bytes
        self._d: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def peek(self, sha: str) -> bytes | None:
        """The package if it is in memory (no disk access: safe on the event loop)."""
        return self._d.get(sha)

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
            self._d[sha] = b
            self._size += len(b)
            while self._size > self.max_bytes:
                _, old = self._d.popitem(last=False)
                self._size -= len(old)
        return b


def serve_mode(plan: RangePlan, head: bool) -> str:
    """What a package answer is for the loop guard: ``full`` (a 200, or a Range from byte 0:
    a fresh download), ``continuation`` (a Range from N>0) or ``head`` (HEAD, 416: nothing
    sent, nothing recorded)."""
    if head or plan.status == 416:
        return "head"
    if plan.status == 206 and plan.start > 0:
        return "continuation"
    return "full"


class CountingSend:
    """An ASGI ``send`` that counts the body bytes handed over while the client was still
    connected (uvicorn drops what is sent after the connection went: see server.Delivery)."""

    def __init__(self, send: Any, scope: dict) -> None:
        self._send = send
        self._delivery = scope.get("luatos.delivery")
        self.body_bytes = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not self.lost:
            self.body_bytes += len(message.get("body", b""))
        await self._send(message)

    @property
    def lost(self) -> bool:
        return bool(self._delivery is not None and self._delivery.lost)

    def lost_before(self, planned: int) -> bool:
        """The client went before ``planned`` body bytes were handed over."""
        return self.lost and self.body_bytes < planned


def client_ip(scope: Any) -> str:
    c = scope.get("client")
    return c[0] if c else ""


class FotaApp(Starlette):
    """Starlette plus the raw fast path for device traffic; see the module docstring."""

    fota: FotaService
    blob_cache: BlobCache
    device_buckets: TokenBuckets
    ip_buckets: TokenBuckets
    artifacts: dict[str, Artifact]
    preflight: PreflightRunner
    url_key: bytes
    inflight: int = 0
    _limiter: anyio.CapacityLimiter | None = None

    async def offload(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a blocking store or disk call in a worker thread (at most ``db_threads`` at once),
        so one slow database or disk never stalls the event loop (review finding 3)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.fota.config.db_threads)
        with metrics.store_call(getattr(fn, "__name__", "call")):
            return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._limiter)

    async def _package(self, sha: str) -> bytes | None:
        data = self.blob_cache.peek(sha)
        return data if data is not None else await self.offload(self.blob_cache.get, sha)

    async def _decide(self, q: Query) -> Outcome:
        out = self.fota.decide_fast(q)
        return out if out is not None else await self.offload(self.fota.decide, q, count_serve=False)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            send = metrics.observe_response(path, send)
            if path.startswith("/dl/"):
                return await self._guarded(self._download, scope, receive, send)
            if path == V2_CHECK:
                return await self._guarded(self._v2_check, scope, receive, send)
            if not path.startswith("/admin") and not path.startswith("/dashboard"):
                target = raw_target(scope)
                if looks_like_device_request(target):
                    return await self._guarded(self._device, scope, receive, send, target)

            async def secured_send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
                await send(message)

            return await super().__call__(scope, receive, secured_send)
        await super().__call__(scope, receive, send)

    async def _guarded(self, handler: Any, scope: dict, receive: Any, send: Any, *args: Any) -> None:
        if self.inflight >= self.fota.config.max_inflight:
            self.fota.writer.record(AuditEvent("overloaded", status=503, code=VendorCode.WAIT,
                                               ip=client_ip(scope) or None,
                                               detail=detail_json({"path": scope["path"][:200]})))
            ra = str(self.fota.config.retry_after_s).encode()
            await send_json(send, 503, {"code": VendorCode.WAIT, "msg": "server overloaded, retry later"},
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
                await send_json(send, 503, {"code": VendorCode.WAIT, "msg": "server error, retry later"},
                                [(b"retry-after", str(self.fota.config.retry_after_s).encode())])
        finally:
            self.inflight -= 1

    def _rate_limited(self, ip: str, device_key: str | None) -> float:
        wait = self.ip_buckets.take(ip) if ip else 0.0
        if not wait and device_key and device_key != "nil":
            wait = self.device_buckets.take(normalize_device_key(device_key)[:64])
        return wait

    async def _send_limited(self, send: Any, wait: float) -> None:
        await send_json(send, 429, {"code": VendorCode.WAIT, "msg": "too many requests; retry later"},
                        [(b"retry-after", str(retry_after_seconds(wait)).encode())])

    # ------------------------------------------------------------------ libfota2 endpoint

    async def _device(self, scope: dict, receive: Any, send: Any, target: bytes) -> None:
        svc = self.fota
        ip = client_ip(scope)
        req = parse_device_request(target)
        wait = self._rate_limited(ip, req.device_id)
        if wait:
            svc.writer.record(AuditEvent("rate_limited", req.device_id, status=429, code=VendorCode.WAIT,
                                         ip=ip or None))
            return await self._send_limited(send, wait)
        head = scope["method"] == "HEAD"
        if scope["method"] not in ("GET", "HEAD"):
            svc.writer.record(AuditEvent("bad_method", req.device_id, status=405, code=VendorCode.INVALID_DEVICE,
                                         ip=ip or None, detail=detail_json({"method": scope["method"]})))
            return await send_json(send, 405, {"code": VendorCode.INVALID_DEVICE,
                                               "msg": f"method {scope['method']} not allowed; libfota2 sends GET"},
                                   [(b"allow", b"GET, HEAD")])
        q = Query("v1", req.key_type, req.device_id, req.project_key, req.firmware_name, req.version, ip,
                  alt_project_key=req.alt("project_key"), alt_firmware_name=req.alt("firmware_name"),
                  problems=req.too_long or None,
                  credential=credential_from_header(header(scope, b"authorization")))
        rng = header(scope, b"range")
        out = await self._decide(q)
        svc.seen(out, ip)
        extra_detail: dict[str, Any] = {"path": req.base_path[:200], "glued": req.glued}
        if req.problems or req.too_long:
            extra_detail["problems"] = req.problems + req.too_long
        if out.serve and out.release is not None:
            rel = out.release
            data = await self._package(rel.sha256)
            if data is None:
                out = Outcome(VendorCode.WAIT, "package temporarily unavailable", product=out.product,
                              device=out.device, release=rel, reason="package unreadable; not counted as a serve")
            else:
                # The package is open: only now does this count as a serve (finding 7). A Range
                # from N>0 continues a counted download; HEAD sees the guard but records nothing.
                plan = plan_range(rng, header(scope, b"if-range"), f'"{rel.sha256}"', len(data))
                mode = serve_mode(plan, head)
                nbytes = plan.end - plan.start + 1 if plan.status == 206 else len(data)
                done = svc.commit_serve_fast(out, q, mode, nbytes)
                out = done if done is not None else await self.offload(svc.commit_serve, out, q, mode, nbytes)
                if out.serve:
                    hdrs = [(b"x-fota-release", str(rel.id).encode()),
                            (b"x-fota-version", str(out.target).encode())]
                    if out.fota_sn:
                        hdrs.append((b"x-fota-sn", out.fota_sn.encode()))
                    counted = CountingSend(send, scope)
                    status = await send_package(counted, scope, data, rel.sha256, hdrs, head=head)
                    event = "head" if head else ("serve" if status in (200, 206) else "checkin")
                    delivered = head or not counted.lost_before(nbytes)
                    svc.audit(event, out, q, status, fota_sn=out.fota_sn, mode=mode, bytes=nbytes,
                              delivered=delivered, range=rng.decode("latin-1")[:100] if rng else None,
                              **extra_detail)
                    if not delivered and mode != "head":
                        await self.offload(svc.serve_not_delivered, out, q, counted.body_bytes, nbytes)
                    return
        status = out.status
        if status == 304 and not svc.config.audit_up_to_date:
            metrics.checkin(q.channel, out.code)  # not audited, still counted
        else:
            svc.audit("head" if head else "checkin", out, q, status, **extra_detail)
        if status == 304:
            await send_bytes(send, 304, [(b"cache-control", b"no-store"), (b"x-fota-code", LATEST_HEADER)])
            return
        extra = [(b"retry-after", str(svc.config.retry_after_s).encode())] if status == 503 else []
        if out.code == VendorCode.UNAUTHENTICATED:
            extra = [(b"www-authenticate", b'Bearer realm="luatos-fota device"')]
        await send_json(send, status, {"code": out.code, "msg": out.msg}, extra, head=head)

    # ------------------------------------------------------------------ v2 (libfota3-shaped)

    def _base_url(self, scope: Any) -> str:
        """``public_url``, else the address this connection reached; never the Host header, which
        the client chooses (a forged Host would send devices' downloads elsewhere)."""
        if self.fota.config.public_url:
            return self.fota.config.public_url.rstrip("/")
        s = scope.get("server") or ("127.0.0.1", 80)
        host = f"[{s[0]}]" if ":" in str(s[0]) else str(s[0])
        return f"{scope.get('scheme', 'http')}://{host}:{s[1]}"

    def package_url(self, scope: Any, sha256: str, fota_sn: str | None = None) -> str:
        """The download URL handed to a device: signed and short-lived when downloads are private."""
        path = f"/dl/{sha256}.bin"
        query = [f"fota_sn={fota_sn}"] if fota_sn else []
        if self.fota.config.private_downloads:
            query.append(signedurl.sign_query(self.url_key, path, self.fota.config.signed_url_ttl_s))
        return self._base_url(scope) + path + ("?" + "&".join(query) if query else "")

    async def _v2_check(self, scope: dict, receive: Any, send: Any) -> None:
        svc = self.fota
        ip = client_ip(scope)
        if scope["method"] != "GET":
            return await send_json(send, 405, {"code": VendorCode.INVALID_DEVICE, "msg": "use GET"})
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
        problems = [f"parameter {k} is {len(params[k])} characters (at most {n})"
                    for k, n in FIELD_LIMITS.items() if len(params.get(k, "")) > n]
        if version and len(version) > FIELD_LIMITS["version"]:
            problems.append(f"version is {len(version)} characters (at most {FIELD_LIMITS['version']})")
        q = Query("v2", key_type, dev_id, params.get("project_key"), params.get("firmware_name"),
                  version, ip, script_name=params.get("script_name"), problems=problems or None,
                  credential=credential_from_header(header(scope, b"authorization")))
        out = svc.decide_fast(q)
        if out is None or out.serve:  # a serve is counted (fota_sn) before the URL is handed out
            out = await self.offload(svc.decide, q)
        svc.seen(out, ip)
        status = 401 if out.code == VendorCode.UNAUTHENTICATED else 200
        svc.audit("v2_check", out, q, status, model=params.get("model"), core_id=params.get("core_id"),
                  fota_sn=out.fota_sn)
        if status == 401:
            return await send_json(send, 401, {"code": out.code, "msg": out.msg},
                                   [(b"www-authenticate", b'Bearer realm="luatos-fota device"')])
        body: dict[str, Any] = {"code": out.code, "msg": out.msg}
        if out.serve and out.release is not None and out.target is not None:
            r = out.release
            body.update(core_version=str(out.target.core), script_version=str(r.script),
                        size=r.size, sha256=r.sha256, fota_sn=out.fota_sn,
                        url=self.package_url(scope, r.sha256, out.fota_sn))
        else:
            body.update(core_version="", script_version="", size=0, sha256="", fota_sn="", url="")
        await send_json(send, 200, body)

    async def v2_result(self, request: Request) -> Response:
        limit = self.fota.config.max_result_body
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return JSONResponse({"code": 413, "msg": f"result body of {declared} bytes; at most {limit}"}, 413)
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                return JSONResponse({"code": 413, "msg": f"result body over {limit} bytes"}, 413)
        try:
            obj = loads_limited(raw, self.fota.config.json_max_depth)
        except (ValueError, RecursionError) as e:
            return JSONResponse({"code": VendorCode.ERROR, "msg": f"body is not JSON: {e}"}, 400)
        if not isinstance(obj, dict) or "fota_sn" not in obj or "result_code" not in obj:
            return JSONResponse({"code": VendorCode.ERROR, "msg": 'expected {"fota_sn": "...", "result_code": N}'}, 400)
        try:
            rc = int(obj["result_code"])
        except (TypeError, ValueError):
            return JSONResponse({"code": VendorCode.ERROR, "msg": f"result_code {obj['result_code']!r} is not an integer"}, 400)
        try:
            res = await self.offload(self.fota.store.serves.record_result, str(obj["fota_sn"])[:100], rc,
                                     client_ip(request.scope))
        except NotFound as e:
            return JSONResponse({"code": VendorCode.ERROR, "msg": str(e)}, 404)
        return JSONResponse({"code": VendorCode.OK, "msg": "ok", "success": res.success})

    # ------------------------------------------------------------------ downloads

    def _is_admin(self, scope: dict) -> bool:
        return bearer_matches(header(scope, b"authorization"), self.state.admin_token)

    async def _download_refusal(self, scope: dict, name: str, sha: str, qs: dict[str, str]) -> str | None:
        """Why this download is not allowed, or None (see ``ServerConfig.private_downloads``)."""
        cfg = self.fota.config
        if self._is_admin(scope):
            return None
        if name.startswith("artifact/"):
            return "/dl/artifact/<id> is for operators: send the admin token"
        if cfg.private_downloads:
            if signedurl.verify(self.url_key, scope["path"], qs.get("exp"), qs.get("sig"), cfg.signed_url_ttl_s):
                return None
            dev_id = (qs.get("mac") or qs.get("imei") or qs.get("uid") or "")[:FIELD_LIMITS["mac"]]
            cred = credential_from_header(header(scope, b"authorization"))
            if dev_id and cred and await self.offload(self.fota.device_may_download, sha, dev_id, cred):
                return None
            return ("packages are private: use the signed link the server handed out (not expired), or "
                    "?mac=<id> with the device's Authorization header")
        if cfg.download_auth:
            sn = qs.get("fota_sn")
            if sn and len(sn) <= 64:
                row = await self.offload(self.fota.store.serves.by_sn, sn)
                if row and row.sha256 == sha and time.time() - row.served_at <= cfg.download_sn_ttl_s:
                    return None
            return "downloads need the fota_sn this server issued with the URL (or the admin token)"
        return None

    async def _download(self, scope: dict, receive: Any, send: Any) -> None:
        svc = self.fota
        ip = client_ip(scope)
        if scope["method"] not in ("GET", "HEAD"):
            return await send_json(send, 405, {"code": VendorCode.ERROR, "msg": "downloads are GET or HEAD"},
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
                if ident.isdigit() and len(ident) < 12:
                    art = await self.offload(svc.store.releases.artifact_by_id, int(ident))
            else:
                sha = name.removesuffix(".bin").lower()
                if len(sha) == 64 and all(c in "0123456789abcdef" for c in sha):
                    art = await self.offload(svc.store.releases.artifact_by_sha, sha)
            if art is not None and len(self.artifacts) < 10_000:
                self.artifacts[name] = art
        qs = dict(parse_qsl((scope.get("query_string") or b"").decode("utf-8", "replace")))
        refusal = await self._download_refusal(scope, name, art.sha256 if art else "", qs)
        if refusal is not None:
            svc.writer.record(AuditEvent("download_refused", status=403, code=VendorCode.NO_PERMISSION,
                                         ip=ip or None, detail=detail_json({"path": scope["path"][:200]})))
            return await send_json(send, 403, {"code": VendorCode.NO_PERMISSION, "msg": refusal}, head=head)
        if art is None:
            return await send_json(send, 404, {"code": VendorCode.INVALID_FIRMWARE, "msg": f"no package at {scope['path'][:200]}"}, head=head)
        data = await self._package(art.sha256)
        if data is None:
            return await send_json(send, 503, {"code": VendorCode.WAIT, "msg": "package missing from the blob store"},
                                   [(b"retry-after", b"60")], head=head)
        dev_id = (qs.get("mac") or qs.get("imei") or qs.get("uid") or "")[:FIELD_LIMITS["mac"]]
        release_id = None
        if dev_id and not qs.get("fota_sn"):
            # A known device fetching a package by URL: a serve for stats and the loop guard.
            # (With fota_sn the serve was counted when the URL was handed out: v2 check, push.)
            plan = plan_range(header(scope, b"range"), header(scope, b"if-range"), f'"{art.sha256}"', len(data))
            mode = serve_mode(plan, head)
            nbytes = plan.end - plan.start + 1 if plan.status == 206 else len(data)
            out = await self.offload(svc.download_serve, art.sha256, dev_id, ip, mode, nbytes)
            if out is not None:
                release_id = out.release.id if out.release else None
                if not out.serve:
                    svc.audit("download", out, Query("dl", None, dev_id, None, None, None, ip), out.status)
                    return await send_json(send, out.status, {"code": out.code, "msg": out.msg}, head=head)
        cache = b"private, max-age=3600" if svc.config.private_downloads else b"public, max-age=31536000, immutable"
        status = await send_package(send, scope, data, art.sha256, head=head, cache=cache)
        if status in (200, 206) and not head:
            metrics.serve("download")
        svc.writer.record(AuditEvent("download", dev_id or None, release_id=release_id, status=status,
                                     ip=ip or None,
                                     detail=detail_json({"artifact": art.id, "sha256": art.sha256,
                                                         "fota_sn": qs.get("fota_sn"), "head": head,
                                                         "range": (header(scope, b"range") or b"")[:100]
                                                         .decode("latin-1") or None})))


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
    svc = FotaService(st, config)
    maintenance = Maintenance(st, config)
    relay_box: list[PushRelay] = []  # the relay exists once the hub listens (lifespan)
    if push_hub is not None:
        first_hook = getattr(push_hub, "on_event", None)

        async def on_push_event(kind: str, device: str, data: dict[str, Any]) -> None:
            if first_hook is None:
                peer = str(data.get("peer") or "").rsplit(":", 1)[0]
                ip = peer or (push_hub.peer_ip(device) if isinstance(push_hub, PushHub) else "")
                svc.push_event(kind, device, data, ip or None)
            else:
                result = first_hook(kind, device, data)
                if inspect.isawaitable(result):
                    await result
            for relay in relay_box:
                await relay.on_hub_event(kind, device, data)

        push_hub.on_event = on_push_event
        if getattr(push_hub, "authenticate", None) is None and isinstance(push_hub, PushHub):
            async def authenticate(device: str, info: dict[str, str], credential: str | None) -> str | None:
                return await anyio.to_thread.run_sync(svc.push_login_refusal, device, info, credential)

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
            relay_box.append(relay)
            app.state.push_relay = relay
        app.preflight.resume_pending()
        try:
            yield
        finally:
            if relay is not None:
                relay_box.clear()
                await relay.stop()
            if started_hub:
                await hub.stop()
            await maintenance.stop()
            svc.close()

    routes: list[Any] = [
        Route("/", _root, methods=["GET", "HEAD"]),
        *ops_routes(),
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
    svc.blob_known = lambda sha: app.blob_cache.peek(sha) is not None
    app.device_buckets = TokenBuckets(config.device_rate, config.device_burst)
    app.ip_buckets = TokenBuckets(config.ip_rate, config.ip_burst)
    app.inflight = 0
    app.artifacts = {}
    app.url_key = signedurl.signing_key(token)
    app.state.maintenance = maintenance
    metrics.watch_push_hub(push_hub)
    app.state.store = st
    app.state.service = svc
    app.state.config = config
    app.state.admin_token = token
    app.state.push_hub = push_hub
    app.state.push_relay = None
    app.state.data_dir = data
    app.preflight = PreflightRunner(st, PreflightSettings(wall_limit_s=config.preflight_wall_s,
                                                          window_s=config.preflight_window_s))
    return app

