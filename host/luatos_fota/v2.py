"""The v2 (libfota3-shaped) API: ``GET /api/site/turnkey_fota`` and ``POST …_result``.

A v2 check answers JSON with the package's URL instead of the package; the serve is counted
(and its ``fota_sn`` issued) before the URL is handed out, so the ``/dl/`` download that follows
carrying that ``fota_sn`` is not counted again. The result report ties an install's outcome to
that ``fota_sn``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .codes import VendorCode
from .deviceauth import credential_from_header
from .devrequest import FIELD_LIMITS
from .edge import EdgeHandler, client_ip
from .httpio import header, send_json
from .jsonlimits import loads_limited
from .service import Query
from .store import NotFound

V2_CHECK = "/api/site/turnkey_fota"
V2_RESULT = "/api/site/turnkey_fota_result"


def v2_reported_version(core_version: str | None, script_version: str | None) -> str | None:
    """The libfota2-style version (``core.x.z``) of a v2 check's core and script versions."""
    core = (core_version or "").strip().lstrip("Vv")
    script = (script_version or "").strip()
    if not (core and script):
        return None
    parts = script.split(".")
    return f"{core}.{parts[0]}.{parts[-1]}" if len(parts) == 3 else f"{core}.{script}"


class V2Check(EdgeHandler):
    """ASGI handler of ``GET /api/site/turnkey_fota`` (dispatched before Starlette routing)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        edge = self.edge
        svc = edge.service
        ip = client_ip(scope)
        if scope["method"] != "GET":
            return await send_json(send, 405, {"code": VendorCode.INVALID_DEVICE, "msg": "use GET"})
        params: dict[str, str] = {}
        for k, v in parse_qsl((scope.get("query_string") or b"").decode("utf-8", "replace"), keep_blank_values=True):
            params.setdefault(k.lower(), v)
        key_type = next((k for k in ("mac", "imei", "uid") if k in params), None)
        device_key = params.get(key_type) if key_type else None
        wait = edge.rate_limited(ip, device_key)
        if wait:
            return await edge.send_limited(send, wait)
        version = v2_reported_version(params.get("core_version"), params.get("script_version"))
        problems = [f"parameter {k} is {len(params[k])} characters (at most {n})"
                    for k, n in FIELD_LIMITS.items() if len(params.get(k, "")) > n]
        if version and len(version) > FIELD_LIMITS["version"]:
            problems.append(f"version is {len(version)} characters (at most {FIELD_LIMITS['version']})")
        q = Query("v2", key_type, device_key, params.get("project_key"), params.get("firmware_name"),
                  version, ip, script_name=params.get("script_name"), problems=problems or None,
                  credential=credential_from_header(header(scope, b"authorization")))
        out = svc.decide_fast(q)
        if out is None or out.serve:  # a serve is counted (fota_sn) before the URL is handed out
            out = await edge.offload(svc.decide, q)
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
                        url=edge.package_url(scope, r.sha256, out.fota_sn))
        else:
            body.update(core_version="", script_version="", size=0, sha256="", fota_sn="", url="")
        await send_json(send, 200, body)


class V2Result(EdgeHandler):
    """ASGI handler of ``POST /api/site/turnkey_fota_result`` (a Starlette route: no hot path)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.answer(request)
        await response(scope, receive, send)

    async def answer(self, request: Request) -> Response:
        edge = self.edge
        limit = edge.config.max_result_body
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return JSONResponse({"code": 413, "msg": f"result body of {declared} bytes; at most {limit}"}, 413)
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                return JSONResponse({"code": 413, "msg": f"result body over {limit} bytes"}, 413)
        try:
            obj = loads_limited(raw, edge.config.json_max_depth)
        except (ValueError, RecursionError) as e:
            return JSONResponse({"code": VendorCode.ERROR, "msg": f"body is not JSON: {e}"}, 400)
        if not isinstance(obj, dict) or "fota_sn" not in obj or "result_code" not in obj:
            return JSONResponse({"code": VendorCode.ERROR, "msg": 'expected {"fota_sn": "...", "result_code": N}'}, 400)
        try:
            rc = int(obj["result_code"])
        except (TypeError, ValueError):
            return JSONResponse({"code": VendorCode.ERROR, "msg": f"result_code {obj['result_code']!r} is not an integer"}, 400)
        try:
            res = await edge.offload(edge.service.record_result, str(obj["fota_sn"])[:100], rc,
                                     client_ip(request.scope))
        except NotFound as e:
            return JSONResponse({"code": VendorCode.ERROR, "msg": str(e)}, 404)
        return JSONResponse({"code": VendorCode.OK, "msg": "ok", "success": res.success})
