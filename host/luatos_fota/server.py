"""Run the app under uvicorn with an HTTP edge that tolerates devices and bounds attackers.

:class:`EdgeProtocol` frames every request itself before httptools (llhttp) sees it:

* It buffers the request head up to the blank line, so the head size is known before parsing:
  a request line over ``max_request_line`` gets 414 and a head over ``max_head_bytes`` gets 431,
  each decided per received chunk (a 64 MB request line costs one buffer, never a parse).
* The request target is the second word of the head's first line, kept in
  ``scope["luatos.raw_target"]`` as sent (libfota2 puts raw UTF-8 there, docs/behaviour.md §6), and
  bytes >= 0x7F in that line are percent-encoded for llhttp, which refuses them. Because heads
  and bodies are framed here (``Content-Length``; a chunked request body gets 411), a pipelined
  request can never take its target from a header or body line.
* Timers: the head must be complete within ``header_timeout_s`` of its first byte (of the
  connection, for the first request), a body may pause at most ``body_timeout_s``, and an idle
  keep-alive connection closes after ``keep_alive_s``.
* Connections beyond ``max_connections`` in total or ``max_connections_per_ip`` from one address
  get 503 with ``Retry-After`` and are closed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("luatos_fota.server")

_HIGH = bytes(range(0x7F, 0x100))  # DEL and non-ASCII: llhttp rejects them in a target


def _encode_high(b: bytes) -> bytes:
    return b"".join(b"%%%02X" % c if c >= 0x7F else bytes((c,)) for c in b)


@dataclass
class Delivery:
    """Whether the client of one request is still there: set to lost when the connection goes
    before the response completed. uvicorn silently drops what is sent after that, so the app
    reads this (``scope["luatos.delivery"]``) to tell a delivered serve from one whose client
    hung up (a half-closed socket, a dropped link)."""

    lost: bool = False


@dataclass
class EdgeLimits:
    """The HTTP edge's bounds (``ServerConfig`` fields of the same names) and the live counts
    shared by every connection of one server."""

    max_head_bytes: int = 16384
    max_request_line: int = 8192
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 5.0
    max_connections: int = 2048
    max_connections_per_ip: int = 256
    retry_after_s: int = 30
    open_total: int = 0
    open_by_ip: dict[str, int] = field(default_factory=dict)
    refused: int = 0  # counters, shown by /healthz
    timed_out: int = 0
    too_large: int = 0

    @classmethod
    def from_config(cls, cfg: Any) -> EdgeLimits:
        names = ("max_head_bytes", "max_request_line", "header_timeout_s", "body_timeout_s",
                 "keep_alive_s", "max_connections", "max_connections_per_ip", "retry_after_s")
        return cls(**{n: getattr(cfg, n) for n in names if hasattr(cfg, n)})


def _reply(status: int, reason: str, msg: str, extra: bytes = b"") -> bytes:
    body = json.dumps({"code": status, "msg": msg}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n").encode() + extra + b"\r\n" + body


def _content_length(head: bytes) -> tuple[int | None, str]:
    """(body length, problem): what the head says about its body; problem "" when fine."""
    length: int | None = None
    for line in head.split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        n = name.strip().lower()
        if n == b"transfer-encoding":
            return None, "chunked"
        if n == b"content-length":
            v = value.strip()
            if not v.isdigit() or len(v) > 15:
                return None, "bad content-length"
            if length is not None and int(v) != length:
                return None, "conflicting content-length"
            length = int(v)
    return length or 0, ""


class EdgeProtocol(HttpToolsProtocol):
    """See the module docstring. ``limits`` is set on a subclass per server (:func:`edge_protocol`)."""

    limits: EdgeLimits = EdgeLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = int(max(1, self.limits.keep_alive_s))
        self._buf = bytearray()
        self._body_left = 0
        self._target: bytes | None = None
        self._timer: Any = None
        self._ip = ""
        self._counted = False
        self._dead = False
        self._delivery: Delivery | None = None

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        lim = self.limits
        self._ip = self.client[0] if self.client else ""
        if lim.open_total >= lim.max_connections or lim.open_by_ip.get(self._ip, 0) >= lim.max_connections_per_ip:
            lim.refused += 1
            self._dead = True
            transport.write(_reply(503, "Service Unavailable", "too many connections; retry later",
                                   b"retry-after: %d\r\n" % lim.retry_after_s))
            if transport.can_write_eof():
                transport.write_eof()  # let the client read the answer; close soon after
            self.loop.call_later(2.0, transport.close)
            return
        self._counted = True
        lim.open_total += 1
        lim.open_by_ip[self._ip] = lim.open_by_ip.get(self._ip, 0) + 1
        self._arm(lim.header_timeout_s, self._head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._delivery is not None and self.cycle is not None and not self.cycle.response_complete:
            self._delivery.lost = True
        self._disarm()
        if self._counted:
            self._counted = False
            lim = self.limits
            lim.open_total -= 1
            n = lim.open_by_ip.get(self._ip, 1) - 1
            if n > 0:
                lim.open_by_ip[self._ip] = n
            else:
                lim.open_by_ip.pop(self._ip, None)
        super().connection_lost(exc)

    def eof_received(self) -> None:
        """A client that half-closes before its answer is complete has hung up. asyncio closes
        the transport at once and from then on silently drops writes, but ``connection_lost``
        (which marks the delivery lost) runs only on the next loop turn; a send in between would
        be taken as delivered. So mark it here, unless written bytes are still queued: then the
        transport flushes them and ``connection_lost`` runs right as the queue empties."""
        cycle = self.cycle
        if (self._delivery is not None and cycle is not None and not cycle.response_complete
                and not self.transport.get_write_buffer_size()):
            self._delivery.lost = True
        super().eof_received()  # returns nothing: the transport closes itself

    def _arm(self, delay: float, fn: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, fn)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _refuse(self, status: int, reason: str, msg: str) -> None:
        self._dead = True
        self._disarm()
        self._buf = bytearray()
        if not self.transport.is_closing():
            self.transport.write(_reply(status, reason, msg))
            self.transport.close()

    def _head_timeout(self) -> None:
        self._timer = None
        self.limits.timed_out += 1
        if self._buf:
            self._refuse(408, "Request Timeout",
                         f"request head not complete within {self.limits.header_timeout_s:g} s")
        else:
            self._dead = True
            self.transport.close()

    def _body_timeout(self) -> None:
        self._timer = None
        self.limits.timed_out += 1
        self._refuse(408, "Request Timeout", f"request body stalled for {self.limits.body_timeout_s:g} s")

    # ------------------------------------------------------------------ framing

    def data_received(self, data: bytes) -> None:
        while data and not self._dead and not self.transport.is_closing():
            if self._body_left:
                n = min(len(data), self._body_left)
                self._body_left -= n
                if self._body_left:
                    self._arm(self.limits.body_timeout_s, self._body_timeout)
                else:
                    self._disarm()
                super().data_received(data[:n])
                data = data[n:]
                continue
            data = self._head_bytes(data)

    def _head_bytes(self, data: bytes) -> bytes:
        """Take head bytes; feed the parser once the head is whole; return what follows it."""
        lim = self.limits
        if not self._buf:
            data = data.lstrip(b"\r\n")  # empty lines before a request line are allowed
            if not data:
                return b""
            if self._timer is None or self.timeout_keep_alive_task is not None:
                self._unset_keepalive_if_required()
                self._arm(lim.header_timeout_s, self._head_timeout)
        start = max(0, len(self._buf) - 3)
        self._buf += data
        end = self._buf.find(b"\r\n\r\n", start)
        sep = 4
        if end < 0:
            end = self._buf.find(b"\n\n", start)
            sep = 2
        if end < 0:
            if self._buf.find(b"\n", 0, lim.max_request_line + 2) < 0 and len(self._buf) > lim.max_request_line:
                lim.too_large += 1
                self._refuse(414, "URI Too Long", f"request line over {lim.max_request_line} bytes")
            elif len(self._buf) > lim.max_head_bytes:
                lim.too_large += 1
                self._refuse(431, "Request Header Fields Too Large",
                             f"request head over {lim.max_head_bytes} bytes")
            return b""
        head = bytes(self._buf[:end + sep])
        rest = bytes(self._buf[end + sep:])
        self._buf = bytearray()
        nl = head.find(b"\n")
        if nl > lim.max_request_line:
            lim.too_large += 1
            self._refuse(414, "URI Too Long", f"request line over {lim.max_request_line} bytes")
            return b""
        if len(head) > lim.max_head_bytes:
            lim.too_large += 1
            self._refuse(431, "Request Header Fields Too Large", f"request head over {lim.max_head_bytes} bytes")
            return b""
        length, problem = _content_length(head)
        if problem == "chunked":
            self._refuse(411, "Length Required", "chunked request bodies are not accepted; send Content-Length")
            return b""
        if problem:
            self._refuse(400, "Bad Request", problem)
            return b""
        line = head[:nl].rstrip(b"\r")
        parts = line.split(b" ")
        self._target = parts[1] if len(parts) == 3 else None
        if line.translate(None, _HIGH) != line:
            head = _encode_high(line) + head[len(line):]
        self._disarm()
        self._body_left = length or 0
        if self._body_left:
            self._arm(lim.body_timeout_s, self._body_timeout)
        super().data_received(head)
        return rest

    def on_headers_complete(self) -> None:
        if self._target is not None:
            self.scope["luatos.raw_target"] = self._target  # type: ignore[typeddict-unknown-key]
            self._target = None
        self._delivery = Delivery()
        self.scope["luatos.delivery"] = self._delivery  # type: ignore[typeddict-unknown-key]
        super().on_headers_complete()


# The name other modules and tests know; the edge framing is what keeps devices' raw targets.
DeviceTolerantProtocol = EdgeProtocol


def edge_protocol(limits: EdgeLimits) -> type[EdgeProtocol]:
    """A protocol class bound to one server's limits and connection counts."""
    return type("BoundEdgeProtocol", (EdgeProtocol,), {"limits": limits})


def uvicorn_config(app: Any, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning",
                   access_log: bool = False, tls_cert: str | None = None, tls_key: str | None = None,
                   **kw: Any) -> uvicorn.Config:
    """The uvicorn settings a FOTA server needs (edge protocol with the app's limits, no Server
    header, TLS when a certificate is given)."""
    cfg = getattr(getattr(app, "state", None), "config", None)
    limits = EdgeLimits.from_config(cfg) if cfg is not None else EdgeLimits()
    if hasattr(app, "state"):
        app.state.edge = limits
    if tls_cert:
        kw.update(ssl_certfile=tls_cert, ssl_keyfile=tls_key)
    return uvicorn.Config(app, host=host, port=port, http=edge_protocol(limits), lifespan="on",
                          log_level=log_level, access_log=access_log, server_header=False,
                          timeout_keep_alive=int(max(1, limits.keep_alive_s)), backlog=2048, **kw)


def tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2+) for the push channel, same files as the HTTP side."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def limit_malloc_arenas(n: int = 2) -> None:
    """glibc gives each thread that allocates its own arena (up to 8 per core); with 16 worker
    threads the server's RSS then creeps up under load and is never given back. Two arenas keep
    it flat at no measurable cost (the event loop thread does most of the allocating)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, n)  # M_ARENA_MAX


def serve_forever(app: Any, host: str, port: int, **kw: Any) -> None:
    limit_malloc_arenas()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.Server(uvicorn_config(app, host, port, log_level="info", **kw)).run()
