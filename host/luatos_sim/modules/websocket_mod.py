"""websocket: the firmware's WebSocket client over a socket-module connection (ws:// and wss://).

The protocol (handshake, masking, frames, ping) is the ``websockets`` package's sans-I/O
client: bytes in from the socket's reader, bytes out through ``SockCtrl.send``, so the address
map, latency, link loss and TLS certificate rules apply as to ``socket``. Events as the API
documentation lists them: ``conack``, ``recv`` (data, fin, opcode; UNCONFIRMED order),
``sent``, ``disconnect``; ``autoreconn`` retries in virtual time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidURI, ProtocolError
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from ..cfunc import BadArgument, lua_type_name
from ..platform.network import ADAPTER_MAX
from ..tlsconf import TlsSettings
from .lua_callbacks import callback_slots
from .socket_mod import EVENT, LINK, ON_LINE, TX_OK, SockCtrl

if TYPE_CHECKING:
    from ..platform.network import BootNet
    from ..vm import Boot

_keys = iter(range(1, 1 << 30))


class WsClient:
    """One websocket.create() instance."""

    def __init__(self, boot: Boot, bn: BootNet, adapter: int, url: str, keepalive_s: int,
                 invoke: Any) -> None:
        parts = urlsplit(url)
        self.boot, self.url = boot, url
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "wss" else 80)
        self.keepalive_s = keepalive_s
        self.key = next(_keys)
        self.invoke = invoke
        self.sock = SockCtrl.open(boot, bn, adapter, self._on_net,
                                  tls=TlsSettings() if parts.scheme == "wss" else None)
        self.extra_headers: list[tuple[str, str]] = []
        self.proto: ClientProtocol | None = None
        self.ready = False
        self.reconnect = False
        self.reconnect_ms = 3000
        self.released = False
        self.gen = 0  # bumps cancel the ping and reconnect timers
        self.active = False  # between connect() and the close that ends it
        self.continuing = False  # a message sent with fin=0 is still open

    def fire(self, event: bytes, *args: Any) -> None:
        def run() -> None:
            if not self.released:
                self.invoke(self.key, self, event, *args)
        self.boot.post(0, run)

    def connect(self) -> None:
        self.active = True
        self.continuing = False
        self.proto = ClientProtocol(parse_uri(self.url))
        if self.sock.wait_link_up():  # else the connect goes on at LINK
            self.sock.start_connect(self.host, self.port)

    def _flush(self, expect_reply: bool = True) -> bool:
        if self.proto is None:
            return False
        data = b"".join(self.proto.data_to_send())
        return self.sock.send(data, expect_reply) if data else True

    def _on_net(self, _sc: SockCtrl, event: int, param: int) -> None:
        if self.released or self.proto is None:
            return
        if param:
            self.close_link()
            return
        if event == LINK:
            self.sock.start_connect(self.host, self.port)
        elif event == ON_LINE:
            req = self.proto.connect()
            for k, v in self.extra_headers:
                req.headers[k] = v
            self.proto.send_request(req)
            if not self._flush():
                self.close_link()
        elif event == TX_OK:
            if self.ready:
                self.fire(b"sent")
        elif event == EVENT:
            data = bytes(self.sock.rbuf)
            self.sock.rbuf.clear()
            self.proto.receive_data(data)
            for ev in self.proto.events_received():
                self._handle(ev)
            self._flush(expect_reply=False)  # pongs and close answers
            if self.proto.close_expected() or self.proto.handshake_exc is not None:
                self.close_link()

    def _handle(self, ev: Any) -> None:
        if isinstance(ev, Response):
            if ev.status_code == 101 and self.proto is not None and \
                    self.proto.handshake_exc is None:
                self.ready = True
                self.fire(b"conack")
                self._start_ping()
            return
        if isinstance(ev, Frame) and ev.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            self.fire(b"recv", bytes(ev.data), 1 if ev.fin else 0, int(ev.opcode))

    def _start_ping(self) -> None:
        self.gen += 1
        gen = self.gen

        def tick() -> None:
            if gen != self.gen or not self.ready or self.proto is None:
                return
            try:
                self.proto.send_ping(b"")
            except ProtocolError:
                return
            self._flush()
            self.boot.post(self.keepalive_s * 1000, tick)
        self.boot.post(self.keepalive_s * 1000, tick)

    def close_link(self) -> None:
        if not self.active:
            return
        self.active = False
        self.ready = False
        self.gen += 1
        self.sock.close_now()
        self.fire(b"disconnect")
        if self.reconnect and not self.released:
            gen = self.gen

            def again() -> None:
                if gen == self.gen and not self.released:
                    self.connect()
            self.boot.post(self.reconnect_ms, again)

    def send(self, data: bytes, fin: bool, binary: bool) -> bool:
        if not self.ready or self.proto is None:
            return False
        try:
            if self.proto.state.name != "OPEN":
                return False
            if self.continuing:
                self.proto.send_continuation(data, fin)
            elif binary:
                self.proto.send_binary(data, fin)
            else:
                self.proto.send_text(data, fin)
        except ProtocolError:
            return False
        self.continuing = not fin
        return self._flush()

    def release(self) -> None:
        if self.proto is not None and self.ready:
            try:
                self.proto.send_close()
                self._flush(expect_reply=False)
            except ProtocolError:
                pass
        self.released = True
        self.ready = False
        self.reconnect = False
        self.gen += 1
        self.sock.release()


def install(boot: Boot) -> None:
    net = boot.platform.net
    bn = net.boot_net(boot)
    set_cb, invoke = callback_slots(boot)

    def create(adapter: Any = None, url: Any = None, keepalive: Any = None, *_: Any) -> Any:
        a = bn.default if adapter is None else adapter
        if not isinstance(a, int) or not 0 <= a < ADAPTER_MAX:
            return None
        if not isinstance(url, bytes):
            raise BadArgument(f"bad argument #2 to 'create' (string expected, got "
                              f"{lua_type_name(url)})")
        text = url.decode(errors="replace")
        try:
            parse_uri(text)
        except InvalidURI:
            boot.log_c("E", "websocket", f"bad url {text}")
            return None
        ka = int(keepalive) if isinstance(keepalive, int) and keepalive > 0 else 60
        return WsClient(boot, bn, a, text, ka, invoke)

    def m_on(c: WsClient, cb: Any = None, *_: Any) -> None:
        set_cb(c.key, cb)

    def m_connect(c: WsClient, *_: Any) -> bool:
        if c.released:
            return False
        c.connect()
        return True

    def m_autoreconn(c: WsClient, on: Any = None, ms: Any = None, *_: Any) -> None:
        if isinstance(on, bool):
            c.reconnect = on
        if isinstance(ms, int) and not isinstance(ms, bool):
            c.reconnect_ms = max(1000, ms)

    def m_send(c: WsClient, data: Any = None, fin: Any = 1, opt: Any = 0, *_: Any) -> bool:
        if not isinstance(data, bytes):
            raise BadArgument(f"bad argument #1 to 'send' (string expected, got "
                              f"{lua_type_name(data)})")
        return c.send(data, fin != 0, opt == 1)

    def m_close(c: WsClient, *_: Any) -> None:
        set_cb(c.key, None)
        c.release()

    def m_headers(c: WsClient, h: Any = None, *_: Any) -> bool:
        if isinstance(h, bytes):
            for line in h.decode(errors="replace").split("\r\n"):
                if ":" in line:
                    k, v = line.split(":", 1)
                    c.extra_headers.append((k.strip(), v.strip()))
        elif boot.lua_type(h) == b"table":
            for k, v in h.items():
                if isinstance(k, bytes) and isinstance(v, bytes):
                    c.extra_headers.append((k.decode(errors="replace"), v.decode(errors="replace")))
        return c.ready

    methods: dict[str, Callable[..., Any]] = {
        "on": m_on, "connect": m_connect, "autoreconn": m_autoreconn, "send": m_send,
        "close": m_close, "ready": lambda c, *_: c.ready, "headers": m_headers,
        "debug": lambda c, *_: None,
    }
    boot.objects.define(WsClient, "WEBSOCKETCTRL*", methods=methods)
    boot.firmware_module("websocket", {"create": create})
