"""Package downloads: ``GET|HEAD /dl/<sha256>.bin`` and, for operators, ``/dl/artifact/<id>``.

Which downloads count as a serve: a URL carrying ``fota_sn`` (v2 check, admin push) was counted
when it was issued; a URL carrying ``mac=``/``imei=``/``uid=`` of a known device is counted (and
guarded) against that device's release with this package, like a check-in's package answer
(packageanswer.py); anonymous downloads are audited only.

Who may download (``ServerConfig.private_downloads``, ``download_auth``): the admin token always;
private packages need the signed link the server handed out (not expired), or ``?mac=<id>`` with
that device's credential; ``download_auth`` makes ``/dl/`` require a recent ``fota_sn``.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from . import metrics, signedurl
from .audit import AuditEvent, detail_json
from .codes import VendorCode
from .deviceauth import credential_from_header
from .devrequest import FIELD_LIMITS
from .edge import EdgeHandler, client_ip
from .httpio import header, send_json
from .packageanswer import Sent, answer_package
from .records import Artifact
from .service import Outcome, Query

PREFIX = "/dl/"


def named_device_key(qs: dict[str, str]) -> str:
    """The device a download URL names (``mac=``, ``imei=`` or ``uid=``), or ``""``."""
    return (qs.get("mac") or qs.get("imei") or qs.get("uid") or "")[:FIELD_LIMITS["mac"]]


class Download(EdgeHandler):
    """ASGI handler of ``/dl/`` (dispatched before Starlette routing)."""

    async def _artifact(self, name: str) -> Artifact | None:
        """The artifact row a ``/dl/`` name points at (cached for good: artifacts are immutable)."""
        edge = self.edge
        art = edge.artifacts.get(name)
        if art is not None:
            return art
        svc = edge.service
        if name.startswith("artifact/"):
            ident = name[len("artifact/"):].removesuffix(".bin")
            if ident.isdigit() and len(ident) < 12:
                art = await edge.offload(svc.artifact_by_id, int(ident))
        else:
            sha = name.removesuffix(".bin").lower()
            if len(sha) == 64 and all(c in "0123456789abcdef" for c in sha):
                art = await edge.offload(svc.artifact_by_sha, sha)
        if art is not None and len(edge.artifacts) < 10_000:
            edge.artifacts[name] = art
        return art

    async def _refusal(self, scope: Scope, name: str, sha: str, qs: dict[str, str]) -> str | None:
        """Why this download is not allowed, or None (see the module docstring)."""
        edge = self.edge
        cfg = edge.config
        if edge.is_admin(scope):
            return None
        if name.startswith("artifact/"):
            return "/dl/artifact/<id> is for operators: send the admin token"
        if cfg.private_downloads:
            if signedurl.verify(edge.url_key, scope["path"], qs.get("exp"), qs.get("sig"), cfg.signed_url_ttl_s):
                return None
            device_key = named_device_key(qs)
            cred = credential_from_header(header(scope, b"authorization"))
            if device_key and cred and await edge.offload(edge.service.device_may_download, sha, device_key, cred):
                return None
            return ("packages are private: use the signed link the server handed out (not expired), or "
                    "?mac=<id> with the device's Authorization header")
        if cfg.download_auth:
            sn = qs.get("fota_sn")
            if sn and len(sn) <= 64:
                row = await edge.offload(edge.service.serve_by_sn, sn)
                if row and row.sha256 == sha and time.time() - row.served_at <= cfg.download_sn_ttl_s:
                    return None
            return "downloads need the fota_sn this server issued with the URL (or the admin token)"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        edge = self.edge
        svc = edge.service
        ip = client_ip(scope)
        if scope["method"] not in ("GET", "HEAD"):
            return await send_json(send, 405, {"code": VendorCode.ERROR, "msg": "downloads are GET or HEAD"},
                                   [(b"allow", b"GET, HEAD")])
        head = scope["method"] == "HEAD"
        wait = edge.ip_buckets.take(ip) if ip else 0.0
        if wait:
            return await edge.send_limited(send, wait)
        name = scope["path"][len(PREFIX):]
        art = await self._artifact(name)
        qs = dict(parse_qsl((scope.get("query_string") or b"").decode("utf-8", "replace")))
        refusal = await self._refusal(scope, name, art.sha256 if art else "", qs)
        if refusal is not None:
            svc.writer.record(AuditEvent("download_refused", status=403, code=VendorCode.NO_PERMISSION,
                                         ip=ip or None, detail=detail_json({"path": scope["path"][:200]})))
            return await send_json(send, 403, {"code": VendorCode.NO_PERMISSION, "msg": refusal}, head=head)
        if art is None:
            return await send_json(send, 404, {"code": VendorCode.INVALID_FIRMWARE,
                                               "msg": f"no package at {scope['path'][:200]}"}, head=head)
        sha256: str = art.sha256
        data = await edge.package(sha256)
        if data is None:
            return await send_json(send, 503, {"code": VendorCode.WAIT, "msg": "package missing from the blob store"},
                                   [(b"retry-after", b"60")], head=head)
        device_key = named_device_key(qs)
        q = Query("dl", None, device_key, None, None, None, ip)

        async def count(mode: str, nbytes: int) -> Outcome | None:
            # A known device fetching a package by URL: a serve for stats and the loop guard.
            # (With fota_sn the serve was counted when the URL was handed out: v2 check, push.)
            if not device_key or qs.get("fota_sn"):
                return None
            out: Outcome | None = await edge.offload(svc.download_serve, sha256, device_key, ip, mode, nbytes)
            return out

        def audit(sent: Sent) -> None:
            if sent.status in (200, 206) and not head:
                metrics.serve("download")
            release = sent.counted.release if sent.counted is not None else None
            svc.writer.record(AuditEvent("download", device_key or None, release_id=release.id if release else None,
                                         status=sent.status, ip=ip or None,
                                         detail=detail_json({"artifact": art.id, "sha256": sha256,
                                                             "fota_sn": qs.get("fota_sn"), "head": head,
                                                             "range": (header(scope, b"range") or b"")[:100]
                                                             .decode("latin-1") or None})))

        cache = b"private, max-age=3600" if svc.config.private_downloads else b"public, max-age=31536000, immutable"
        refused = await answer_package(edge, scope, send, data, sha256, q, head=head, count=count, audit=audit,
                                       cache=cache)
        if refused is not None:
            svc.audit("download", refused, q, refused.status)
            await send_json(send, refused.status, {"code": refused.code, "msg": refused.msg}, head=head)
