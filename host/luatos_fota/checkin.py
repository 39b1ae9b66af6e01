"""The libfota2 check-in (``GET <any path>?mac=…&project_key=…&firmware_name=…&version=…``).

The request is read from the raw target (devrequest.py): libfota2 glues its query to a base URL
that lacked ``?`` (``/api/site/firmware_upgrademac=…``), which no router can match, so the app's
dispatcher hands every request that looks like a check-in here before Starlette routing.

Answers (behaviour.md §11.4): upgrade -> the package (packageanswer.py); up to date -> 304
without body and ``Cache-Control: no-store``; refusals -> 4xx JSON ``{"code","msg"}`` with vendor
codes; overload/rate limit -> 429/503 with ``Retry-After``. HEAD gets what GET would get
(including code 40) but records nothing and is audited as ``head``.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Receive, Scope, Send

from . import metrics
from .audit import AuditEvent, detail_json
from .codes import VendorCode
from .deviceauth import credential_from_header
from .devrequest import parse_device_request, raw_target
from .edge import EdgeHandler, client_ip
from .httpio import header, send_bytes, send_json
from .packageanswer import Sent, answer_package
from .service import Outcome, Query

LATEST_HEADER = str(int(VendorCode.LATEST)).encode()  # x-fota-code of a 304


class CheckIn(EdgeHandler):
    """ASGI handler of a libfota2 check-in."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        edge = self.edge
        svc = edge.service
        ip = client_ip(scope)
        req = parse_device_request(raw_target(scope))
        wait = edge.rate_limited(ip, req.device_key)
        if wait:
            svc.writer.record(AuditEvent("rate_limited", req.device_key, status=429, code=VendorCode.WAIT,
                                         ip=ip or None))
            return await edge.send_limited(send, wait)
        head = scope["method"] == "HEAD"
        if scope["method"] not in ("GET", "HEAD"):
            svc.writer.record(AuditEvent("bad_method", req.device_key, status=405, code=VendorCode.INVALID_DEVICE,
                                         ip=ip or None, detail=detail_json({"method": scope["method"]})))
            return await send_json(send, 405, {"code": VendorCode.INVALID_DEVICE,
                                               "msg": f"method {scope['method']} not allowed; libfota2 sends GET"},
                                   [(b"allow", b"GET, HEAD")])
        q = Query("v1", req.key_type, req.device_key, req.project_key, req.firmware_name, req.version, ip,
                  alt_project_key=req.alt("project_key"), alt_firmware_name=req.alt("firmware_name"),
                  problems=req.too_long or None,
                  credential=credential_from_header(header(scope, b"authorization")))
        out = await edge.decide(q)
        svc.seen(out, ip)
        extra_detail: dict[str, Any] = {"path": req.base_path[:200], "glued": req.glued}
        if req.problems or req.too_long:
            extra_detail["problems"] = req.problems + req.too_long
        if out.serve and out.release is not None:
            refused = await self._serve(scope, send, out, q, head, extra_detail)
            if refused is None:
                return
            out = refused
        await self._refuse(send, out, q, head, extra_detail)

    async def _serve(self, scope: Scope, send: Send, out: Outcome, q: Query, head: bool,
                     extra_detail: dict[str, Any]) -> Outcome | None:
        """Answer with the release's package; returns what to answer instead when it cannot be
        sent (unreadable package, loop guard), else None."""
        edge = self.edge
        svc = edge.service
        rel = out.release
        assert rel is not None
        data = await edge.package(rel.sha256)
        if data is None:
            return Outcome(VendorCode.WAIT, "package temporarily unavailable", product=out.product,
                           device=out.device, release=rel, reason="package unreadable; not counted as a serve")
        rng = header(scope, b"range")

        async def count(mode: str, nbytes: int) -> Outcome:
            # The package is open: only now does this count as a serve (finding 7).
            done = svc.commit_serve_fast(out, q, mode, nbytes)
            return done if done is not None else await edge.offload(svc.commit_serve, out, q, mode, nbytes)

        def audit(sent: Sent) -> None:
            event = "head" if head else ("serve" if sent.status in (200, 206) else "checkin")
            assert sent.counted is not None
            svc.audit(event, sent.counted, q, sent.status, fota_sn=sent.counted.fota_sn, mode=sent.mode,
                      bytes=sent.nbytes, delivered=sent.delivered,
                      range=rng.decode("latin-1")[:100] if rng else None, **extra_detail)

        return await answer_package(edge, scope, send, data, rel.sha256, q, head=head, count=count, audit=audit,
                                    tell_release=True)

    async def _refuse(self, send: Send, out: Outcome, q: Query, head: bool, extra_detail: dict[str, Any]) -> None:
        """Every answer but a package: 304 up to date, or the vendor code as JSON."""
        svc = self.edge.service
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
