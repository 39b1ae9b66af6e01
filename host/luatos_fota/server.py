"""Run the app under uvicorn with a protocol that tolerates what devices really send.

libfota2 puts raw UTF-8 into the request target (behaviour.md §6: nothing is encoded). uvicorn's
httptools protocol decodes the path as ASCII and fails on such bytes, so
:class:`DeviceTolerantProtocol` keeps the original target in ``scope["luatos.raw_target"]`` (the
device endpoint parses that) and percent-encodes bytes >= 0x80 before uvicorn sees them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


class DeviceTolerantProtocol(HttpToolsProtocol):
    """httptools (llhttp) rejects bytes >= 0x80 in the target, so the request line is rewritten
    (percent-encoding only those bytes) before the parser sees it; the original target goes to
    ``scope["luatos.raw_target"]``. Limitation: in a pipelined keep-alive stream only the first
    request line of each received chunk is rewritten; devices send ``Connection: Close``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._line = bytearray()
        self._in_line = True
        self._orig_target: bytes | None = None
        self._delivery: Delivery | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._delivery is not None and self.cycle is not None and not self.cycle.response_complete:
            self._delivery.lost = True
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_line:
            idx = data.find(b"\n")
            head, rest = (data, b"") if idx < 0 else (data[:idx + 1], data[idx + 1:])
            self._line += head
            if idx >= 0 and self._line.strip():
                self._in_line = False
                parts = bytes(self._line).rstrip(b"\r\n").split(b" ")
                self._orig_target = parts[1] if len(parts) == 3 else None
                self._line.clear()
            elif idx >= 0:
                self._line.clear()
            if head.translate(None, _HIGH) != head:
                data = _encode_high(head) + rest
        super().data_received(data)

    def on_headers_complete(self) -> None:
        if self._orig_target is not None:
            self.scope["luatos.raw_target"] = self._orig_target  # type: ignore[typeddict-unknown-key]
            self._orig_target = None
        self._delivery = Delivery()
        self.scope["luatos.delivery"] = self._delivery  # type: ignore[typeddict-unknown-key]
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_line = True


def uvicorn_config(app: Any, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning",
                   access_log: bool = False, **kw: Any) -> uvicorn.Config:
    """The uvicorn settings a FOTA server needs (device-tolerant parser, no Server header)."""
    return uvicorn.Config(app, host=host, port=port, http=DeviceTolerantProtocol, lifespan="on",
                          log_level=log_level, access_log=access_log, server_header=False,
                          timeout_keep_alive=5, backlog=2048, **kw)


def serve_forever(app: Any, host: str, port: int, **kw: Any) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.Server(uvicorn_config(app, host, port, log_level="info", **kw)).run()
