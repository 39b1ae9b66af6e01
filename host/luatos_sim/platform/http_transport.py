"""HTTP transports: the host side of ``http.request`` (the platform half of the http binding).

A transport opens the real connection for a device request and streams the answer back:
:class:`RequestsTransport` (default; ``requests`` with every default header stripped, the request
target set verbatim after preparation, no redirects, streaming) and :class:`RawTransport` (a
plain socket client). The raw one is used whenever ``requests``/urllib3 would alter the bytes
the device sends (a target urllib3 would percent-encode, a zbuff body without Content-Length
that urllib3 would send chunked) or when a ``cut_after`` fault must count the bytes on the wire.
Both write the device's exact request. A test can plug its own transport into
``dev.net.http_transport`` (anything with ``open(spec, wall_timeout_s)``).

Transports run in worker threads and never touch the VM; ``modules/http_mod.py`` (the binding)
turns what they deliver into device events.
"""

from __future__ import annotations

import socket as pysocket
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..tlsconf import TlsSettings, TlsSetupError
from .network import NetError, Network, connect_host

# http.request's result codes (docs/behaviour.md, "http"); transports fail with some of them.
E_STATE, E_HEADER, E_BODY, E_CONNECT, E_CLOSED, E_RX, E_FILE, E_TIMEOUT, E_FOTA = \
    -1, -2, -3, -4, -5, -6, -7, -8, -9

class HttpFail(Exception):
    """The exchange failed with a device result code."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


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
        _worker.spec = spec  # lets the connection hook find the socket an abort shuts down
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



_DEFAULT: list[Transport] = []


def default_transport() -> Transport:
    if not _DEFAULT:
        _DEFAULT.append(RequestsTransport())
    return _DEFAULT[0]
