"""socket: the firmware's network sockets, over real TCP/UDP sockets on this machine.

Connects run in a worker thread (counted as I/O in flight, so virtual time waits for them);
an open connection has a reader thread that blocks on the host socket and hands every received
chunk to the event loop through ``boot.post_from_thread``. An open socket is *watched*
(``boot.watch``): before virtual time moves, the loop asks us to make sure data already in the
kernel buffer has been handed over, so data a test server has already *sent* (its peer socket
with TCP_NODELAY, as PushHub does) is seen before time moves, while an idle connection never
slows virtual time down. After a device tx the server
gets ``dev.net.reply_window_ms`` of wall time (default 100) to answer before time may jump.
Data still in the *sender's* socket is invisible: host sockets ACK at once (TCP_QUICKACK) so a
peer's Nagle never holds a write back for long, but a peer should still use TCP_NODELAY.

Events go out in the three ways the contract gives (behaviour.md §5.3): ``cb(ctrl, event, param)``,
``sys_send(task, event, param)``, or ``sys_pub("NWCTRL", adapter, id, event, param)``.
"""

from __future__ import annotations

import select
import socket as pysocket
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..lua_text import lua_str, py_str
from ..platform.network import (
    ADAPTER_MAX,
    ETH0,
    LWIP_AP,
    LWIP_ETH,
    LWIP_GP,
    LWIP_GP_GW,
    LWIP_SPI,
    LWIP_STA,
    LWIP_USER0,
    BootNet,
    NetError,
    connect_host,
)
from ..tlsconf import TlsSettings, TlsSetupError, pem_arg
from .zbuff import ZBuff

if TYPE_CHECKING:
    from ..vm import Boot

# Event constants (behaviour.md §5.1): the enum values from base 0xF200000F, masked with
# 0x0FFFFFFF.
LINK, ON_LINE, TX_OK, CLOSED, EVENT = 33554448, 33554449, 33554450, 33554451, 33554452

STATE_TEXT = {
    0: "硬件离线", 1: "离线", 2: "等待DNS", 3: "正在连接", 4: "正在TLS握手", 5: "在线",
    6: "在监听", 7: "正在离线", 8: "未知",
}
S_HW_OFFLINE, S_OFFLINE, S_DNS, S_CONNECTING, S_TLS, S_ONLINE, S_LISTEN, S_CLOSING = range(8)

CONSTANTS: dict[str, Any] = {
    "LWIP_GP": LWIP_GP, "LWIP_STA": LWIP_STA, "LWIP_AP": LWIP_AP, "LWIP_ETH": LWIP_ETH,
    "LWIP_SPI": LWIP_SPI, "LWIP_GP_GW": LWIP_GP_GW, "ETH0": ETH0,
    **{f"LWIP_USER{i}": LWIP_USER0 + i for i in range(8)},
    "LINK": LINK, "ON_LINE": ON_LINE, "TX_OK": TX_OK, "CLOSED": CLOSED, "EVENT": EVENT,
}

_ids = iter(range(1, 1 << 30))
NWCTRL_TYPE = "NWCTRL*"  # the ctrl's metatable name in the firmware
SEGMENT = 1460  # bytes per delivery when a bandwidth limit stretches a transfer


def _tls_handshake(ctx: ssl.SSLContext, sock: pysocket.socket, host: str, timeout_s: float) -> ssl.SSLSocket:
    """The TLS handshake, bounded by the connect timeout as the device's stack bounds it: a peer
    that accepts TCP but never answers the ClientHello is a connect timeout, not a thread that
    holds the virtual clock forever."""
    sock.settimeout(max(0.05, timeout_s))
    try:
        tls = ctx.wrap_socket(sock, server_hostname=host)
    except TimeoutError:
        sock.close()
        raise NetError("timeout", f"TLS handshake with {host} timed out") from None
    except OSError:
        sock.close()  # a refused certificate, an alert, a reset: no descriptor left behind
        raise
    # Non-blocking from here on: the reader thread and the script's writes share one OpenSSL
    # object, which must never sit inside SSL_read while another thread calls SSL_write. A
    # blocking read could do exactly that (a TLS 1.3 session ticket makes the socket readable
    # with no data behind it) and then held the reader's lock until the peer hung up.
    tls.setblocking(False)
    return tls


def _tls_write(sock: ssl.SSLSocket, lock: Any, payload: bytes, wall_limit_s: float) -> None:
    """Write all of ``payload`` to a non-blocking TLS socket, one OpenSSL call at a time under
    the reader's ``lock``; waits for room outside it. Bounded: a peer that takes nothing for
    ``wall_limit_s`` is a failed write."""
    view = memoryview(payload)
    deadline = time.monotonic() + wall_limit_s
    while view:
        wants_read = False
        with lock:
            try:
                view = view[sock.send(view):]
            except ssl.SSLWantReadError:
                wants_read = True
            except (ssl.SSLWantWriteError, BlockingIOError):
                pass
        if view:
            if time.monotonic() > deadline:
                raise OSError(f"TLS write stalled: {len(view)} bytes not taken in {wall_limit_s:g} s")
            if wants_read:
                select.select([sock], [], [], 0.05)
            else:
                select.select([], [sock], [], 0.05)


class SockCtrl:
    """One socket.create() handle (a userdata on the Lua side)."""

    def __init__(self, boot: Boot, bn: BootNet, adapter: int, cb: Any, task: bytes | None) -> None:
        self.boot = boot
        self.bn = bn
        self.net = bn.net
        self.adapter = adapter
        self.cb = cb
        self.task = task
        self.id = next(_ids)
        self.udp = False
        self.tls = False
        self.tls_settings = TlsSettings()
        self.lport = 0
        self.state = S_OFFLINE if bn.is_ready(adapter) else S_HW_OFFLINE
        self.sock: pysocket.socket | None = None
        self.rbuf = bytearray()
        self.dgrams: list[tuple[bytes, str, int]] = []
        self.rlock = threading.Lock()
        self.reader_sock: pysocket.socket | None = None  # the socket a reader thread serves
        self.listener: pysocket.socket | None = None  # socket.listen: the host server socket
        self.pending: list[pysocket.socket] = []  # accepted clients not yet taken over
        self.listen_gen = 0  # bumped when a listener closes: its late clients are dropped
        self.released = False
        self.gen = 0
        self.watching = False
        self.want_link = False
        self.want_close = False
        self.remote: tuple[str, int] = ("", 0)
        self.next_rx_at = 0
        # TX_OK bookkeeping: the firmware reports TX_OK once every byte written so far is
        # acknowledged (ack_size == tx_size), so back-to-back writes share one event.
        self.tx_seq = 0
        self.tx_acked_at = 0
        self.debug = False
        # Wall-clock time until which an answer to the last tx is expected (see sync_hook).
        self.reply_deadline = 0.0

    @classmethod
    def open(cls, boot: Boot, bn: BootNet, adapter: int, cb: Any, task: bytes | None = None, *,
             udp: bool = False, tls: TlsSettings | None = None) -> SockCtrl:
        """A new ctrl the boot's network tracks (network_alloc_ctrl): adapter events reach it
        and a reboot closes it. The firmware libraries that open their own connection (mqtt,
        websocket, errDump) get theirs here too, with a Python ``cb``; ``tls`` settings make
        it a TLS connection."""
        sc = cls(boot, bn, adapter, cb, task)
        sc.udp = udp
        if tls is not None:
            sc.tls = True
            sc.tls_settings = tls
        bn.add_socket(sc)
        return sc

    def release(self) -> None:
        """network_release_ctrl: closed at once, no event ever again, forgotten by the boot's
        network. Releasing twice is harmless."""
        if self.released:
            return
        self.close_now()
        self.released = True
        self.bn.drop_socket(self)

    def wait_link_up(self) -> bool:
        """network_wait_link_up: True when the adapter is ready now; otherwise False, and a
        LINK event follows once it is."""
        if self.bn.is_ready(self.adapter):
            return True
        self.want_link = True
        return False

    def take_datagram(self) -> tuple[bytes, str, int] | None:
        """The oldest received datagram and its sender (ip, port); None when none is waiting."""
        return self.dgrams.pop(0) if self.dgrams else None

    # -- events --------------------------------------------------------------------------------

    def emit(self, event: int, param: int) -> None:
        if self.released or self.bn.closed:
            return
        if self.cb is not None:
            self.cb(self, event, param)
        elif self.task is not None:
            self.boot.sys_send(self.task, event, param)
        else:
            self.boot.sys_pub(b"NWCTRL", self.adapter, self.id, event, param)

    def emit_later(self, delay: int, event: int, param: int, gen: int | None = None) -> None:
        def fire() -> None:
            if gen is None or gen == self.gen:
                self.emit(event, param)
        self.boot.post(max(0, delay), fire)

    def ack_later(self, delay: int) -> None:
        """Schedule TX_OK for a write acknowledged ``delay`` ms from now. A later write
        supersedes a TX_OK still pending: one event when all data written so far is acked."""
        self.tx_seq += 1
        seq, gen = self.tx_seq, self.gen
        self.tx_acked_at = max(self.tx_acked_at, self.boot.now + max(0, delay))

        def fire() -> None:
            if seq == self.tx_seq and gen == self.gen:
                self.emit(TX_OK, 0)
        self.boot.post(self.tx_acked_at - self.boot.now, fire)

    def on_adapter_ready(self, adapter: int) -> None:
        if adapter == self.adapter:
            if self.state == S_HW_OFFLINE:
                self.state = S_OFFLINE
            if self.want_link:
                self.want_link = False
                self.emit_later(0, LINK, 0)

    # -- connection ------------------------------------------------------------------------------

    def start_connect(self, host: str, port: int) -> None:
        self.close_socket()
        self.gen += 1
        gen = self.gen
        self.state = S_DNS if not _is_ip(host) else S_CONNECTING
        self.remote = (host, port)
        boot, net = self.boot, self.net
        timeout_s = net.timings.connect_timeout_ms / 1000
        cut = net.take_cut(host) if not self.udp else None
        if self.udp and (host == "255.255.255.255" or port == 0):
            # The UDP "server" idiom (udpsrv, dnsproxy, dhcpsrv): config a local port, then
            # connect to 255.255.255.255:0. The device just binds and goes online; here the
            # socket is bound on loopback (any free port) and waits for datagrams.
            sock = pysocket.socket(pysocket.AF_INET, pysocket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            boot.begin_io()
            self._connected(gen, sock, None)
            return
        boot.begin_io()

        def work() -> None:
            started = time.monotonic()  # the connect timeout bounds TCP and TLS together
            try:
                sock = connect_host(net, host, port, timeout_s, udp=self.udp)
                if not self.udp:
                    _tune(sock)
                if self.tls:
                    try:
                        ctx = self.tls_settings.context()
                    except TlsSetupError as e:
                        sock.close()
                        raise OSError(str(e)) from None
                    sock = _tls_handshake(ctx, sock, host, timeout_s - (time.monotonic() - started))
                boot.post_from_thread(self._connected, gen, sock, cut)
            except NetError as e:
                boot.post_from_thread(self._connect_failed, gen, e.kind, str(e))
            except OSError as e:
                boot.post_from_thread(self._connect_failed, gen, "refused", str(e))

        threading.Thread(target=work, name=f"luatos-sim-connect-{self.id}", daemon=True).start()

    def _connect_failed(self, gen: int, kind: str, text: str) -> None:
        self.boot.end_io()
        if gen != self.gen:
            return
        self.state = S_OFFLINE
        delay = self.net.timings.connect_timeout_ms if kind == "timeout" else self.net.latency_ms
        if self.debug:
            self.boot.log_c("E", "net", f"connect fail: {text}")
        self.boot.trace("socket_connect_failed", id=self.id, why=kind, text=text)
        self.emit_later(delay, ON_LINE, -1, gen)

    def _connected(self, gen: int, sock: pysocket.socket, cut: int | None) -> None:
        self.boot.end_io()
        if gen != self.gen or self.released or self.bn.closed:
            _quiet_close(sock)
            return
        self.sock = sock
        self.state = S_ONLINE
        self.boot.trace("socket_online", id=self.id, host=self.remote[0],
                                     port=self.remote[1])
        self._start_reader(sock, gen, cut)
        self.emit_later(2 * self.net.latency_ms if not self.udp else 0, ON_LINE, 0, gen)

    def _start_reader(self, sock: pysocket.socket, gen: int, cut: int | None) -> None:
        self.reader_sock = sock
        if not self.watching:
            self.watching = True
            self.boot.watch(1)
        boot = self.boot
        budget = [cut]

        def stop() -> None:
            if self.reader_sock is sock:
                self.reader_sock = None

        def reader() -> None:
            while True:
                try:
                    if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                        select.select([sock], [], [], None)
                except (OSError, ValueError):
                    with self.rlock:
                        stop()
                    return
                with self.rlock:
                    if self.sock is not sock:
                        stop()
                        return
                    try:
                        if self.udp:
                            data, addr = sock.recvfrom(65536)
                            self.reply_deadline = 0.0
                            boot.post_from_thread(self._on_dgram, gen, data, addr[0], addr[1])
                            continue
                        data = sock.recv(65536)
                        _quickack(sock)
                    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        continue
                    except OSError:
                        data = b""
                    self.reply_deadline = 0.0
                    left = budget[0]
                    if data and left is not None:
                        data = data[:left]
                        left -= len(data)
                        budget[0] = left
                        if data:
                            boot.post_from_thread(self._on_data, gen, data)
                        if left <= 0:
                            _quiet_close(sock, shutdown=True)
                            data = b""
                    elif data:
                        boot.post_from_thread(self._on_data, gen, data)
                    if not data:
                        stop()
                        boot.post_from_thread(self._on_remote_close, gen)
                        return

        threading.Thread(target=reader, name=f"luatos-sim-reader-{self.id}", daemon=True).start()

    def pending_in_kernel(self) -> bool:
        """True when the host socket holds data the reader thread has not handed over yet
        (or, listening, a connection the acceptor has not handed over)."""
        with self.rlock:
            srv = self.listener
            if srv is not None:
                try:
                    if select.select([srv], [], [], 0)[0]:
                        return True
                except (OSError, ValueError):
                    pass
            sock = self.reader_sock
            if sock is None:
                return False
            try:
                r, _, _ = select.select([sock], [], [], 0)
            except (OSError, ValueError):
                return False
            return bool(r)

    def _arrival_delay(self, n: int) -> int:
        now = self.boot.now
        at = max(now + self.net.latency_ms, self.next_rx_at) + self.net.delay_for(n)
        self.next_rx_at = at
        return at - now

    def _on_data(self, gen: int, data: bytes) -> None:
        if gen != self.gen:
            return
        if self.net.bandwidth_bps and len(data) > SEGMENT:
            for i in range(0, len(data), SEGMENT):
                self._on_data(gen, data[i:i + SEGMENT])
            return
        delay = self._arrival_delay(len(data))

        def deliver() -> None:
            if gen != self.gen:
                return
            self.rbuf += data
            self.emit(EVENT, 0)
        if delay:
            self.boot.post(delay, deliver)
        else:
            deliver()

    def _on_dgram(self, gen: int, data: bytes, ip: str, port: int) -> None:
        if gen != self.gen:
            return

        def deliver() -> None:
            if gen == self.gen:
                self.dgrams.append((data, ip, port))
                self.emit(EVENT, 0)
        self.boot.post(self._arrival_delay(len(data)), deliver)

    def _on_remote_close(self, gen: int) -> None:
        if gen != self.gen:
            return
        delay = max(0, self.next_rx_at - self.boot.now)

        def closed() -> None:
            if gen != self.gen:
                return
            self.boot.trace("socket_remote_close", id=self.id)
            self.close_socket()
            self.state = S_OFFLINE
            if self.want_close:
                self.want_close = False
                self.emit(CLOSED, 0)
            else:
                self.emit(EVENT, -1)
        self.boot.post(delay, closed)

    def fail_link(self) -> None:
        """The adapter lost its address under this socket."""
        was = self.state
        self.close_socket()
        self.gen += 1
        self.state = S_HW_OFFLINE
        if was in (S_DNS, S_CONNECTING, S_TLS):
            self.emit_later(0, ON_LINE, -1)
        elif was == S_ONLINE:
            self.emit_later(0, EVENT, -1)

    def close_socket(self) -> None:
        sock = self.sock
        self.sock = None
        if self.watching:
            self.watching = False
            self.boot.watch(-1)
        if sock is not None:
            _quiet_close(sock, shutdown=True)

    # -- server side (socket.listen / socket.accept) ---------------------------------------------

    def start_listen(self) -> bool:
        """Bind a loopback server for the device's local port; clients arrive as ON_LINE."""
        srv = loopback_listener()
        if srv is None:
            return False
        self.close_socket()
        self.gen += 1
        self.listen_gen += 1
        gen = self.listen_gen
        self.listener = srv
        self.state = S_LISTEN
        self.boot.watch(1)  # a client may arrive any time: look before virtual time moves
        self.net.listeners[self.lport] = int(srv.getsockname()[1])
        self.boot.trace("socket_listen", id=self.id, port=self.lport,
                                     host_port=self.net.listeners[self.lport])
        boot = self.boot

        def arrived(client: pysocket.socket) -> None:
            boot.post_from_thread(self._client_arrived, gen, client)

        threading.Thread(target=accept_clients, args=(srv, self.rlock, arrived),
                         name=f"luatos-sim-listen-{self.id}", daemon=True).start()
        return True

    def _client_arrived(self, lgen: int, client: pysocket.socket) -> None:
        if lgen != self.listen_gen or self.listener is None or self.released or self.bn.closed:
            _quiet_close(client)
            return
        if self.sock is None:
            # One client at a time on the listening ctrl itself (the single-client server
            # idiom: libnet.listen, then rx/tx on the same ctrl); accept(ctrl, cb) hands it on.
            self.gen += 1
            self.sock = client
            self.state = S_ONLINE
            self._start_reader(client, self.gen, None)
        else:
            self.pending.append(client)
        self.emit_later(self.net.latency_ms, ON_LINE, 0)

    def take_client(self) -> pysocket.socket | None:
        """accept(): the newest connection leaves this ctrl, which goes back to listening."""
        if self.pending:
            return self.pending.pop(0)
        sock = self.sock
        if sock is None or self.listener is None:
            return None
        self.sock = None
        self.reader_sock = None
        if self.watching:
            self.watching = False
            self.boot.watch(-1)
        self.gen += 1
        self.state = S_LISTEN
        self.rbuf.clear()
        return sock

    def adopt(self, sock: pysocket.socket) -> None:
        """Become the ctrl of an accepted connection."""
        self.gen += 1
        self.sock = sock
        self.state = S_ONLINE
        self._start_reader(sock, self.gen, None)

    def stop_listen(self) -> None:
        srv, self.listener = self.listener, None
        if srv is not None:
            self.listen_gen += 1
            self.boot.watch(-1)
            if self.net.listeners.get(self.lport) == srv.getsockname()[1]:
                del self.net.listeners[self.lport]
            _quiet_close(srv)
        for c in self.pending:
            _quiet_close(c)
        self.pending.clear()

    def send(self, payload: bytes, expect_reply: bool = True) -> bool:
        """One TCP write, as network_tx: False when the socket is not online or the write
        fails; TX_OK follows in virtual time. ``expect_reply``: the peer gets
        ``net.reply_window_ms`` of wall time to answer before virtual time may move on."""
        if self.state != S_ONLINE or self.sock is None:
            return False
        try:
            if isinstance(self.sock, ssl.SSLSocket):
                _tls_write(self.sock, self.rlock, payload, self.net.timings.connect_timeout_ms / 1000)
            else:
                self.sock.sendall(payload)
        except OSError:
            return False
        if expect_reply:
            self.reply_deadline = time.monotonic() + self.net.reply_window_ms / 1000.0
        self.boot.trace("socket_tx", id=self.id, bytes=len(payload))
        self.ack_later(2 * self.net.latency_ms + self.net.delay_for(len(payload)))
        return True

    def close_now(self) -> None:
        self.gen += 1
        self.stop_listen()
        self.close_socket()
        if self.state != S_HW_OFFLINE:
            self.state = S_OFFLINE


def _is_ip(host: str) -> bool:
    from ..platform.network import is_ip_literal
    return is_ip_literal(host)


def loopback_listener() -> pysocket.socket | None:
    """The real listener behind a device-side server (``socket.listen``, ``httpsrv``): any free
    loopback port, non-blocking for :func:`accept_clients`; None when the host refuses one."""
    try:
        srv = pysocket.socket(pysocket.AF_INET, pysocket.SOCK_STREAM)
        srv.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
    except OSError:
        return None
    srv.setblocking(False)
    return srv


def accept_clients(srv: pysocket.socket, lock: Any,
                   handle: Callable[[pysocket.socket], None]) -> None:
    """A device-side server's accept loop (run in its own thread until ``srv`` closes).

    It waits outside ``lock`` and accepts and hands over under it, so whoever asks "is a
    client pending?" under the same lock never sees nothing while a client is between the
    kernel's backlog and ``handle``. Clients come blocking and tuned (:func:`_tune`)."""
    while True:
        try:
            select.select([srv], [], [], None)
        except (OSError, ValueError):
            return
        with lock:
            try:
                client, _ = srv.accept()
            except BlockingIOError:
                continue
            except OSError:
                return
            client.setblocking(True)
            _tune(client)
            handle(client)


def _tune(sock: pysocket.socket) -> None:
    """Send at once (no Nagle) and acknowledge at once (no delayed ACK): a peer that keeps
    Nagle on would otherwise hold its next small write back ~40 ms wall for our ACK, and
    virtual time could jump past it."""
    try:
        sock.setsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_NODELAY, 1)
    except OSError:
        pass
    _quickack(sock)


def _quickack(sock: pysocket.socket) -> None:
    opt = getattr(pysocket, "TCP_QUICKACK", None)  # Linux; re-armed after every read
    if opt is not None:
        try:
            sock.setsockopt(pysocket.IPPROTO_TCP, opt, 1)
        except OSError:
            pass


def _quiet_close(sock: pysocket.socket, shutdown: bool = False) -> None:
    try:
        if shutdown:
            sock.shutdown(pysocket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _is_broadcast(ip: str) -> bool:
    return ip == "255.255.255.255" or (ip.count(".") == 3 and ip.endswith(".255"))


def raw_ip(ip: str) -> bytes:
    """The device's form of a peer address in socket.rx/read: a type byte, then the address."""
    try:
        return b"\x00" + pysocket.inet_pton(pysocket.AF_INET, ip)
    except OSError:
        try:
            return b"\x01" + pysocket.inet_pton(pysocket.AF_INET6, ip.split("%")[0])
        except OSError:
            return b"\x00\x00\x00\x00\x00"


def install(boot: Boot) -> None:
    net = boot.platform.net
    bn = net.boot_net(boot)

    def sync_hook() -> None:
        # Before virtual time moves: hand over data already in the kernel, and give a server
        # a short wall-clock window (net.reply_window_ms) to answer the last tx. Bounded.
        start = time.monotonic()
        limit = start + max(0.05, net.reply_window_ms / 1000.0) + 0.05
        while time.monotonic() < limit:
            now = time.monotonic()
            if not any(sc.pending_in_kernel() or sc.reply_deadline > now
                       for sc in bn.sockets):
                return
            if boot.wait_io_arrival(0.001):
                return  # a reader thread handed data over: the loop picks it up now

    boot.io_sync_hooks.append(sync_hook)
    # The ctrl is a NWCTRL* userdata: no methods, no __tostring ("NWCTRL*: 0x...").
    boot.objects.define(SockCtrl, NWCTRL_TYPE)

    # A Cat.1 model's bearer comes up by itself a few seconds after boot.
    if "mobile" in boot.profile.modules:
        def bearer_up() -> None:
            if net.link_is_up(LWIP_GP) and not bn.is_ready(LWIP_GP):
                bn.register(LWIP_GP)
                bn.set_ready(LWIP_GP)

        def bearer_link(adapter: int, up: bool) -> None:
            # dev.net.link_down("4g") / link_up("4g"), or flight mode through set_link(1, ...)
            if adapter == LWIP_GP and up:
                boot.post(net.timings.bearer_ms, bearer_up)

        bn.link_listeners.append(bearer_link)
        boot.post(net.timings.bearer_ms, bearer_up)

    def ctrl_of(c: Any) -> SockCtrl:
        if not isinstance(c, SockCtrl) or c.released:
            raise TypeError("bad argument #1 (network ctrl expected)")
        return c

    def create(adapter: Any = None, cb: Any = None, *_: Any) -> Any:
        a = bn.default if adapter is None else adapter
        if not isinstance(a, int) or not 0 < a < ADAPTER_MAX:
            return None
        func = cb if boot.lua_type(cb) == b"function" else None
        task = cb if isinstance(cb, bytes) else None
        return SockCtrl.open(boot, bn, a, func, task)

    def debug(c: Any, on: Any = None, *_: Any) -> None:
        ctrl_of(c).debug = bool(on)

    def config(c: Any, lport: Any = None, udp: Any = None, tls: Any = None, keep_idle: Any = None,
               keep_intvl: Any = None, keep_cnt: Any = None, server_cert: Any = None,
               client_cert: Any = None, client_key: Any = None, client_password: Any = None) -> bool:
        sc = ctrl_of(c)
        if sc.state in (S_CONNECTING, S_ONLINE, S_TLS, S_DNS):
            return False
        sc.lport = int(lport or 0)
        sc.udp = bool(udp)
        sc.tls = bool(tls)
        sc.tls_settings = TlsSettings(pem_arg(server_cert), pem_arg(client_cert), pem_arg(client_key),
                                      pem_arg(client_password),
                                      check_hostname=boot.options.tls_check_hostname)
        return True

    def linkup(c: Any, *_: Any) -> tuple[bool, bool]:
        return True, ctrl_of(c).wait_link_up()

    def connect(c: Any, host: Any = None, port: Any = None, *_: Any) -> tuple[bool, bool]:
        sc = ctrl_of(c)
        if not isinstance(host, bytes) or not host or not isinstance(port, int | float):
            return False, False
        if not bn.is_ready(sc.adapter):
            return False, False
        sc.start_connect(py_str(host), int(port))
        return True, False

    def tx(c: Any, data: Any = None, ip: Any = None, port: Any = None, *_: Any) -> Any:
        sc = ctrl_of(c)
        if isinstance(data, bytes):
            payload = data
        elif isinstance(data, ZBuff):
            payload = data.query()
        else:
            return False, False, False
        if sc.state != S_ONLINE or sc.sock is None:
            return False, False, False
        try:
            if sc.udp and isinstance(ip, bytes) and isinstance(port, int):
                if _is_broadcast(py_str(ip)):
                    pass  # onto the emulated LAN, where nobody listens: sent, never answered
                else:
                    dest = net.resolve(py_str(ip), int(port))
                    sc.sock.sendto(payload, dest)
            else:
                return (True, False, False) if sc.send(payload) else (False, False, False)
        except (OSError, NetError):
            return False, False, False
        sc.reply_deadline = time.monotonic() + net.reply_window_ms / 1000.0
        boot.trace("socket_tx", id=sc.id, bytes=len(payload))
        sc.ack_later(2 * net.latency_ms + net.delay_for(len(payload)))
        return True, False, False

    def rx(c: Any, zb: Any = None, _flag: Any = None, limit: Any = None, *_: Any) -> Any:
        """Data goes into the zbuff at its pointer; a UDP read also returns the sender as raw
        bytes (0x00 + 4 for IPv4, 0x01 + 16 for IPv6) and its port. ``limit`` truncates: the
        rest of a datagram is dropped, the rest of a TCP stream stays for the next read."""
        sc = ctrl_of(c)
        cap = int(limit) if isinstance(limit, int | float) and int(limit) > 0 else None
        if sc.udp:
            if not isinstance(zb, ZBuff):
                return True, len(sc.dgrams[0][0]) if sc.dgrams else 0
            got = sc.take_datagram()
            if got is None:
                return (True, 0) if sc.state == S_ONLINE else (False, 0)
            data, ip, port = got
            data = data[:cap] if cap is not None else data
            zb.append(data)
            return True, len(data), raw_ip(ip), port
        if not isinstance(zb, ZBuff):
            if not sc.rbuf and sc.state != S_ONLINE:
                return False, 0
            return True, len(sc.rbuf)
        if not sc.rbuf:
            return (True, 0) if sc.state == S_ONLINE else (False, 0)
        size = len(sc.rbuf) if cap is None else min(cap, len(sc.rbuf))
        data = bytes(sc.rbuf[:size])
        del sc.rbuf[:size]
        zb.append(data)
        return True, len(data), None, None

    def read(c: Any, n: Any = None, *_: Any) -> Any:
        sc = ctrl_of(c)
        if sc.udp:
            got = sc.take_datagram()
            if got is None:
                return sc.state == S_ONLINE, b""
            data, ip, port = got
            if isinstance(n, int) and n > 0:
                data = data[:n]
            return True, data, raw_ip(ip), port
        if not sc.rbuf and sc.state != S_ONLINE:
            return False, b""
        size = len(sc.rbuf) if not isinstance(n, int) or n <= 0 else n
        data = bytes(sc.rbuf[:size])
        del sc.rbuf[:size]
        return True, data

    def wait(c: Any, *_: Any) -> tuple[bool, bool]:
        sc = ctrl_of(c)
        if sc.rbuf or sc.dgrams:
            return True, True
        if sc.state != S_ONLINE:
            return False, False
        return True, False

    def discon(c: Any, *_: Any) -> tuple[bool, bool]:
        sc = ctrl_of(c)
        if sc.state not in (S_ONLINE, S_CONNECTING, S_DNS, S_TLS):
            return True, True
        sc.close_now()
        sc.emit_later(net.latency_ms, CLOSED, 0, sc.gen)
        return True, False

    def close(c: Any, *_: Any) -> None:
        ctrl_of(c).close_now()

    def release(c: Any, *_: Any) -> None:
        if isinstance(c, SockCtrl):
            c.release()

    def close_all(adapter: Any = None, *_: Any) -> None:
        for sc in list(bn.sockets):
            if adapter is None or sc.adapter == adapter:
                sc.close_now()

    def state(c: Any, *_: Any) -> tuple[int, bytes]:
        sc = ctrl_of(c)
        return sc.state, lua_str(STATE_TEXT[sc.state])

    def adapter_fn(index: Any = None, *_: Any) -> tuple[bool, int]:
        if isinstance(index, int):
            return bn.is_ready(index), index
        for i in range(1, ADAPTER_MAX):
            if bn.is_ready(i):
                return True, i
        return False, -1

    def dft(index: Any = None, *_: Any) -> tuple[int, int]:
        if isinstance(index, int) and 0 < index < ADAPTER_MAX:
            bn.default = index
            boot.trace("socket_dft", adapter=index)
        return bn.default, bn.last_registered

    def local_ip(adapter: Any = None, *_: Any) -> Any:
        a = bn.default if not isinstance(adapter, int) else adapter
        addr = bn.ready.get(a)
        if addr is None:
            return ()  # nothing at all
        return lua_str(addr[0]), lua_str(addr[1]), lua_str(addr[2]), None

    def set_dns(adapter: Any = None, idx: Any = None, ip: Any = None, *_: Any) -> bool:
        if not isinstance(ip, bytes):
            return False
        a = bn.default if not isinstance(adapter, int) else adapter
        bn.dns[(a, int(idx or 0))] = py_str(ip)
        return True

    ntp: dict[str, int] = {}  # the last sync: virtual ms and round-trip delay

    def sntp(*_: Any) -> None:
        """Answered on the virtual clock: NTP_UPDATE one round trip later (the emulated clock
        is already right, so the time itself does not jump)."""
        if any(bn.is_ready(i) for i in range(1, ADAPTER_MAX)):
            rtt = 200 + net.latency_ms * 2

            def synced() -> None:
                ntp["at"] = boot.now
                ntp["rtt"] = rtt
                boot.sys_pub(b"NTP_UPDATE")
            boot.post(rtt, synced)

    def ntptm(*_: Any) -> Any:
        """The time of the last sync as socket.ntptm() gives it (field names UNCONFIRMED)."""
        epoch_ms = boot.platform.rtc.epoch_at_power_on * 1000 + boot.now
        return boot.table(tsec=epoch_ms // 1000, tms=epoch_ms % 1000, vaild="at" in ntp,
                          ndelay=ntp.get("rtt", 0), ssdelay=0, sndelay=ntp.get("rtt", 0) // 2)

    def listen(c: Any, *_: Any) -> tuple[bool, bool]:
        """A TCP server on the configured local port, reachable from the test at
        ``dev.net.server_address(port)``; each client arrives as ON_LINE 0."""
        sc = ctrl_of(c)
        if sc.udp or sc.tls or sc.state not in (S_OFFLINE,) or not bn.is_ready(sc.adapter):
            return False, False
        if not sc.lport:
            boot.note("socket.listen without a local port: socket.config(ctrl, port) "
                                 "first; the listen fails")
            return False, False
        return (True, False) if sc.start_listen() else (False, False)

    def accept(c: Any, cb: Any = None, *_: Any) -> Any:
        """With a callback (or task name): a new ctrl for the waiting client, the listening
        ctrl keeps listening. Without: true, the client stays on this ctrl."""
        sc = ctrl_of(c)
        if cb is None:
            return sc.sock is not None or bool(sc.pending)
        client = sc.take_client()
        if client is None:
            return None
        func = cb if boot.lua_type(cb) == b"function" else None
        task = cb if isinstance(cb, bytes) else None
        new = SockCtrl.open(boot, bn, sc.adapter, func, task)
        new.adopt(client)
        return new

    def icmp_ping(adapter: Any = None, ip: Any = None, *_: Any) -> bool:
        a = bn.default if not isinstance(adapter, int) else adapter
        if not bn.is_ready(a) or not isinstance(ip, bytes):
            return False
        try:
            net.resolve(py_str(ip), 0, real_traffic=False)
        except NetError:
            return True  # sent; no answer ever comes
        rtt = 20 + 2 * net.latency_ms
        boot.post(rtt, lambda: boot.sys_pub(b"PING_RESULT", a, rtt, ip))
        return True

    boot.firmware_module("icmp", {"setup": lambda *_: True, "ping": icmp_ping,
                                  "debug": lambda *_: None})
    if "netdrv" in boot.profile.modules:
        # netdrv.ping(id, ip[, len]) is the same probe under the netdrv name (LuatOS's libnet
        # .ping uses it): true once sent, the answer arrives as PING_RESULT id, time, dst.
        boot.firmware_module("netdrv", {"ping": icmp_ping})
    boot.firmware_module("socket", {
        "create": create, "debug": debug, "config": config, "linkup": linkup,
        "connect": connect, "tx": tx, "rx": rx, "read": read, "wait": wait,
        "discon": discon, "close": close, "release": release, "close_all": close_all,
        "state": state, "adapter": adapter_fn, "dft": dft, "localIP": local_ip,
        "setDNS": set_dns, "sntp": sntp, "ntptm": ntptm, "listen": listen,
        "accept": accept,
    }, CONSTANTS)
