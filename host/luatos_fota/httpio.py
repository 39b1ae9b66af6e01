"""Raw ASGI responses for the device-facing paths, plus RFC 9110 Range handling.

The device paths bypass Starlette's Request/Response objects: they are the hot path, and the
headers must be exact (Content-Length always, never chunked, strong ETag, Repr-Digest).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.types import Scope, Send

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
STREAM_CHUNK = 64 * 1024 * 1024  # above this, send in pieces to bound one write


async def send_bytes(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"",
                     *, head: bool = False, content_length: int | None = None) -> None:
    hdrs = list(headers)
    if status not in (204, 304) and not any(k == b"content-length" for k, _ in hdrs):
        n = len(body) if content_length is None else content_length
        hdrs.append((b"content-length", str(n).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    if head or status in (204, 304) or not body:
        await send({"type": "http.response.body", "body": b""})
        return
    if len(body) <= STREAM_CHUNK:
        # One write, no copy: the transport takes the bytes object as is (packages are cached).
        await send({"type": "http.response.body", "body": body})
        return
    for off in range(0, len(body), STREAM_CHUNK):
        await send({"type": "http.response.body", "body": body[off:off + STREAM_CHUNK],
                    "more_body": off + STREAM_CHUNK < len(body)})


async def send_json(send: Send, status: int, obj: Any, extra: list[tuple[bytes, bytes]] | None = None,
                    *, head: bool = False) -> None:
    body = json.dumps(obj, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json; charset=utf-8"), (b"cache-control", b"no-store")]
    await send_bytes(send, status, headers + (extra or []), body, head=head)


def header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


@dataclass
class RangePlan:
    """What to send: ``status`` 200 (whole), 206 (``start``..``end`` inclusive) or 416."""

    status: int
    start: int = 0
    end: int = 0


def _num(digits: str) -> int:
    """A Range position; anything past 18 digits is beyond every package (and int() of thousands
    of digits is refused by Python, which once turned such a header into a 503)."""
    return int(digits) if len(digits) <= 18 else 10 ** 18


def plan_range(range_header: bytes | None, if_range: bytes | None, etag: str, total: int) -> RangePlan:
    whole = RangePlan(200, 0, total - 1)
    if range_header is None:
        return whole
    if if_range is not None and if_range.decode("latin-1").strip() != etag:
        return whole  # the representation changed (or a date validator we never issued): start over
    if len(range_header) > 200:
        return whole  # no single byte range needs this much: unparseable, ignored (RFC 9110 §14.2)
    text = range_header.decode("latin-1")
    if "," in text:
        return whole  # multiple ranges: allowed to ignore (RFC 9110 §14.2)
    m = _RANGE_RE.match(text)
    if not m or (not m[1] and not m[2]):
        return whole  # invalid syntax must be ignored
    if m[1]:
        start = _num(m[1])
        end = min(_num(m[2]), total - 1) if m[2] else total - 1
        if m[2] and _num(m[2]) < start:
            return whole
        if start >= total:
            return RangePlan(416)
    else:
        suffix = _num(m[2])
        if suffix == 0 or total == 0:
            return RangePlan(416)
        start, end = max(0, total - suffix), total - 1
    return RangePlan(206, start, end)


def package_headers(sha256_hex: str, total: int, extra: list[tuple[bytes, bytes]] | None = None,
                    cache: bytes = b"no-store") -> list[tuple[bytes, bytes]]:
    b64 = base64.b64encode(bytes.fromhex(sha256_hex)).decode()
    return [(b"content-type", b"application/octet-stream"), (b"accept-ranges", b"bytes"),
            (b"etag", f'"{sha256_hex}"'.encode()), (b"repr-digest", f"sha-256=:{b64}:".encode()),
            (b"cache-control", cache), *(extra or [])]


async def send_package(send: Send, scope: Scope, data: bytes, sha256_hex: str,
                       extra: list[tuple[bytes, bytes]] | None = None, *, head: bool = False,
                       cache: bytes = b"no-store") -> int:
    """Send a package honouring Range/If-Range; returns the status sent."""
    total = len(data)
    etag = f'"{sha256_hex}"'
    plan = plan_range(header(scope, b"range"), header(scope, b"if-range"), etag, total)
    hdrs = package_headers(sha256_hex, total, extra, cache)
    if plan.status == 416:
        hdrs = [(k, v) for k, v in hdrs if k != b"content-type"]
        hdrs += [(b"content-range", f"bytes */{total}".encode()), (b"content-type", b"application/json")]
        body = json.dumps({"code": 416, "msg": f"range not satisfiable: the package has {total} bytes"}).encode()
        await send_bytes(send, 416, hdrs, body, head=head)
        return 416
    if plan.status == 206:
        hdrs.append((b"content-range", f"bytes {plan.start}-{plan.end}/{total}".encode()))
        body = data[plan.start:plan.end + 1]
        await send_bytes(send, 206, hdrs, body, head=head, content_length=len(body))
        return 206
    await send_bytes(send, 200, hdrs, data, head=head, content_length=total)
    return 200
