"""http: ``http.request`` as the firmware's libhttp does it (docs/behaviour.md §6).

The exchange runs in a worker thread over a *transport*; the worker only talks to the
network and hands events (headers, body chunks, end) to the event loop through
``boot.post_from_thread``. Everything the device does with them — the FOTA area, the dst file,
the result codes — happens on the VM thread, in virtual time. The whole-exchange timeout is a
device timer, so it fires in virtual time even when the server never answers.

The transports (the host side: real sockets, ``requests``) live in ``platform/http_transport.py``;
a test plugs one into ``dev.net.http_transport``.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..lua_text import py_str
from ..platform.http_transport import (
    E_CLOSED,
    E_CONNECT,
    E_FOTA,
    E_TIMEOUT,
    HttpFail,
    HttpRequestSpec,
    ResponseStream,
    Transport,
    default_transport,
)
from ..platform.network import ADAPTER_MAX
from ..tlsconf import TlsSettings, pem_arg
from .http_body import BodySink, FileSink, FotaSink
from .zbuff import ZBuff

if TYPE_CHECKING:
    from ..platform.network import BootNet
    from ..vm import Boot

METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"PATCH")
DEFAULT_TIMEOUT_FOTA = 600_000
DEFAULT_TIMEOUT_DST = 300_000
DEFAULT_TIMEOUT = 60_000
SEGMENT = 1460  # bytes per delivery when a bandwidth limit stretches a transfer



class SetupError(ValueError):
    """http.request's setup checks: the call fails at once with -4."""


# -- the request as the device runs it ---------------------------------------------------------

def parse_url(url: bytes) -> tuple[str, str, int, str, bytes | None]:
    """(scheme, host, port, target, authorization) or SetupError."""
    text = url.decode("utf-8", "surrogateescape")
    if text.startswith("http://"):
        scheme, rest = "http", text[7:]
    elif text.startswith("https://"):
        scheme, rest = "https", text[8:]
    else:
        raise SetupError(f"url must start with http:// or https://: {text[:40]!r}")
    if len(rest) < 5:
        raise SetupError(f"url too short: {text!r}")
    slash = rest.find("/")
    hostpart, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    auth = None
    if "@" in hostpart:
        userinfo, hostpart = hostpart.rsplit("@", 1)
        auth = b"Basic " + base64.b64encode(userinfo.encode("utf-8", "surrogateescape"))
    port = 443 if scheme == "https" else 80
    if hostpart.startswith("["):
        end = hostpart.find("]")
        if end < 0:
            raise SetupError(f"bad IPv6 host in {text!r}")
        host, tail = hostpart[1:end], hostpart[end + 1:]
        if tail.startswith(":"):
            port = _parse_port(tail[1:], text)
    elif ":" in hostpart:
        host, p = hostpart.rsplit(":", 1)
        port = _parse_port(p, text)
    else:
        host = hostpart
    if not host:
        raise SetupError(f"no host in {text!r}")
    return scheme, host, port, target, auth


def _parse_port(p: str, url: str) -> int:
    if not p.isdigit() or not 0 < int(p) < 65536:
        raise SetupError(f"bad port {p!r} in {url!r}")
    return int(p)


@dataclass
class _Exchange:
    boot: Boot
    bn: BootNet
    topic: bytes
    mode: str  # "plain" | "dst" | "fota" (the sink's)
    spec: HttpRequestSpec
    timeout_ms: int
    sink: BodySink = field(default_factory=lambda: BodySink(lambda *_: None))
    callback: Any = None
    userdata: Any = None
    debug: bool = False
    done: bool = False
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_length: int | None = None
    received: int = 0
    abort: bool = False
    stream: ResponseStream | None = None
    next_at: int = 0
    io_open: bool = True
    adapter: int = 0


def install(boot: Boot) -> None:
    net = boot.platform.net
    bn = net.boot_net(boot)
    live: list[_Exchange] = []

    def close_all() -> None:
        for ex in list(live):
            ex.done = True
            ex.abort = True
            ex.spec.abort()
            st = ex.stream
            if st is not None:
                st.close()
            ex.sink.release()
        live.clear()

    boot.closers.append(close_all)

    def adapter_lost(adapter: int) -> None:
        """The link under an exchange went away: it fails now; later bytes never arrive."""
        for ex in list(live):
            if ex.adapter != adapter or ex.done:
                continue
            connected = ex.spec.live_sock is not None
            ex.abort = True
            ex.spec.abort()
            st = ex.stream
            if st is not None:
                st.close()
            io_done(ex)
            text = f"adapter {adapter} lost its address"
            if not ex.headers and not ex.status:
                finish(ex, E_CLOSED if connected else E_CONNECT, text)
            else:
                ex.sink.lost(ex.status, text)

    bn.lose_listeners.append(adapter_lost)

    def request(method: Any = None, url: Any = None, headers: Any = None, body: Any = None,
                opts: Any = None, server_ca: Any = None, client_cert: Any = None,
                client_key: Any = None, client_password: Any = None) -> Any:
        tls = TlsSettings(pem_arg(server_ca), pem_arg(client_cert), pem_arg(client_key),
                          pem_arg(client_password), check_hostname=boot.options.tls_check_hostname)
        try:
            ex = setup(method, url, headers, body, opts)
            ex.spec.tls = tls
        except SetupError as e:
            boot.trace("http_setup_failed", reason=str(e))
            return boot.cw_fail(E_CONNECT)
        topic, cw = boot.new_cw()
        ex.topic = topic
        start(ex)
        return cw

    def setup(method: Any, url: Any, headers: Any, body: Any, opts: Any) -> _Exchange:
        m = method if isinstance(method, bytes) else b"GET"
        if method is None:
            m = b"GET"
        if m not in METHODS:
            raise SetupError(f"method {py_str(m)!r} is not one of GET POST PUT DELETE PATCH")
        if not isinstance(url, bytes):
            raise SetupError("url must be a string")
        scheme, host, port, target, auth = parse_url(url)
        o: dict[str, Any] = {}
        if boot.lua_type(opts) == b"table":
            for k in (b"timeout", b"dst", b"fota", b"adapter", b"debug", b"ipv6", b"callback",
                      b"userdata"):
                o[k.decode()] = opts[k]
        fota = o.get("fota")
        fota_on = fota is not None and fota is not False
        dst = o.get("dst")
        if fota_on and dst is not None:
            raise SetupError("fota and dst together")
        adapter = o.get("adapter")
        a = bn.default if adapter is None else adapter
        if not isinstance(a, int) or not 0 < a < ADAPTER_MAX:
            raise SetupError(f"bad adapter {adapter!r}")
        mode = "fota" if fota_on else ("dst" if isinstance(dst, bytes) else "plain")
        timeout = o.get("timeout")
        if not isinstance(timeout, int | float) or timeout < 1000:
            timeout = {"fota": DEFAULT_TIMEOUT_FOTA, "dst": DEFAULT_TIMEOUT_DST}.get(
                mode, DEFAULT_TIMEOUT)
        # The request head, in the device's order.
        custom: list[tuple[bytes, bytes]] = []
        if boot.lua_type(headers) == b"table":
            for k, v in headers.items():
                if isinstance(k, bytes) and isinstance(v, bytes | int | float):
                    vb = v if isinstance(v, bytes) else str(v).encode()
                    if k and vb and k.lower() != b"content-length":
                        custom.append((k, vb))
        names = [k for k, _ in custom]
        wire: list[tuple[bytes, bytes]] = []
        if not any(k.lower() == b"connection" for k in names):
            wire.append((b"Connection", b"Close"))
        if b"Host" not in names and b"host" not in names:
            hostpart = f"[{host}]" if ":" in host else host
            wire.append((b"Host", f"{hostpart}:{port}".encode("utf-8", "surrogateescape")))
        if auth is not None:
            wire.append((b"Authorization", auth))
        wire += custom
        payload: bytes | None = None
        if isinstance(body, bytes):
            payload = body
            wire.append((b"Content-Length", str(len(body)).encode()))
        elif isinstance(body, ZBuff):
            payload = body.query()
            if m in (b"POST", b"PUT"):
                wire.append((b"Content-Length", str(len(payload)).encode()))
        spec = HttpRequestSpec(py_str(m), scheme, host, port, target, wire, payload, net=net)
        ex = _Exchange(boot, bn, b"", mode, spec, int(timeout))

        def end(code: int, text: str, result_body: Any) -> None:
            finish(ex, code, text, body=result_body)
        if mode == "dst" and isinstance(dst, bytes):
            path, err = boot.platform.fs.host_path(dst, write=True)
            if path is None:
                raise SetupError(f"dst {py_str(dst)!r}: {err}")
            ex.sink = FileSink(end, path)
        elif mode == "fota":
            ex.sink = FotaSink(end, boot, net.fota_error_body == "buffered")
        else:
            ex.sink = BodySink(end)
        ex.callback = o.get("callback") if boot.lua_type(o.get("callback")) == b"function" \
            else None
        ex.userdata = o.get("userdata")
        ex.debug = bool(o.get("debug"))
        ex.adapter = a
        return ex

    def start(ex: _Exchange) -> None:
        live.append(ex)
        sp = ex.spec
        boot.trace("http_request", method=sp.method, host=sp.host, port=sp.port,
                                target=sp.target, mode=ex.mode)
        if ex.debug:
            boot.log_c("D", "http", f"{sp.method} {sp.scheme}://{sp.host}:{sp.port}{sp.target}")
        boot.post(ex.timeout_ms, on_timeout, ex)
        ex.next_at = boot.now
        if not bn.is_ready(ex.adapter):
            ex.io_open = False
            boot.post(0, finish, ex, E_CONNECT)
            return
        sp.cut = net.take_cut(sp.host)
        boot.begin_io()
        transport = net.http_transport or default_transport()
        wall = max(1.0, ex.timeout_ms / 1000.0)
        threading.Thread(target=worker, args=(ex, transport, wall),
                         name="luatos-sim-http", daemon=True).start()

    def worker(ex: _Exchange, transport: Transport, wall: float) -> None:
        post = boot.post_from_thread
        try:
            stream = transport.open(ex.spec, wall)
        except HttpFail as e:
            post(on_fail, ex, e.code, str(e))
            return
        except Exception as e:  # noqa: BLE001 - a transport bug must not hang the device
            post(on_fail, ex, E_CONNECT, f"{type(e).__name__}: {e}")
            return
        ex.stream = stream
        post(on_headers, ex, stream.status, list(stream.headers))
        if not ex.sink.wants_body(stream.status):
            stream.close()
            post(on_end, ex, "eof")
            return
        try:
            for chunk in stream.chunks():
                if ex.abort:
                    break
                post(on_chunk, ex, chunk)
        except HttpFail as e:
            stream.close()
            post(on_end, ex, "error", e.code, str(e))
            return
        stream.close()
        post(on_end, ex, "eof")

    # -- VM side: every handler runs from the event loop, in order ---------------------------

    def later(ex: _Exchange, nbytes: int, fn: Callable[..., None], *args: Any) -> None:
        """Apply latency and bandwidth in virtual time, keeping the order of events."""
        at = max(boot.now + 2 * net.latency_ms, ex.next_at) + net.delay_for(nbytes)
        ex.next_at = at
        boot.post(at - boot.now, fn, ex, *args)

    def io_done(ex: _Exchange) -> None:
        if ex.io_open:
            ex.io_open = False
            boot.end_io()

    def on_fail(ex: _Exchange, code: int, text: str) -> None:
        io_done(ex)
        if code == E_TIMEOUT:
            return  # the device timer reports -8 in virtual time
        later(ex, 0, lambda e, c, t: finish(e, c, t), code, text)

    def on_headers(ex: _Exchange, status: int, headers: list[tuple[str, str]]) -> None:
        later(ex, 0, headers_arrived, status, headers)

    def headers_arrived(ex: _Exchange, status: int, headers: list[tuple[str, str]]) -> None:
        if ex.done:
            return
        ex.status = status
        ex.headers = headers
        for k, v in headers:
            if k.lower() == "content-length" and v.strip().isdigit():
                ex.content_length = int(v)
        if ex.debug:
            boot.log_c("D", "http", f"status {status}")
        ex.sink.begin(status)
        if ex.sink.failed:
            ex.abort = True

    def on_chunk(ex: _Exchange, chunk: bytes) -> None:
        if net.bandwidth_bps:
            # Trickle in segment-sized pieces, so a fault mid-transfer sees a partial body.
            for i in range(0, len(chunk), SEGMENT):
                later(ex, len(chunk[i:i + SEGMENT]), chunk_arrived, chunk[i:i + SEGMENT])
        else:
            later(ex, len(chunk), chunk_arrived, chunk)

    def chunk_arrived(ex: _Exchange, chunk: bytes) -> None:
        if ex.done:
            return
        ex.received += len(chunk)
        ex.sink.write(chunk)
        if ex.sink.failed:
            ex.abort = True
            return
        if ex.callback is not None:
            ex.callback(ex.content_length or 0, ex.received, ex.userdata)

    def on_end(ex: _Exchange, how: str, code: int = 0, text: str = "") -> None:
        io_done(ex)
        later(ex, 0, ended, how, code, text)

    def ended(ex: _Exchange, how: str, code: int, text: str) -> None:
        if ex.done:
            return
        if how == "error":
            if code != E_TIMEOUT:  # the device timer reports -8 in virtual time
                ex.sink.broken(text)
            return
        ex.sink.complete(ex.status, ex.content_length, ex.received)

    def on_timeout(ex: _Exchange) -> None:
        if ex.done:
            return
        ex.abort = True
        ex.spec.abort()
        st = ex.stream
        if st is not None:
            st.close()
        io_done(ex)
        ex.sink.timed_out()
        finish(ex, E_TIMEOUT, "timeout")

    def finish(ex: _Exchange, code: int, text: str = "", body: Any = None) -> None:
        if ex.done:
            return
        ex.done = True
        if ex in live:
            live.remove(ex)
        ex.sink.close(code)
        boot.trace("http_result", code=code, host=ex.spec.host,
                                target=ex.spec.target, detail=text)
        if code < 0 and code != E_FOTA:
            boot.sys_pub(ex.topic, code)
            return
        t = boot.lua.table()
        for k, v in ex.headers:
            t[k.encode("latin-1")] = v.encode("latin-1")
        boot.sys_pub(ex.topic, code, t, body)

    boot.firmware_module("http", {"request": request})
