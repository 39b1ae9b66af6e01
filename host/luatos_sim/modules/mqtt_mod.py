"""mqtt: the firmware's MQTT 3.1.1 client (the C module), over a real TCP/TLS connection.

The transport is a socket-module connection (:class:`SockCtrl` with a Python callback), so
the address map, latency, link loss, ``cut_after`` and the TLS certificate rules apply to MQTT
exactly as to ``socket``. The packets come from :mod:`luatos_sim.mqtt_wire`.

What the device does, and so what this does (firmware luat_mqtt_client.c / luat_lib_mqtt.c):
- ``connect()`` always answers true; failures arrive as events: ``error`` ("connect", "tx",
  "conack" with the return code, "other", "timeout"), then ``disconnect`` with the error state
  (0 for a socket failure, the CONNACK code, -2 after a broker DISCONNECT), then either the
  reconnect timer (``autoreconn``, default 3000 ms) or ``close``.
- CONNACK starts the keepalive ping every keepalive*3/4 s; no CONNACK within ``conn_timeout``
  (default 30 s) is ``error timeout``.
- QoS 0 ``sent`` comes at once with id 0; QoS 1 on PUBACK; QoS 2 on PUBCOMP (PUBREL sent on
  PUBREC). Nothing is queued or retried: publishing while offline returns nil.
- A received packet larger than the receive buffer (4 KiB; 32 KiB on the EC618/EC718 models,
  or ``rxSize``) closes the connection.
- Packets the client does not know are ignored, as the firmware's parser does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import mqtt_wire as w
from ..cfunc import BadArgument, lua_number_text, lua_type_name
from ..platform.network import ADAPTER_MAX
from ..tlsconf import TlsSettings, pem_arg
from .lua_callbacks import callback_slots
from .socket_mod import CLOSED, EVENT, LINK, ON_LINE, TX_OK, SockCtrl
from .zbuff import ZBuff

if TYPE_CHECKING:
    from ..platform.network import BootNet
    from ..vm import Boot

STATE_DISCONNECT, STATE_SCONNECT, STATE_MQTT, STATE_READY = 0, 1, 2, 3
ERROR_DISCONNECT = -2  # error_state after the broker sent DISCONNECT

# Receive buffer (bytes) by chip: MQTT_RECV_BUF_LEN_MAX + 4 in the firmware. UNCONFIRMED for
# the BK7258 (Air8101): the generic 4096 is assumed (docs/defaults.md).
RX_BUFFER_BY_CHIP = {"EC618": 32 * 1024 + 4, "EC718": 32 * 1024 + 4, "EC716": 32 * 1024 + 4}
RX_BUFFER_DEFAULT = 4096 + 4

_NW_EVENT_NUMBER = {LINK: 16, ON_LINE: 17, TX_OK: 18, CLOSED: 19, EVENT: 20}
_WILDCARD = re.compile(rb"[#+]")
_addresses = iter(range(0x60A1_0000, 0x7FFF_FFFF, 0x2B8))


def _checkstring(v: Any, n: int, fname: str) -> bytes:
    """luaL_checkstring, numbered as in a method call (self is not counted)."""
    if isinstance(v, bytes):
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return lua_number_text(v)
    got = "no value" if v is _NONE else lua_type_name(v)
    raise BadArgument(f"bad argument #{n} to '{fname}' (string expected, got {got})")


def _optint(v: Any, default: int) -> int:
    if isinstance(v, bool) or v is None:
        return default
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return default


_NONE = object()


class MqttClient:
    """One ``mqtt.create`` instance: the firmware's luat_mqtt_ctrl_t."""

    def __init__(self, boot: Boot, bn: BootNet, adapter: int, host: bytes, port: int,
                 tls: TlsSettings | None, rx_size: int, conn_timeout_s: int) -> None:
        self.boot = boot
        self.adapter = adapter
        self.host = host
        self.port = port
        self.rx_size = rx_size
        self.conn_timeout_s = conn_timeout_s
        self.sock = SockCtrl.open(boot, bn, adapter, self._on_net, tls=tls)
        self.address = next(_addresses)
        self.invoke: Any = None  # Lua: invoke(key, ud, event, ...) calls the callback
        self.state = STATE_DISCONNECT
        self.error_state = 0
        self.keepalive = 240
        self.reconnect = False
        self.reconnect_ms = 0
        self.client_id = b""
        self.username = b""
        self.password = b""
        self.clean_session = False  # all zero until auth(): the broker struct is memset
        self.will: w.Will | None = None
        self.seq = 1
        self.subscribed = 0
        self.last_id = 0
        self.parser = w.StreamParser(rx_size)
        self.released = False
        self.gen = {"ping": 0, "conn": 0, "reconnect": 0}
        self.noted: set[str] = set()

    # -- small helpers ----------------------------------------------------------------------------

    def log(self, level: str, text: str) -> None:
        self.boot.log_c(level, "mqtt", text)

    def note(self, key: str, text: str) -> None:
        """An emulator note (once per client and kind) where the device would just fail."""
        if key not in self.noted:
            self.noted.add(key)
            self.boot.note(f"mqtt {self.host.decode(errors='replace')}:{self.port}: "
                                      f"{text}")

    def fire(self, event: bytes, *args: Any) -> None:
        """Queue a Lua callback, as l_luat_mqtt_msg_cb puts a message on the bus. The callback
        lives on the Lua side (``invoke`` looks it up), so an error in it is a plain Lua error
        in the event loop, as on the device."""
        def run() -> None:
            if not self.released:
                self.invoke(self.address, self, event, *args)
        self.boot.post(0, run)

    def start_timer(self, kind: str, delay_ms: int, fn: Any, repeat: bool = False) -> None:
        self.gen[kind] += 1
        gen = self.gen[kind]

        def tick() -> None:
            if self.gen[kind] != gen or self.released:
                return
            if repeat:
                self.boot.post(delay_ms, tick)
            fn()
        self.boot.post(delay_ms, tick)

    def stop_timer(self, kind: str) -> None:
        self.gen[kind] += 1

    def next_id(self) -> int:
        mid = self.seq
        self.seq = (self.seq + 1) & 0xFFFF
        return mid

    def send(self, data: bytes, expect_reply: bool = True) -> bool:
        return self.sock.send(data, expect_reply)

    # -- connection lifecycle -----------------------------------------------------------------------

    def connect(self) -> None:
        """luat_mqtt_connect: start the socket connection and the CONNACK timeout."""
        self.error_state = 0
        self.parser.reset()
        self.state = STATE_SCONNECT
        self.start_timer("conn", self.conn_timeout_s * 1000, self._conn_timeout)
        if self.sock.wait_link_up():  # else network_connect goes on at LINK
            self.sock.start_connect(self.host.decode(errors="replace"), self.port)

    def _conn_timeout(self) -> None:
        self.log("W", f"connect timeout {self.host.decode(errors='replace')} {self.port}!! "
                      f"expect conack in {self.conn_timeout_s}s")
        self.fire(b"error", b"timeout", 0)
        self.close_socket()

    def close_socket(self) -> None:
        """luat_mqtt_close_socket: disconnect event, then the reconnect timer or close."""
        self.log("I", f"mqtt closing socket netc:0x{self.address + 0x40:08x} "
                      f"mqtt_state:{self.state}")
        if self.state != STATE_DISCONNECT:
            self.state = STATE_DISCONNECT
            self.parser.reset()
            self.stop_timer("ping")
            self.stop_timer("conn")
            self.sock.close_now()
            self.boot.trace("mqtt_disconnect", error=self.error_state)
            self.fire(b"disconnect", self.error_state)
            if self.reconnect and self.reconnect_ms > 0:
                self.start_timer("reconnect", self.reconnect_ms, self.connect)
            else:
                self.fire(b"close")
        self.parser.reset()

    def _on_net(self, _sc: SockCtrl, event: int, param: int) -> None:
        """luat_mqtt_callback: the socket layer's events."""
        if self.released:
            return
        if param:
            self.log("E", f"mqtt_callback param1 {param}, event {_NW_EVENT_NUMBER.get(event, 0)} "
                          "closing socket")
            kind = b"connect" if event == ON_LINE else b"tx" if event == TX_OK else b"other"
            self.fire(b"error", kind, 0)
            self.close_socket()
            return
        if event == LINK:
            if self.state == STATE_SCONNECT:
                self.sock.start_connect(self.host.decode(errors="replace"), self.port)
        elif event == ON_LINE:
            self.state = STATE_MQTT
            self.boot.trace("mqtt_tcp_online", host=self.host.decode(errors="replace"))
            packet = w.connect(self.client_id, self.keepalive, username=self.username,
                               password=self.password, clean_session=self.clean_session,
                               will=self.will)
            if not self.send(packet):
                self.close_socket()
        elif event == EVENT:
            self._read()

    def _read(self) -> None:
        """luat_mqtt_read_packet: everything the socket holds, packet by packet."""
        data = bytes(self.sock.rbuf)
        self.sock.rbuf.clear()
        if not data:
            if not self.sock.tls:
                self.log("W", "rx event but NO data wait for recv")
            return
        if len(data) > self.rx_size - len(self.parser.buf):
            self.log("E", f"too many data wait for recv {len(data)}")
            self.note("rx", f"{len(data)} bytes arrived for a {self.rx_size}-byte receive "
                            "buffer; the device drops the connection (mqtt.create(..., "
                            "{rxSize=N}) enlarges it)")
            self.close_socket()
            return
        try:
            packets = self.parser.feed(data)
        except w.WireError as e:
            self.log("E", "buff is FULL, mqtt packet too big" if "exceeds" in str(e)
                     else "bad mqtt packet!! ret -1")
            self.note("wire", f"the broker sent bytes that are not MQTT ({e}); the device "
                              "closes the connection")
            self.close_socket()
            return
        for p in packets:
            if self.state == STATE_DISCONNECT or self.released:
                return
            if not self._handle(p):
                self.log("W", "bad mqtt packet!! ret -1")
                self.log("W", "mqtt_parse ret -1, closing socket")
                return

    def _handle(self, p: w.Packet) -> bool:
        """luat_mqtt_msg_cb for one packet; False: the connection was closed."""
        try:
            if p.kind == w.CONNACK:
                code = p.body[1] if len(p.body) >= 2 else 0
                if code != 0:
                    self.log("W", f"CONACK 0x{code:02x}")
                    self.error_state = code
                    self.close_socket()
                    self.fire(b"error", b"conack", code)
                    return False
                self.state = STATE_READY
                self.boot.trace("mqtt_conack")
                self.fire(b"conack")
                self.stop_timer("reconnect")
                self.stop_timer("conn")
                self.start_timer("ping", self.keepalive * 1000 * 3 // 4, self._ping, repeat=True)
            elif p.kind == w.PUBLISH:
                pub = w.parse_publish(p)
                meta = self.boot.table(message_id=pub.message_id, qos=pub.qos,
                                       retain=pub.retain, dup=pub.dup)
                self.fire(b"recv", pub.topic, pub.payload, meta)
                if pub.qos == 1:
                    self.send(w.ack(w.PUBACK, pub.message_id), expect_reply=False)
                elif pub.qos == 2:
                    self.send(w.ack(w.PUBREC, pub.message_id))
            elif p.kind in (w.PUBACK, w.PUBCOMP):
                self.fire(b"sent", w.message_id(p))
            elif p.kind == w.PUBREC:
                self.send(w.ack(w.PUBREL, w.message_id(p)))
            elif p.kind == w.PUBREL:
                self.send(w.ack(w.PUBCOMP, w.message_id(p)), expect_reply=False)
            elif p.kind == w.SUBACK:
                code = p.body[2] if len(p.body) >= 3 else 0x80
                self.fire(b"suback", code <= 2, code)
            elif p.kind == w.UNSUBACK:
                self.fire(b"unsuback")
            elif p.kind == w.PINGRESP:
                self.fire(b"pong")
                self.boot.post(0, lambda: self.boot.sys_pub(b"MQTT_PONG", self))
            elif p.kind == w.DISCONNECT:
                self.error_state = ERROR_DISCONNECT
            else:
                self.note(f"kind{p.kind}", f"the broker sent packet type {p.kind}, which a "
                                           "client never receives; the device ignores it")
        except w.WireError as e:
            self.note("short", f"malformed packet type {p.kind} ignored ({e})")
        return True

    def _ping(self) -> None:
        self.send(w.PINGREQ_BYTES)

    # -- the script's calls ------------------------------------------------------------------------

    def publish(self, topic: bytes, payload: bytes, qos: int, retain: bool) -> int | None:
        invalid = not topic or _WILDCARD.search(topic) is not None
        if invalid:
            self.note("topic", f"publish to topic {topic!r}: MQTT forbids an empty topic or "
                               "wildcards in a published topic; the broker drops the "
                               "connection")
        mid = self.next_id() if qos in (1, 2) else 0
        if qos not in (1, 2):
            qos = 0
        data = w.publish(topic, payload, qos, retain, mid)
        # An answer is due for QoS 1/2, may come when subscribed, and a broker drops a client
        # for an invalid topic: then the broker gets its wall-clock window to answer.
        if not self.send(data, expect_reply=qos > 0 or self.subscribed > 0 or invalid):
            return None
        if qos == 0:
            self.fire(b"sent", 0)
        return mid

    def subscribe(self, topic: bytes, qos: int) -> bool:
        if not topic:
            self.note("subtopic", "subscribe to an empty topic: the broker drops the connection")
        mid = self.next_id()
        self.last_id = mid
        ok = self.send(w.subscribe(mid, topic, qos if 0 <= qos <= 2 else 0))
        if ok:
            self.subscribed += 1
        return ok

    def unsubscribe(self, topic: bytes) -> bool:
        mid = self.next_id()
        self.last_id = mid
        return self.send(w.unsubscribe(mid, topic))

    def release(self) -> None:
        self.released = True
        for k in self.gen:
            self.gen[k] += 1
        self.sock.release()


def install(boot: Boot) -> None:
    net = boot.platform.net
    bn = net.boot_net(boot)
    rx_default = RX_BUFFER_BY_CHIP.get(boot.profile.chip, RX_BUFFER_DEFAULT)

    set_cb, invoke = callback_slots(boot)

    def opt_table_get(t: Any, key: bytes) -> Any:
        return t[key] if boot.lua_type(t) == b"table" else None

    def create(adapter: Any = None, host: Any = None, port: Any = None, ssl: Any = None,
               opts: Any = None, *_: Any) -> Any:
        a = bn.default if adapter is None else _optint(adapter, -1)
        if not 0 <= a < ADAPTER_MAX:
            boot.log_c("E", "mqtt", "尚无已注册的网络适配器")
            return None
        if isinstance(host, int) and not isinstance(host, bool):
            raw = host & 0xFFFFFFFF  # an IPv4 address as a number (little-endian on the device)
            host_b = ".".join(str((raw >> s) & 0xFF) for s in (0, 8, 16, 24)).encode()
        else:
            host_b = _checkstring(host, 2, "create")
        if isinstance(port, bool) or not isinstance(port, int | float):
            raise BadArgument(f"bad argument #3 to 'create' (number expected, got "
                              f"{'no value' if port is None else lua_type_name(port)})")
        tls: TlsSettings | None = None
        if ssl is True:
            tls = TlsSettings()
        elif boot.lua_type(ssl) == b"table":
            verify = _optint(opt_table_get(ssl, b"verify"), 2)
            ca = pem_arg(opt_table_get(ssl, b"server_cert"))
            tls = TlsSettings(ca if verify == 2 else None,
                              pem_arg(opt_table_get(ssl, b"client_cert")),
                              pem_arg(opt_table_get(ssl, b"client_key")),
                              pem_arg(opt_table_get(ssl, b"client_password")),
                              check_hostname=boot.options.tls_check_hostname)
        rx_size = rx_default
        conn_timeout = 30
        if boot.lua_type(opts) == b"table":
            rx = opt_table_get(opts, b"rxSize")
            if isinstance(rx, int | float) and not isinstance(rx, bool) and rx > 0:
                rx_size = int(rx)
            ct = opt_table_get(opts, b"conn_timeout")
            if isinstance(ct, int | float) and not isinstance(ct, bool):
                conn_timeout = max(5, min(120, int(ct)))
        client = MqttClient(boot, bn, a, host_b, int(port), tls, rx_size, conn_timeout)
        boot.trace("mqtt_create", host=host_b.decode(errors="replace"),
                                port=int(port), tls=tls is not None)
        client.invoke = invoke
        return client

    def live(c: MqttClient, fname: str) -> bool:
        if c.released:
            c.note("released", f"mqttc:{fname}() after mqttc:close(): the client is released "
                               "(on the device this touches freed memory)")
            return False
        return True

    def m_auth(c: MqttClient, client_id: Any = None, username: Any = None, password: Any = None,
               clean: Any = None, *_: Any) -> Any:
        c.client_id = b"" if client_id is None else _checkstring(client_id, 1, "auth")
        c.username = b"" if username is None else _checkstring(username, 2, "auth")
        c.password = b"" if password is None else _checkstring(password, 3, "auth")
        c.clean_session = clean is not False
        return True

    def m_keepalive(c: MqttClient, t: Any = None, *_: Any) -> None:
        c.keepalive = max(15, min(600, _optint(t, 240)))

    def m_on(c: MqttClient, cb: Any = None, *_: Any) -> None:
        set_cb(c.address, cb)

    def m_connect(c: MqttClient, *_: Any) -> bool:
        if not live(c, "connect"):
            return False
        c.connect()
        return True  # the firmware's own check can never fail (see the module docstring)

    def m_disconnect(c: MqttClient, *_: Any) -> bool:
        if not live(c, "disconnect"):
            return False
        c.send(w.DISCONNECT_BYTES, expect_reply=False)
        c.close_socket()
        return True

    def m_autoreconn(c: MqttClient, on: Any = None, ms: Any = None, *_: Any) -> None:
        if isinstance(on, bool):
            c.reconnect = on
        c.reconnect_ms = _optint(ms, 3000)
        if c.reconnect and c.reconnect_ms < 1000:
            c.reconnect_ms = 1000

    def m_publish(c: MqttClient, topic: Any = _NONE, payload: Any = None, qos: Any = None,
                  retain: Any = None, *_: Any) -> Any:
        t = _checkstring(topic, 1, "publish")
        if isinstance(payload, bytes):
            data = payload
        elif isinstance(payload, int | float) and not isinstance(payload, bool):
            data = lua_number_text(payload)
        elif isinstance(payload, ZBuff):
            data = payload.query()
        else:
            data = b""  # "only support string or zbuff": sent with an empty payload
        if not live(c, "publish"):
            return None
        return c.publish(t, data, _optint(qos, 0) & 0xFF, bool(_optint(retain, 0)))

    def m_subscribe(c: MqttClient, topic: Any = None, qos: Any = None, *_: Any) -> Any:
        if not live(c, "subscribe"):
            return None
        ok = True
        if isinstance(topic, bytes | int | float) and not isinstance(topic, bool):
            ok = c.subscribe(_checkstring(topic, 1, "subscribe"), _optint(qos, 0))
        elif boot.lua_type(topic) == b"table":
            for k, v in list(topic.items()):
                ok = c.subscribe(_checkstring(k, 1, "subscribe"), _optint(v, 0)) and ok
        else:
            return None
        return c.last_id if ok else None

    def m_unsubscribe(c: MqttClient, topic: Any = None, *_: Any) -> Any:
        if not live(c, "unsubscribe"):
            return None
        if isinstance(topic, bytes | int | float) and not isinstance(topic, bool):
            ok = c.unsubscribe(_checkstring(topic, 1, "unsubscribe"))
        elif boot.lua_type(topic) == b"table":
            ok = True
            n = len(topic)
            if n == 0:
                return None
            for i in range(1, n + 1):
                ok = c.unsubscribe(_checkstring(topic[i], 1, "unsubscribe")) and ok
        else:
            return None
        return c.last_id if ok else None

    def m_close(c: MqttClient, *_: Any) -> None:
        if c.released:
            return
        c.send(w.DISCONNECT_BYTES, expect_reply=False)
        set_cb(c.address, None)  # unreferenced before the queued disconnect runs: no events
        c.close_socket()
        c.release()

    def m_ready(c: MqttClient, *_: Any) -> bool:
        return c.state == STATE_READY

    def m_state(c: MqttClient, *_: Any) -> int:
        return c.state

    def m_will(c: MqttClient, topic: Any = _NONE, payload: Any = _NONE, qos: Any = None,
               retain: Any = None, *_: Any) -> bool:
        t = _checkstring(topic, 1, "will")
        p = _checkstring(payload, 2, "will")
        if c.released:
            return False
        q = _optint(qos, 0)
        c.will = w.Will(t, p, q if 0 <= q <= 2 else 0, bool(_optint(retain, 0)))
        return True

    def m_debug(c: MqttClient, on: Any = None, *_: Any) -> None:
        if isinstance(on, bool):
            c.sock.debug = on

    methods: dict[str, Callable[..., Any]] = {
        "auth": m_auth, "keepalive": m_keepalive, "on": m_on, "connect": m_connect,
        "autoreconn": m_autoreconn, "publish": m_publish, "subscribe": m_subscribe,
        "unsubscribe": m_unsubscribe, "disconnect": m_disconnect, "close": m_close,
        "ready": m_ready, "will": m_will, "debug": m_debug, "state": m_state,
    }
    def checked(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def method(c: Any = None, *args: Any) -> Any:
            if not isinstance(c, MqttClient):
                raise BadArgument(f"bad argument #1 to '{name}' (MQTTCTRL* expected, got "
                                  f"{lua_type_name(c)})")
            return fn(c, *args)
        return method

    funcs = {name: checked(name, fn) for name, fn in methods.items()}
    # The firmware's __index answers every function name of the module on a client.
    boot.objects.define(MqttClient, "MQTTCTRL*", methods={**funcs, "create": create})
    boot.firmware_module("mqtt", {"create": create, **funcs}, {
        "STATE_DISCONNECT": STATE_DISCONNECT, "STATE_SCONNECT": STATE_SCONNECT,
        "STATE_MQTT": STATE_MQTT, "STATE_READY": STATE_READY,
    })
