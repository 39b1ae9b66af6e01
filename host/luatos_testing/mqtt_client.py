"""A small blocking MQTT 3.1.1 client for tests: the other side of the device on the broker.

A test publishes ``update`` to the device's command topic, or waits for what the device
published (its will, its status), with bounded timeouts. Built on the same wire functions
as the emulated firmware client, over a plain socket and one reader thread.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from dataclasses import dataclass

from luatos_sim import mqtt_wire as w


class MqttTestError(RuntimeError):
    """The broker refused or did not answer in time."""


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class MqttTestClient:
    def __init__(self, host: str, port: int, client_id: str = "luatos-test",
                 timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.messages: queue.Queue[Message] = queue.Queue()
        self._acks: queue.Queue[w.Packet] = queue.Queue()
        self._seq = 1
        self._lock = threading.Lock()
        self._closed = False
        self.sock.sendall(w.connect(client_id.encode(), 60))
        self._parser = w.StreamParser(64 * 1024 * 1024)
        first = self._read_until_packets()
        if not first or first[0].kind != w.CONNACK or first[0].body[1:2] != b"\x00":
            raise MqttTestError(f"broker refused the test client: {first!r}")
        self.sock.settimeout(None)
        self._thread = threading.Thread(target=self._reader, name="mqtt-test-client", daemon=True)
        self._thread.start()

    def _read_until_packets(self) -> list[w.Packet]:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            data = self.sock.recv(65536)
            if not data:
                return []
            packets = self._parser.feed(data)
            if packets:
                return packets
        return []

    def _reader(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                packets = self._parser.feed(data)
                self._dispatch(packets)
            except (w.WireError, OSError):
                return  # garbage from the broker, or the socket closed under an ack

    def _dispatch(self, packets: list[w.Packet]) -> None:
        for p in packets:
            if p.kind == w.PUBLISH:
                pub = w.parse_publish(p)
                self.messages.put(Message(pub.topic.decode(errors="replace"), pub.payload,
                                          pub.qos, bool(pub.retain)))
                if pub.qos == 1:
                    self._send(w.ack(w.PUBACK, pub.message_id))
                elif pub.qos == 2:
                    self._send(w.ack(w.PUBREC, pub.message_id))
            elif p.kind == w.PUBREL:
                self._send(w.ack(w.PUBCOMP, w.message_id(p)))
            else:
                self._acks.put(p)

    def _send(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)

    def _next_id(self) -> int:
        with self._lock:
            mid = self._seq
            self._seq = self._seq % 0xFFFF + 1
            return mid

    def _wait_ack(self, kind: int) -> w.Packet:
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MqttTestError(f"no packet type {kind} from the broker in {self.timeout} s")
            try:
                p = self._acks.get(timeout=left)
            except queue.Empty:
                continue
            if p.kind == kind:
                return p

    def subscribe(self, topic: str, qos: int = 0) -> None:
        self._send(w.subscribe(self._next_id(), topic.encode(), qos))
        self._wait_ack(w.SUBACK)

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        mid = self._next_id() if qos else 0
        self._send(w.publish(topic.encode(), data, qos, retain, mid))
        if qos == 1:
            self._wait_ack(w.PUBACK)

    def wait_message(self, topic: str | None = None, timeout: float | None = None) -> Message:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MqttTestError(f"no message on {topic or 'any topic'} in time")
            try:
                m = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if topic is None or m.topic == topic:
                return m

    def close(self) -> None:
        self._closed = True
        try:
            self._send(w.DISCONNECT_BYTES)
        except OSError:
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> MqttTestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
