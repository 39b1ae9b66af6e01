"""HTTP/1.x requests as the device's httpsrv reads them (it runs the http_parser library).

Pure parsing with hard bounds, so a worker thread can read a client and hand the VM one whole
request, or a reason to drop the connection. The bounds are the emulator's (docs/defaults.md):
the device bounds a request only by its heap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The request methods http_parser knows; anything else is a parse error on the device.
METHODS = frozenset(
    "DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
    "SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY "
    "SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE".split())

URL_MAX = 1024  # the firmware refuses a longer URL ("request URL is too long")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")


class BadRequest(ValueError):
    """The request does not parse: the device closes the connection without an answer."""


class TooLarge(ValueError):
    """The request is over the emulator's bound (head or body)."""


@dataclass
class Request:
    method: str
    uri: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


@dataclass(frozen=True)
class Limits:
    head_bytes: int = 8192
    body_bytes: int = 1_048_576


def _head_end(buf: bytes) -> tuple[int, int] | None:
    """(end of head, start of body) or None while the blank line has not arrived."""
    crlf = buf.find(b"\r\n\r\n")
    lf = buf.find(b"\n\n")
    ends = [(i, i + 4) for i in (crlf,) if i >= 0] + [(i, i + 2) for i in (lf,) if i >= 0]
    return min(ends) if ends else None


def parse(buf: bytes, limits: Limits) -> Request | None:
    """A whole request from the bytes received so far, or None when more are needed."""
    found = _head_end(buf)
    if found is None:
        if len(buf) > limits.head_bytes:
            raise TooLarge(f"request head over {limits.head_bytes} bytes")
        return None
    head_len, body_at = found
    if head_len > limits.head_bytes:
        raise TooLarge(f"request head over {limits.head_bytes} bytes")
    lines = buf[:head_len].replace(b"\r\n", b"\n").split(b"\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise BadRequest(f"bad request line {lines[0][:80]!r}")
    method, uri, version = parts
    if method.decode("latin-1") not in METHODS:
        raise BadRequest(f"unknown method {method[:20]!r}")
    if not _VERSION.fullmatch(version):
        raise BadRequest(f"bad HTTP version {version[:20]!r}")
    if not uri or any(c < 0x21 or c == 0x7F for c in uri):
        raise BadRequest("bad URL")
    if len(uri) > URL_MAX:
        raise BadRequest(f"request URL is too long ({len(uri)} > {URL_MAX})")
    req = Request(method.decode("ascii"), uri)
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise BadRequest(f"bad header line {line[:80]!r}")
        value = value.strip(b" \t")
        req.headers.append((name, value))
        lname = name.lower()
        if lname == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise BadRequest(f"bad Content-Length {value[:20]!r}")
            length = int(value)
        elif lname == b"transfer-encoding" and value.lower().endswith(b"chunked"):
            chunked = True
    rest = buf[body_at:]
    if chunked:
        return _dechunk(req, rest, limits)
    n = length or 0
    if n > limits.body_bytes:
        raise TooLarge(f"body of {n} bytes over {limits.body_bytes}")
    if len(rest) < n:
        return None
    req.body = rest[:n]
    return req


def _dechunk(req: Request, data: bytes, limits: Limits) -> Request | None:
    body = bytearray()
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            if len(data) - pos > 32:
                raise BadRequest("bad chunk size line")
            return None
        size_text = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadRequest(f"bad chunk size {size_text[:20]!r}") from None
        if len(body) + size > limits.body_bytes:
            raise TooLarge(f"chunked body over {limits.body_bytes} bytes")
        start = eol + 2
        if size == 0:
            # The last chunk; trailers (ignored) end with a blank line.
            if data.find(b"\r\n", start) < 0:
                return None
            req.body = bytes(body)
            return req
        if len(data) < start + size + 2:
            return None
        if data[start + size:start + size + 2] != b"\r\n":
            raise BadRequest("chunk not followed by CRLF")
        body += data[start:start + size]
        pos = start + size + 2
