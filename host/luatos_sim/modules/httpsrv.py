"""httpsrv: the device's small HTTP server, on a real loopback listener (docs/behaviour.md §5.7).

Each ``httpsrv.start(port, func, adapter)`` binds a loopback TCP server for the device port;
a test reaches it at ``dev.net.server_address(port)``, as it reaches ``socket.listen``. A worker
thread reads one request per connection (bounded: ``dev.net.httpsrv_limits`` and
``httpsrv_read_timeout_ms``) and hands it to the event loop with ``post_from_thread``; there
the firmware's order applies: a file under /luadb answers first, otherwise the Lua callback runs
on the main state, in virtual time, and its ``code, headers, body`` become an HTTP/1.0 answer
with ``Connection: close``. A request that does not parse is dropped without an answer, as the
firmware does ("bad request, close socket").
"""

from __future__ import annotations

import os
import select
import socket as pysocket
import threading
import time
from typing import TYPE_CHECKING, Any

from ..cfunc import require_ints
from ..httpsrv_wire import BadRequest, Request, TooLarge, parse
from ..platform.network import ADAPTER_MAX, BootNet
from .socket_mod import accept_clients, loopback_listener

if TYPE_CHECKING:
    from ..vm import Boot

SERVER_SLOTS = 16  # LUAT_HTTPSRV_COUNT
STATIC_URI_MAX = 200  # a longer URI is never looked up as a file
# Reason phrases the firmware knows; any other code is answered as "200 Ok" with a warning.
REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           500: "Internal Server Error"}
# Content-Type by file-name ending, first match wins (the firmware compares the last bytes,
# without the dot, so "json" must come before "js").
CONTENT_TYPES = (
    (b"html", "text/html; charset=utf-8"), (b"txt", "text/txt; charset=utf-8"),
    (b"xml", "text/xml; charset=utf-8"), (b"jpg", "image/jpeg"), (b"png", "image/png"),
    (b"gif", "image/gif"), (b"svg", "svg+xml"), (b"json", "application/json; charset=utf-8"),
    (b"js", "application/javascript; charset=utf-8"), (b"css", "text/css"),
    (b"wav", "audio/wave"), (b"ogg", "audio/ogg"), (b"webm", "video/webm"),
    (b"mp4", "video/mpeg4"), (b"bin", "application/octet-stream"),
)
_CLIENT_FD_BASE = 0x28000000  # the callback's first argument: the client's pcb address


def content_type(path: bytes, gz: bool) -> str:
    name = path[:-3] if gz else path
    for suffix, value in CONTENT_TYPES:
        if len(name) > len(suffix) + 2 and name.endswith(suffix):
            return value
    return "application/octet-stream"


def static_answer(path: bytes, data: bytes, gz: bool) -> bytes:
    head = [b"HTTP/1.0 200 OK", b"Content-Length: %d" % len(data), b"X-Powered-By: LuatOS"]
    if gz:
        head.append(b"Content-Encoding: gzip")
    head.append(f"Content-Type: {content_type(path, gz)}".encode())
    return b"\r\n".join(head) + b"\r\n\r\n" + data


# Lua side of the callback, kept by server key (the firmware keeps a registry ref). The
# conversions are the firmware's luaL_optinteger / luaL_optlstring / lua_tolstring on the
# results, done here so Python only receives plain values.
_CALLBACKS = b"""
local cbs = {}
local function set(key, cb) cbs[key] = cb end
local function invoke(key, fd, method, uri, body)
  local cb = cbs[key]
  if cb == nil then return nil end
  local code, headers, rbody = cb(fd, method, uri, {}, body)
  if code == nil then
    code = 404
  else
    local n = tonumber(code)
    if n == nil then
      error("bad argument #-3 to 'httpsrv callback' (number expected, got " .. type(code) .. ")")
    end
    code = math.tointeger(n)
    if code == nil then
      error("bad argument #-3 to 'httpsrv callback' (number has no integer representation)")
    end
  end
  if rbody == nil then
    rbody = ""
  elseif type(rbody) == "number" then
    rbody = tostring(rbody)
  elseif type(rbody) ~= "string" then
    error("bad argument #-1 to 'httpsrv callback' (string expected, got " .. type(rbody) .. ")")
  end
  local lines = {}
  if type(headers) == "table" then
    for k, v in pairs(headers) do
      local tk, tv = type(k), type(v)
      if (tk == "string" or tk == "number") and (tv == "string" or tv == "number") then
        lines[#lines + 1] = tostring(k) .. ": " .. tostring(v) .. "\\r\\n"
      end
    end
  end
  return code, table.concat(lines), rbody
end
return set, invoke
"""


class HttpServer:
    """One started httpsrv: the loopback listener and the connections it is serving."""

    def __init__(self, boot: Boot, bn: BootNet, port: int, adapter: int, key: int) -> None:
        self.boot = boot
        self.bn = bn
        self.net = bn.net
        self.port = port
        self.adapter = adapter
        self.key = key
        self.listener: pysocket.socket | None = None
        self.lock = threading.Lock()
        self.reading = 0  # connections accepted whose request has not been handed over yet
        self.clients: set[pysocket.socket] = set()

    @property
    def running(self) -> bool:
        return self.listener is not None and not self.bn.closed

    def start(self) -> bool:
        srv = loopback_listener()
        if srv is None:
            return False
        self.listener = srv
        self.net.listeners[self.port] = int(srv.getsockname()[1])
        self.boot.watch(1)  # a client may arrive any time: look before virtual time moves
        self.boot.trace("httpsrv_start", port=self.port, host_port=self.net.listeners[self.port])
        threading.Thread(target=self._accept_loop, args=(srv,), daemon=True,
                         name=f"luatos-sim-httpsrv-{self.port}").start()
        return True

    def stop(self) -> None:
        srv, self.listener = self.listener, None
        if srv is None:
            return
        self.boot.watch(-1)
        if self.net.listeners.get(self.port) == srv.getsockname()[1]:
            del self.net.listeners[self.port]
        # shutdown first: the acceptor thread sits in select() on it, and a plain close would
        # leave the port listening until that returns.
        try:
            srv.shutdown(pysocket.SHUT_RDWR)
        except OSError:
            pass
        _quiet_close(srv)
        with self.lock:
            clients = list(self.clients)
            self.clients.clear()
        for c in clients:
            _quiet_close(c)
        self.boot.trace("httpsrv_stop", port=self.port)

    def pending(self) -> bool:
        """A client is in the backlog or its request is still being read."""
        with self.lock:
            if self.reading:
                return True
            srv = self.listener
        if srv is None:
            return False
        try:
            return bool(select.select([srv], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    # -- worker threads ----------------------------------------------------------------------

    def _accept_loop(self, srv: pysocket.socket) -> None:
        accept_clients(srv, self.lock, self._client_accepted)

    def _client_accepted(self, client: pysocket.socket) -> None:
        """(accept thread, under ``lock``) count it as being read, then read it."""
        self.reading += 1
        self.clients.add(client)
        threading.Thread(target=self._read_request, args=(client,), daemon=True,
                         name=f"luatos-sim-httpsrv-{self.port}-client").start()

    def _read_request(self, client: pysocket.socket) -> None:
        limits = self.net.httpsrv_limits
        deadline = time.monotonic() + self.net.httpsrv_read_timeout_ms / 1000.0
        buf = b""
        outcome: tuple[str, Any]
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                outcome = ("timeout", None)
                break
            try:
                client.settimeout(left)
                data = client.recv(65536)
            except TimeoutError:
                outcome = ("timeout", None)
                break
            except OSError:
                data = b""
            if not data:
                outcome = ("gone", None)
                break
            buf += data
            try:
                req = parse(buf, limits)
            except BadRequest as e:
                outcome = ("bad", str(e))
                break
            except TooLarge as e:
                outcome = ("large", str(e))
                break
            if req is not None:
                outcome = ("request", req)
                break
        try:
            client.settimeout(None)
        except OSError:
            pass
        with self.lock:
            self.reading -= 1
            self.boot.post_from_thread(self._arrived, client, outcome[0], outcome[1])

    # -- the event loop (VM thread) ----------------------------------------------------------

    def _arrived(self, client: pysocket.socket, kind: str, detail: Any) -> None:
        if not self.running:
            self._drop(client)
            return
        if kind == "request":
            self.boot.post(self.net.latency_ms, self._serve, client, detail)
            return
        if kind == "bad":
            self.boot.log_c("I", "httpsrv", "bad request, close socket")
            self.boot.trace("httpsrv_bad_request", port=self.port, reason=detail)
        elif kind == "large":
            self.boot.log_c("W", "httpsrv", "out of memory when realloc client buff")
            self.boot.note(f"httpsrv port {self.port}: {detail}; the connection is dropped "
                           "(dev.net.httpsrv_limits)")
        elif kind == "timeout":
            self.boot.note(f"httpsrv port {self.port}: no whole request within "
                           f"{self.net.httpsrv_read_timeout_ms} ms of wall time; the connection "
                           "is dropped (dev.net.httpsrv_read_timeout_ms)")
        self._drop(client)

    def _serve(self, client: pysocket.socket, req: Request) -> None:
        if not self.running:
            self._drop(client)
            return
        self.boot.trace("httpsrv_request", port=self.port, method=req.method,
                        uri=req.uri.decode("latin-1"), body=len(req.body))
        static = self._static_file(req.uri)
        if static is not None:
            self._answer(client, static)
            return
        fd = _CLIENT_FD_BASE + (id(client) & 0xFFFFF) * 8
        code, headers, body = self.invoke(self.key, fd, req.method.encode(), req.uri, req.body)
        if code is None:  # the server was stopped in the meantime: the firmware frees the client
            self._drop(client)
            return
        self._answer(client, self._callback_answer(int(code), headers or b"", body or b""))

    def _callback_answer(self, code: int, headers: bytes, body: bytes) -> bytes:
        if code < 100:
            code = 200
        reason = REASONS.get(code)
        if reason is None:
            self.boot.log_c("W", "httpsrv", f"unkown http code {code}, set as 200 Ok")
            code, reason = 200, "Ok"
        head = (f"HTTP/1.0 {code} {reason}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n").encode()
        return head + headers + b"\r\n" + body

    def _static_file(self, uri: bytes) -> bytes | None:
        """The firmware's rule: ``/`` is /luadb/index.html; /x is /luadb/x, else /luadb/x.gz
        (sent with Content-Encoding: gzip). Short URIs without ``..`` only."""
        if not 1 <= len(uri) <= STATIC_URI_MAX or b".." in uri:
            return None
        name = b"/index.html" if len(uri) == 1 else uri
        fs = self.boot.platform.fs
        for gz in (False, True):
            path = b"/luadb" + name + (b".gz" if gz else b"")
            host, _ = fs.host_path(path)
            if host is None or not os.path.isfile(host):
                continue
            try:
                with open(host, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if data:
                self.boot.trace("httpsrv_static", port=self.port, path=path.decode("latin-1"))
                return static_answer(path, data, gz)
        return None

    def _answer(self, client: pysocket.socket, payload: bytes) -> None:
        """Write and close on a worker thread: a client that does not read never blocks the
        event loop."""
        def write() -> None:
            try:
                client.sendall(payload)
                client.shutdown(pysocket.SHUT_WR)
            except OSError:
                pass
            self._drop(client)
        threading.Thread(target=write, daemon=True, name="luatos-sim-httpsrv-answer").start()

    def _drop(self, client: pysocket.socket) -> None:
        with self.lock:
            self.clients.discard(client)
        _quiet_close(client)

    invoke: Any = None


def _quiet_close(sock: pysocket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def install(boot: Boot) -> None:
    net = boot.platform.net
    bn = net.boot_net(boot)
    set_cb, invoke = boot.execute(_CALLBACKS)
    servers: dict[tuple[int, int], HttpServer] = {}
    keys = iter(range(1, 1 << 30))
    debug = [False]

    def close_all() -> None:
        for s in list(servers.values()):
            s.stop()
        servers.clear()
    boot.closers.append(close_all)

    def sync_hook() -> None:
        # Before virtual time moves: let a request already on its way reach the event loop.
        if not servers:
            return
        limit = time.monotonic() + max(0.05, net.reply_window_ms / 1000.0) + 0.05
        while time.monotonic() < limit:
            if not any(s.pending() for s in servers.values()):
                return
            if boot.wait_io_arrival(0.001):
                return
    boot.io_sync_hooks.append(sync_hook)

    def adapter_of(value: Any) -> int:
        if value is None:
            return bn.default
        require_ints(value)
        return int(value)

    def start(port: int, func: Any = None, adapter: Any = None, *_: Any) -> Any:
        require_ints(port)
        if boot.lua_type(func) != b"function":
            boot.log_c("W", "httpsrv", "httpsrv need callback function!!!")
            return ()
        a = adapter_of(adapter)
        if not 0 <= a < ADAPTER_MAX or not bn.is_ready(a):
            boot.log_c("W", "httpsrv", f"该网络还没准备好 {a}")
            return ()
        if (port, a) in servers:
            boot.log_c("W", "httpsrv", f"httpsrv port {port} already in use")
            return ()
        if len(servers) >= SERVER_SLOTS:
            boot.log_c("W", "httpsrv", f"httpsrv no free slot, max {SERVER_SLOTS}")
            return ()
        srv = HttpServer(boot, bn, port, a, next(keys))
        srv.invoke = invoke
        set_cb(srv.key, func)
        if not srv.start():
            set_cb(srv.key, None)
            return False
        servers[(port, a)] = srv
        boot.log_c("I", "httpsrv", f"http listen at {bn.ready[a][0]}:{port}")
        return True

    def stop(port: int, _unused: Any = None, adapter: Any = None, *_: Any) -> Any:
        require_ints(port)
        srv = servers.pop((port, adapter_of(adapter)), None)
        if srv is None:
            return ()
        set_cb(srv.key, None)
        srv.stop()
        return True

    def set_debug(on: Any = None, *_: Any) -> bool:
        if on is not None:
            debug[0] = bool(on)
        return debug[0]

    boot.firmware_module("httpsrv", {"start": start, "stop": stop, "debug": set_debug})
