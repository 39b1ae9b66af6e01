"""http: ``http.request`` as the firmware's libhttp does it (reference §6).

The exchange runs in a worker thread over a *transport*; the worker only talks to the
network and hands events (headers, body chunks, end) to the event loop through
``boot.post_from_thread``. Everything the device does with them — the FOTA area, the dst file,
the result codes — happens on the VM thread, in virtual time. The whole-exchange timeout is a
device timer, so it fires in virtual time even when the server never answers.

Transports: :class:`RequestsTransport` (default; ``requests`` with every default header
stripped, the request target set verbatim after preparation, no redirects, streaming) and
:class:`RawTransport` (a plain socket client). The raw one is used whenever ``requests``/urllib3
would alter the bytes the device sends (a target urllib3 would percent-encode, a zbuff body
without Content-Length that urllib3 would send chunked) or when a ``cut_after`` fault must
count the bytes on the wire. Both write the device's exact request. A test can plug its own
transport into ``dev.net.http_transport`` (anything with ``open(spec, wall_timeout_s)``).
"""

from __future__ import annotations

import base64
import os
import socket as pysocket
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..lua_text import py_str
from ..platform.network import ADAPTER_MAX, NetError, Network, connect_host
from ..tlsconf import TlsSettings, TlsSetupError, pem_arg
from .zbuff import ZBuff

if TYPE_CHECKING:
    from ..platform.network import BootNet
    from ..vm import Boot

METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"PATCH")
DEFAULT_TIMEOUT_FOTA = 600_000
DEFAULT_TIMEOUT_DST = 300_000
DEFAULT_TIMEOUT = 60_000
DONE_POLL_MS = 100
DONE_POLL_MAX = 120
SEGMENT = 1460  # bytes per delivery when a bandwidth limit stretches a transfer

# Result codes (§6).
E_STATE, E_HEADER, E_BODY, E_CONNECT, E_CLOSED, E_RX, E_FILE, E_TIMEOUT, E_FOTA = \
    -1, -2, -3, -4, -5, -6, -7, -8, -9


class HttpFail(Exception):
    """The exchange failed with a device result code."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


class SetupError(ValueError):
    """http.request's setup checks: the call fails at once with -4."""


@dataclass
class HttpRequestSpec:
    """What the device sends, and where the host-side connection goes."""

    method: str
    scheme: str
    host: str  # device-visible host (as in the URL, without brackets)
    port: int
    target: str  # path and query, verbatim
    headers: list[tuple[bytes, bytes]]  # in wire order, Host and Connection included
    body: bytes | None
    cut: int | None = None  # cut the connection after this many response bytes
    net: Network | None = None
    live_sock: Any = None  # the host socket while the exchange runs (to abort it)
    tls: TlsSettings = field(default_factory=TlsSettings)

    def abort(self) -> None:
        """Unblock the worker (from the VM thread): a timeout or the end of the boot."""
        sock = self.live_sock
        if sock is not None:
            try:
                sock.shutdown(pysocket.SHUT_RDWR)
            except OSError:
                pass

    def wire_bytes(self) -> bytes:
        head = f"{self.method} ".encode() + self.target.encode("utf-8", "surrogateescape") \
            + b" HTTP/1.1\r\n"
        head += b"".join(n + b": " + v + b"\r\n" for n, v in self.headers)
        return head + b"\r\n" + (self.body or b"")


class ResponseStream(Protocol):
    status: int
    headers: list[tuple[str, str]]

    def chunks(self) -> Iterator[bytes]:
        """Body bytes until the end; raises HttpFail(-1) when the connection breaks."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    def open(self, spec: HttpRequestSpec, wall_timeout_s: float) -> ResponseStream:
        """Send the request and read the status and headers; raises HttpFail."""
        ...


# -- the raw socket transport ------------------------------------------------------------------

class _RawResponse:
    def __init__(self, sock: pysocket.socket, rest: bytes, status: int,
                 headers: list[tuple[str, str]], budget: list[int | None], method: str) -> None:
        self.sock = sock
        self.status = status
        self.headers = headers
        self._rest = rest
        self._budget = budget
        self._method = method

    def _recv(self) -> bytes:
        if self._rest:
            data, self._rest = self._rest, b""
            return data
        return _recv_budget(self.sock, self._budget)

    def chunks(self) -> Iterator[bytes]:
        hdr = {k.lower(): v for k, v in self.headers}
        if self.status in (204, 304) or 100 <= self.status < 200:
            return
        if "chunked" in hdr.get("transfer-encoding", "").lower():
            yield from self._chunked()
            return
        length = hdr.get("content-length")
        left = int(length) if length is not None and length.strip().isdigit() else None
        while left is None or left > 0:
            data = self._recv()
            if not data:
                return
            if left is not None:
                data = data[:left]
                left -= len(data)
            yield data

    def _chunked(self) -> Iterator[bytes]:
        buf = b""
        while True:
            while b"\r\n" not in buf:
                more = self._recv()
                if not more:
                    return
                buf += more
            line, buf = buf.split(b"\r\n", 1)
            try:
                size = int(line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                raise HttpFail(E_BODY, f"bad chunk size {line[:20]!r}") from None
            if size == 0:
                return
            while len(buf) < size + 2:
                more = self._recv()
                if not more:
                    if buf[:size]:
                        yield buf[:size]
                    return
                buf += more
            yield buf[:size]
            buf = buf[size + 2:]

    def close(self) -> None:
        try:
            self.sock.shutdown(pysocket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _recv_budget(sock: pysocket.socket, budget: list[int | None]) -> bytes:
    left = budget[0]
    if left is not None and left <= 0:
        return b""
    try:
        data = sock.recv(65536)
    except TimeoutError:
        raise HttpFail(E_TIMEOUT, "read timed out") from None
    except OSError as e:
        raise HttpFail(E_STATE, f"connection broken: {e}") from None
    if left is not None:
        data = data[:left]
        budget[0] = left - len(data)
    return data


class RawTransport:
    """A plain socket HTTP/1.1 client that writes the spec's bytes and nothing else."""

    def open(self, spec: HttpRequestSpec, wall_timeout_s: float) -> ResponseStream:
        net = spec.net
        try:
            if net is not None:
                sock = connect_host(net, spec.host, spec.port, wall_timeout_s)
            else:
                sock = pysocket.create_connection((spec.host, spec.port), wall_timeout_s)
        except NetError as e:
            raise HttpFail(E_TIMEOUT if e.kind == "timeout" else E_CONNECT, str(e)) from None
        except OSError as e:
            raise HttpFail(E_CONNECT, str(e)) from None
        sock.settimeout(wall_timeout_s)
        spec.live_sock = sock
        if spec.scheme == "https":
            try:
                ctx = spec.tls.context()
            except TlsSetupError as e:
                sock.close()
                raise HttpFail(E_CONNECT, str(e)) from None
            try:
                sock = ctx.wrap_socket(sock, server_hostname=spec.host)
            except OSError as e:
                sock.close()
                raise HttpFail(E_CONNECT, f"TLS handshake failed: {e}") from None
        try:
            sock.sendall(spec.wire_bytes())
        except OSError as e:
            sock.close()
            raise HttpFail(E_CLOSED, f"send failed: {e}") from None
        budget: list[int | None] = [spec.cut]
        buf = b""
        while b"\r\n\r\n" not in buf:
            try:
                more = _recv_budget(sock, budget)
            except HttpFail as e:
                sock.close()
                raise HttpFail(E_CLOSED if e.code == E_STATE else e.code, str(e)) from None
            if not more:
                sock.close()
                raise HttpFail(E_CLOSED, "connection closed before the response headers")
            buf += more
            if len(buf) > 65536:
                sock.close()
                raise HttpFail(E_HEADER, "response headers too long")
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            sock.close()
            raise HttpFail(E_HEADER, f"bad status line {lines[0][:60]!r}") from None
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                headers.append((name.decode("latin-1").strip(),
                                value.decode("latin-1").strip()))
        return _RawResponse(sock, rest, status, headers, budget, spec.method)


# -- the requests transport --------------------------------------------------------------------

class _RequestsResponse:
    def __init__(self, resp: Any) -> None:
        self.resp = resp
        self.status = int(resp.status_code)
        raw_headers = getattr(resp.raw, "headers", None)
        items = raw_headers.items() if raw_headers is not None else resp.headers.items()
        self.headers = [(str(k), str(v)) for k, v in items]

    def chunks(self) -> Iterator[bytes]:
        import requests
        raw = self.resp.raw
        if hasattr(raw, "enforce_content_length"):
            raw.enforce_content_length = False  # a short body is reported, not raised
        try:
            for chunk in raw.stream(65536, decode_content=False):
                if chunk:
                    yield chunk
        except requests.exceptions.ReadTimeout:
            raise HttpFail(E_TIMEOUT, "read timed out") from None
        except Exception as e:  # noqa: BLE001 - urllib3/http.client raise many kinds here
            name = type(e).__name__
            if "IncompleteRead" in name or "Incomplete" in str(e):
                return
            raise HttpFail(E_STATE, f"connection broken: {e}") from None

    def close(self) -> None:
        try:
            self.resp.close()
        except Exception:  # noqa: BLE001
            pass


def _urllib3_keeps(target: str) -> bool:
    """True when urllib3 sends this request target unchanged."""
    try:
        from urllib3.util.url import _encode_target
    except ImportError:
        return False
    try:
        return bool(_encode_target(target) == target)
    except Exception:  # noqa: BLE001
        return False


class _HeadTrackingFile:
    """Wraps a response's socket file to tell "blank line" from "EOF" at the end of the
    header block: http.client accepts both, the device calls the second one -5."""

    def __init__(self, fp: Any) -> None:
        self._fp = fp
        self.in_head = True
        self.truncated = False

    def readline(self, *args: Any) -> bytes:
        line: bytes = self._fp.readline(*args)
        if self.in_head:
            if line in (b"\r\n", b"\n"):
                self.in_head = False
            elif line == b"":
                self.in_head = False
                self.truncated = True
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


_ADAPTER_CLS: list[Any] = []
_worker = threading.local()  # .spec: the HttpRequestSpec this worker thread runs


def _note_live_sock(sock: Any) -> None:
    spec = getattr(_worker, "spec", None)
    if spec is not None:
        spec.live_sock = sock


def _strict_adapter() -> Any:
    """A requests HTTPAdapter whose connections report a header block cut by EOF as
    ``RemoteDisconnected`` (-> "Connection aborted", -5) instead of accepting it."""
    if _ADAPTER_CLS:
        return _ADAPTER_CLS[0]()
    import http.client

    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class StrictResponse(http.client.HTTPResponse):
        def __init__(self, sock: Any, *args: Any, **kw: Any) -> None:
            super().__init__(sock, *args, **kw)
            self.fp = _HeadTrackingFile(self.fp)  # type: ignore[assignment]

        def begin(self) -> None:
            super().begin()
            if getattr(self.fp, "truncated", False):
                raise http.client.RemoteDisconnected(
                    "connection closed before the response headers were complete")

    class StrictHTTPConnection(HTTPConnection):
        response_class = StrictResponse

        def connect(self) -> None:
            super().connect()
            _note_live_sock(self.sock)

    class StrictHTTPSConnection(HTTPSConnection):
        response_class = StrictResponse

        def connect(self) -> None:
            super().connect()
            _note_live_sock(self.sock)

    class StrictHTTPPool(HTTPConnectionPool):
        ConnectionCls = StrictHTTPConnection

    class StrictHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = StrictHTTPSConnection

    class StrictAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kw: Any) -> None:
            super().init_poolmanager(*args, **kw)
            self.poolmanager.pool_classes_by_scheme = {"http": StrictHTTPPool,
                                                       "https": StrictHTTPSPool}

    _ADAPTER_CLS.append(StrictAdapter)
    return StrictAdapter()


class RequestsTransport:
    """``requests`` with the device's exact header set (nothing added) and a verbatim target."""

    def __init__(self) -> None:
        self.raw = RawTransport()

    def open(self, spec: HttpRequestSpec, wall_timeout_s: float) -> ResponseStream:
        bare_body = spec.body is not None and not any(
            n.lower() == b"content-length" for n, _ in spec.headers)
        if (spec.cut is not None or bare_body or not _urllib3_keeps(spec.target)
                or (spec.scheme == "https" and spec.tls.configured)):
            # urllib3 would re-encode the target or frame a bare body as chunked; certificates
            # are handled by the raw client's own TLS context
            return self.raw.open(spec, wall_timeout_s)
        import requests
        from requests.structures import CaseInsensitiveDict
        from urllib3.exceptions import InsecureRequestWarning
        from urllib3.util import SKIP_HEADER

        # The device checks no certificate unless given server_ca; neither do we, quietly.
        warnings.filterwarnings("ignore", category=InsecureRequestWarning)

        host, port = spec.host, spec.port
        if spec.net is not None:
            try:
                host, port = spec.net.resolve(spec.host, spec.port)
            except NetError as e:
                raise HttpFail(E_TIMEOUT if e.kind == "timeout" else E_CONNECT, str(e)) from None
        hostpart = f"[{host}]" if ":" in host else host
        url = f"{spec.scheme}://{hostpart}:{port}{spec.target}"
        session = requests.Session()
        session.trust_env = False
        session.headers.clear()
        session.mount("http://", _strict_adapter())
        session.mount("https://", _strict_adapter())
        prep = session.prepare_request(requests.Request(spec.method, url, data=spec.body))
        prep.url = url  # verbatim: prepare() re-quotes
        hdrs: CaseInsensitiveDict[Any] = CaseInsensitiveDict()
        for raw_name, raw_value in spec.headers:
            hdrs[raw_name.decode("latin-1")] = raw_value.decode("latin-1")
        for skip in ("User-Agent", "Accept-Encoding"):
            if skip not in hdrs:
                hdrs[skip] = SKIP_HEADER
        prep.headers = hdrs
        prep.body = spec.body
        try:
            resp = session.send(prep, stream=True, allow_redirects=False, verify=False,
                                timeout=(wall_timeout_s, wall_timeout_s))
        except requests.exceptions.ConnectTimeout as e:
            raise HttpFail(E_CONNECT, f"connect timed out: {e}") from None
        except requests.exceptions.ReadTimeout as e:
            raise HttpFail(E_TIMEOUT, f"no answer: {e}") from None
        except requests.exceptions.ConnectionError as e:
            text = str(e)
            if "aborted" in text or "RemoteDisconnected" in text or "BadStatusLine" in text:
                raise HttpFail(E_CLOSED, f"closed before the headers: {text}") from None
            raise HttpFail(E_CONNECT, f"connect failed: {text}") from None
        except requests.exceptions.RequestException as e:
            raise HttpFail(E_HEADER, f"request failed: {e}") from None
        finally:
            session.close()
        return _RequestsResponse(resp)


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
    mode: str  # "plain" | "dst" | "fota"
    spec: HttpRequestSpec
    timeout_ms: int
    dst_host: str | None = None
    callback: Any = None
    userdata: Any = None
    debug: bool = False
    done: bool = False
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_length: int | None = None
    body: bytearray = field(default_factory=bytearray)
    received: int = 0
    file: Any = None
    area: Any = None
    area_begun: bool = False
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
            if ex.file is not None:
                ex.file.close()
                ex.file = None
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
            elif ex.mode == "fota" and ex.status in (200, 206):
                fail_fota(ex)
            elif ex.mode == "fota":
                from ..platform.fota_area import area_for
                area_for(boot).end(False)
                finish(ex, E_FOTA, text, body=b"")
            else:
                finish(ex, E_STATE, text)

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
        ex.dst_host = None
        if mode == "dst" and isinstance(dst, bytes):
            path, err = boot.platform.fs.host_path(dst, write=True)
            if path is None:
                raise SetupError(f"dst {py_str(dst)!r}: {err}")
            ex.dst_host = path
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
        _worker.spec = ex.spec
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
        fota_reject = ex.mode == "fota" and stream.status not in (200, 206)
        if fota_reject and net.fota_error_body != "buffered":
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
        if ex.mode == "fota" and status in (200, 206):
            from ..platform.fota_area import area_for
            ex.area = area_for(boot)
            ex.area_begun = bool(ex.area.begin())
            if not ex.area_begun:
                ex.abort = True
                fail_fota(ex)
        elif ex.mode == "dst":
            try:
                os.makedirs(os.path.dirname(ex.dst_host or "."), exist_ok=True)
                ex.file = open(ex.dst_host or "", "wb")  # noqa: SIM115 - closed at the end
            except OSError as e:
                ex.abort = True
                finish(ex, E_FILE, f"dst: {e}")

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
        if ex.mode == "fota" and ex.area is not None:
            if ex.area.write(chunk) < 0:
                ex.abort = True
                fail_fota(ex)
                return
        elif ex.mode == "dst" and ex.file is not None:
            try:
                ex.file.write(chunk)
            except OSError as e:
                ex.abort = True
                finish(ex, E_FILE, f"dst write: {e}")
                return
        else:
            ex.body += chunk
        if ex.callback is not None:
            ex.callback(ex.content_length or 0, ex.received, ex.userdata)

    def on_end(ex: _Exchange, how: str, code: int = 0, text: str = "") -> None:
        io_done(ex)
        later(ex, 0, ended, how, code, text)

    def ended(ex: _Exchange, how: str, code: int, text: str) -> None:
        if ex.done:
            return
        if how == "error":
            if code == E_TIMEOUT:
                return
            if ex.mode == "fota" and ex.area_begun:
                fail_fota(ex)
            elif ex.mode == "dst":
                finish(ex, E_STATE, text)
            else:
                finish(ex, E_STATE, text)
            return
        if ex.mode == "fota":
            if ex.status not in (200, 206):
                from ..platform.fota_area import area_for
                area_for(boot).end(False)  # every -9 ends the fota area with 0
                finish(ex, E_FOTA, "status", body=b"" if net.fota_error_body != "buffered"
                       else bytes(ex.body))
                return
            cl = ex.content_length
            if cl is not None and cl > 0 and ex.received < cl:
                boot.log_c("E", "http", f"fota body incomplete, {ex.received}/{cl}")
                fail_fota(ex)
                return
            poll_done(ex, 0)
            return
        if ex.mode == "dst":
            if ex.file is not None:
                ex.file.close()
                ex.file = None
            if ex.status > 299 and ex.dst_host:
                _unlink(ex.dst_host)
            finish(ex, ex.status, "ok", body=ex.received)
            return
        finish(ex, ex.status, "ok", body=bytes(ex.body))

    def poll_done(ex: _Exchange, n: int) -> None:
        if ex.done:
            return
        r = ex.area.is_done()
        if r > 0:
            if n + 1 >= DONE_POLL_MAX:
                fail_fota(ex)
                return
            boot.post(DONE_POLL_MS, poll_done, ex, n + 1)
            return
        if r < 0 or not ex.area.end(True):
            fail_fota(ex)
            return
        ex.area_begun = False
        finish(ex, 200, "fota ok", body=ex.received)

    def fail_fota(ex: _Exchange) -> None:
        if ex.area is not None:
            ex.area.end(False)
            ex.area_begun = False
        finish(ex, E_FOTA, "fota", body=ex.received)

    def on_timeout(ex: _Exchange) -> None:
        if ex.done:
            return
        ex.abort = True
        ex.spec.abort()
        st = ex.stream
        if st is not None:
            st.close()
        io_done(ex)
        if ex.mode == "fota" and ex.area_begun:
            ex.area.end(False)
            ex.area_begun = False
        finish(ex, E_TIMEOUT, "timeout")

    def finish(ex: _Exchange, code: int, text: str = "", body: Any = None) -> None:
        if ex.done:
            return
        ex.done = True
        if ex in live:
            live.remove(ex)
        if ex.file is not None:
            ex.file.close()
            ex.file = None
        if ex.mode == "dst" and ex.dst_host and (code < 0 and code != E_FOTA):
            _unlink(ex.dst_host)
        boot.trace("http_result", code=code, host=ex.spec.host,
                                target=ex.spec.target, detail=text)
        if code < 0 and code != E_FOTA:
            boot.sys_pub(ex.topic, code)
            return
        t = boot.lua.table()
        for k, v in ex.headers:
            t[k.encode("latin-1")] = v.encode("latin-1")
        if ex.mode == "fota" and code == E_FOTA and body is None:
            body = ex.received
        boot.sys_pub(ex.topic, code, t, body)

    boot.firmware_module("http", {"request": request})


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


_DEFAULT: list[Transport] = []


def default_transport() -> Transport:
    if not _DEFAULT:
        _DEFAULT.append(RequestsTransport())
    return _DEFAULT[0]
