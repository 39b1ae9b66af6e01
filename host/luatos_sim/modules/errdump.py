"""errDump: the firmware's error logs, and their upload to a log server over UDP.

Written from the module's API documentation and luat_lib_errdump.c (docs/behaviour.md §2.7).
Two logs, kept in flash by the platform part (``dev.errdump``, 4 KB each, newest kept): the
system log gets the message of a Lua error that ends the VM, the user log what the script gives
``errDump.record``. Nothing is recorded until ``errDump.config(true, ...)`` in this
boot.

With a period, the module uploads: 2 s after ``config`` (and 2 s after each record) it sends
one UDP datagram to the log server (``dev_msg1.openluat.com:12425`` unless ``config`` names
another) over the last registered network adapter, through the emulator's socket layer. The
datagram is a header line (project, firmware, version, device id, user flag), the power-on
reason once per boot, then each log that has content, each followed by CR LF. The server
acknowledges with ``OK`` (or ``{"r": 1}``); then both logs are cleared. Without an answer the
datagram is sent three times, 10 s apart; then, as after any network failure, the next attempt
is ``period`` seconds later. The firmware's log lines (tag ``errDump``) say what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..cfunc import BadArgument, opt_integer
from ..lua_text import py_str
from ..platform.errdump import KINDS, SYS, USR, ErrDumpLogs
from .socket_mod import EVENT, LINK, ON_LINE, SockCtrl
from .zbuff import ZBuff

if TYPE_CHECKING:
    from ..platform.network import BootNet
    from ..vm import Boot

TAG = "errDump"
DEFAULT_HOST = "dev_msg1.openluat.com"  # luat_errdump_domain
DEFAULT_PORT = 12425  # LUAT_ERRDUMP_PORT
DEFAULT_PERIOD_S = 600
FIRST_TRY_MS = 2000  # after config, and after each record
CONNECT_WAIT_MS = 30_000  # the whole attempt, until the first datagram is out
REPLY_WAIT_MS = 10_000  # per datagram sent
SENDS = 3  # datagrams per attempt without an answer
ANSWER_READ = 16  # bytes of the answer the firmware reads
ACK_OK = b"OK"
ACK_JSON = b'{"r": 1}'
ID_MAX = 48  # custom_id and host: 48 characters or more are ignored

CONSTANTS = {"TYPE_SYS": SYS, "TYPE_USR": USR}


class _Timer:
    """One firmware RTOS timer: starting it again restarts it; stopping drops the pending run."""

    def __init__(self, boot: Boot) -> None:
        self.boot = boot
        self.gen = 0

    def start(self, delay_ms: int, fn: Callable[..., None], *args: Any) -> None:
        self.gen += 1
        gen = self.gen

        def fire() -> None:
            if gen == self.gen:
                fn(*args)
        self.boot.post(delay_ms, fire)

    def stop(self) -> None:
        self.gen += 1


class Uploader:
    """One boot's upload state machine (the firmware's ``econf`` and its two timers)."""

    def __init__(self, boot: Boot, bn: BootNet, logs: ErrDumpLogs) -> None:
        self.boot = boot
        self.bn = bn
        self.logs = logs
        self.period_s = 0
        self.user_flag: bytes | None = None
        self.custom_id = b""
        self.host = b""
        self.port = 0
        self.uploading = False
        self.poweron_sent = False
        self.sock: SockCtrl | None = None
        self.target = (DEFAULT_HOST, DEFAULT_PORT)
        self.packet: bytes | None = None
        self.upload_timer = _Timer(boot)
        self.network_timer = _Timer(boot)

    def log(self, level: str, text: str) -> None:
        self.boot.log_c(level, TAG, text)

    # -- configuration -------------------------------------------------------------------------

    def record_init(self, enable: bool, period_s: int) -> None:
        self.logs.enabled = enable
        if not enable:
            for kind in KINDS:
                self.logs.clear(kind)
            self.upload_timer.stop()
            self.network_timer.stop()
            self.user_flag = None
            self.close()  # (ours: the firmware leaves an attempt in flight without its timers)
            return
        if period_s:
            self.period_s = period_s & 0xFFFFFFFF
            self.upload_timer.start(FIRST_TRY_MS, self.due)
            self.network_timer.stop()
        else:
            self.period_s = 0
            self.upload_timer.stop()
            self.network_timer.stop()

    def recorded(self) -> None:
        """A write reached a log: upload it soon."""
        if not self.uploading and self.period_s:
            self.upload_timer.start(FIRST_TRY_MS, self.due)

    def retry_later(self) -> None:
        self.upload_timer.start(self.period_s * 1000, self.due)

    # -- one attempt ---------------------------------------------------------------------------

    def due(self) -> None:
        if not self.poweron_sent or self.logs.size(SYS) > 0 or self.logs.size(USR) > 0:
            self.uploading = True
            self.boot.post(0, self.connect)
        else:
            self.log("D", "no info errdump stop")

    def connect(self) -> None:
        self.close_socket()
        adapter = self.bn.last_registered
        sc = SockCtrl(self.boot, self.bn, adapter, self.on_net, None)
        sc.udp = True
        self.bn.sockets.append(sc)
        self.sock = sc
        self.uploading = True
        self.network_timer.start(CONNECT_WAIT_MS, self.reply_timeout, 0)
        if self.host:
            self.port = self.port if self.port >= 1 else DEFAULT_PORT
            host, port = py_str(self.host), self.port
        else:
            host, port = DEFAULT_HOST, DEFAULT_PORT
        self.target = (host, port)
        self.boot.trace("errdump_connect", host=host, port=port)
        if self.bn.is_ready(adapter):
            sc.start_connect(host, port)
        else:
            sc.want_link = True  # the connect waits for the adapter (and the 30 s timer)

    def on_net(self, sc: SockCtrl, event: int, param: int) -> None:
        if sc is not self.sock:
            return
        if param:
            self.log("E", f"errdump fail, after {self.period_s} second retry")
            self.uploading = False
            self.retry_later()
            self.boot.post(0, self.close)
            return
        if event == LINK:
            sc.start_connect(*self.target)
        elif event == ON_LINE:
            self.boot.post(0, self.transmit, 0)
        elif event == EVENT:
            self.boot.post(0, self.answer)

    def make_packet(self) -> None:
        G = self.boot.G
        project, version = G[b"PROJECT"], G[b"VERSION"]
        p = self.boot.profile
        head = b"%s_LuatOS-SoC_%s_%s,%s,%s,%s,\r\n" % (
            project if isinstance(project, bytes) else b"unkonw", p.core.encode(), p.bsp.encode(),
            version if isinstance(version, bytes) else b"", self.device_id(),
            self.user_flag or b"")
        parts = [head]
        if not self.poweron_sent:
            parts.append(b"poweron reason:%d\r\n" % self.boot.last_reset.detail)
        for kind in KINDS:
            self.logs.mark_read(kind)
            content = self.logs.read(kind)
            if content:
                parts += [content, b"\r\n"]
        self.packet = b"".join(parts)

    def device_id(self) -> bytes:
        if self.custom_id:
            return self.custom_id
        p = self.boot.profile
        if "mobile" in p.modules:
            return (p.imei or "000000000000000").encode()
        return p.uid.hex().upper().encode()

    def changed(self) -> bool:
        return any(self.logs.unread(kind) for kind in KINDS)

    def transmit(self, tries: int) -> None:
        if self.sock is None:
            return
        if self.packet is None:
            self.make_packet()
        elif self.changed():
            tries = 0
            self.make_packet()
        self.send(tries)

    def send(self, tries: int) -> None:
        assert self.sock is not None and self.packet is not None
        if not self.sock.send(self.packet):
            self.log("E", f"socket tx error, errdump fail, after {self.period_s} second retry")
            self.retry_later()
            self.close()
            return
        self.boot.trace("errdump_tx", bytes=len(self.packet), tries=tries + 1)
        self.network_timer.start(REPLY_WAIT_MS, self.reply_timeout, tries + 1)

    def reply_timeout(self, tries: int) -> None:
        if tries and tries < SENDS:
            self.log("E", f"errdump tx fail {tries} cnt, retry")
            self.boot.post(0, self.transmit, tries)
            return
        self.log("E", f"errdump server connect or tx fail, after {self.period_s} second retry")
        self.boot.post(0, self.close)
        self.uploading = False
        self.retry_later()

    def answer(self) -> None:
        sc = self.sock
        if sc is None or not sc.dgrams:
            return
        data = sc.dgrams.pop(0)[0][:ANSWER_READ]
        shown = py_str(data)
        if len(data) in (len(ACK_JSON), len(ACK_OK)):
            if data not in (ACK_JSON, ACK_OK):
                self.log("D", f"errdump response error {shown}")
                return  # the reply timer runs on: the datagram goes again
        else:
            self.log("D", f"errdump response maybe new {shown}")
        if self.changed():
            self.log("D", "errdump need retry!")
            self.make_packet()
            self.send(0)
            return
        self.log("D", "errdump ok!")
        for kind in KINDS:
            self.logs.clear(kind)
        self.poweron_sent = True
        self.boot.trace("errdump_ok")
        self.close()

    def close(self) -> None:
        self.network_timer.stop()
        self.uploading = False
        self.close_socket()

    def close_socket(self) -> None:
        sc, self.sock = self.sock, None
        self.packet = None
        if sc is not None:
            sc.close_now()
            sc.released = True
            if sc in self.bn.sockets:
                self.bn.sockets.remove(sc)


def install(boot: Boot) -> None:
    logs = boot.platform.errdump
    up = Uploader(boot, boot.platform.net.boot_net(boot), logs)

    def config(enable: Any = None, period: Any = None, user_flag: Any = None,
               custom_id: Any = None, host: Any = None, port: Any = None,
               *_: Any) -> tuple[()]:
        """Returns no value, as the firmware's (``select("#", ...)`` is 0)."""
        if isinstance(enable, bool):
            seconds = opt_integer(period, DEFAULT_PERIOD_S, 2, "config")
            up.record_init(enable, seconds)
        if not logs.enabled:
            return ()
        if isinstance(user_flag, bytes):
            up.user_flag = user_flag
        if isinstance(custom_id, bytes) and len(custom_id) < ID_MAX:
            up.custom_id = custom_id
        if isinstance(host, bytes):
            if len(host) < ID_MAX:
                up.host = host
            if isinstance(port, int) and not isinstance(port, bool):
                up.port = port & 0xFFFF
            if up.port < 1:
                up.port = DEFAULT_PORT
            up.log("D", f"Custom server {py_str(up.host)} {up.port}")
        return ()

    def record(text: Any = None, *_: Any) -> tuple[()]:
        if isinstance(text, bytes) and text and logs.save(USR, text):
            up.recorded()
        return ()

    def dump(zb: Any = None, kind: Any = None, delete: Any = None, *_: Any) -> bool:
        if zb is not None and not isinstance(zb, ZBuff) and boot.lua_type(zb) == b"userdata":
            raise BadArgument("bad argument #1 to 'dump' (ZBUFF* expected, got userdata)")
        t = opt_integer(kind, USR, 2, "dump")
        if t > USR:
            return True
        known = t in KINDS
        fresh = known and logs.unread(t)
        if isinstance(zb, ZBuff):
            content = b""
            if known:
                logs.mark_read(t)
                content = logs.read(t) if logs.enabled else b""
            if content:
                if len(content) > zb.capacity:
                    zb.buf = bytearray(content)
                else:
                    zb.buf[:len(content)] = content
            zb.used = len(content)
        if delete is True and known:
            logs.clear(t)
        return fresh

    boot.firmware_module(TAG, {"config": config, "record": record, "dump": dump}, CONSTANTS)
