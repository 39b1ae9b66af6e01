"""MQTT 3.1.1 wire format as pure functions: packets to bytes and a byte stream to packets.

Kept apart from any I/O so the emulated firmware client (modules/mqtt_mod.py) and the tests
share one definition of the format, and so a broker answering garbage is a parse result
(:class:`WireError`), never an exception escaping into the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

# Packet types (high nibble of the first byte).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = (
    8, 9, 10, 11, 12, 13, 14)

MAX_REMAINING = 268_435_455  # four length bytes


class WireError(ValueError):
    """Bytes that are not a well-formed MQTT 3.1.1 packet."""


@dataclass(frozen=True)
class Packet:
    kind: int
    flags: int
    body: bytes

    @property
    def size(self) -> int:
        return 1 + len(encode_length(len(self.body))) + len(self.body)


@dataclass(frozen=True)
class Publish:
    topic: bytes
    payload: bytes
    qos: int
    retain: int
    dup: int
    message_id: int
    flags: int


def encode_length(n: int) -> bytes:
    if not 0 <= n <= MAX_REMAINING:
        raise WireError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        digit, n = n % 128, n // 128
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise WireError(f"string of {len(data)} bytes is longer than 65535")
    return len(data).to_bytes(2, "big") + data


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([(kind << 4) | (flags & 0x0F)]) + encode_length(len(body)) + body


@dataclass(frozen=True)
class Will:
    topic: bytes
    payload: bytes
    qos: int = 0
    retain: bool = False


def connect(client_id: bytes, keepalive: int, *, username: bytes = b"", password: bytes = b"",
            clean_session: bool = True, will: Will | None = None) -> bytes:
    """A CONNECT. As the firmware does, an empty username/password is left out entirely."""
    flags = 0
    if username:
        flags |= 0x80
    if password:
        flags |= 0x40
    if clean_session:
        flags |= 0x02
    payload = _str(client_id)
    if will is not None:
        flags |= 0x04 | ((will.qos & 3) << 3) | (0x20 if will.retain else 0)
        payload += _str(will.topic) + _str(will.payload)
    if username:
        payload += _str(username)
    if password:
        payload += _str(password)
    var = _str(b"MQTT") + bytes([4, flags]) + (keepalive & 0xFFFF).to_bytes(2, "big")
    return packet(CONNECT, 0, var + payload)


def publish(topic: bytes, payload: bytes, qos: int = 0, retain: bool = False,
            message_id: int = 0, dup: bool = False) -> bytes:
    flags = ((qos & 3) << 1) | (1 if retain else 0) | (8 if dup else 0)
    var = _str(topic) + (message_id.to_bytes(2, "big") if qos else b"")
    return packet(PUBLISH, flags, var + payload)


def subscribe(message_id: int, topic: bytes, qos: int) -> bytes:
    return packet(SUBSCRIBE, 2, message_id.to_bytes(2, "big") + _str(topic) + bytes([qos & 3]))


def unsubscribe(message_id: int, topic: bytes) -> bytes:
    return packet(UNSUBSCRIBE, 2, message_id.to_bytes(2, "big") + _str(topic))


def ack(kind: int, message_id: int) -> bytes:
    """PUBACK / PUBREC / PUBREL / PUBCOMP (PUBREL carries the reserved flags 0b0010)."""
    return packet(kind, 2 if kind == PUBREL else 0, message_id.to_bytes(2, "big"))


def connack(return_code: int, session_present: bool = False) -> bytes:
    return packet(CONNACK, 0, bytes([1 if session_present else 0, return_code & 0xFF]))


def suback(message_id: int, *codes: int) -> bytes:
    return packet(SUBACK, 0, message_id.to_bytes(2, "big") + bytes(codes))


PINGREQ_BYTES = packet(PINGREQ, 0, b"")
PINGRESP_BYTES = packet(PINGRESP, 0, b"")
DISCONNECT_BYTES = packet(DISCONNECT, 0, b"")


def message_id(p: Packet) -> int:
    if len(p.body) < 2:
        raise WireError(f"packet type {p.kind} too short for a message id")
    return int.from_bytes(p.body[:2], "big")


def parse_publish(p: Packet) -> Publish:
    body = p.body
    if len(body) < 2:
        raise WireError("PUBLISH too short for its topic length")
    tlen = int.from_bytes(body[:2], "big")
    qos = (p.flags >> 1) & 3
    if qos == 3:
        raise WireError("PUBLISH with QoS 3")
    end = 2 + tlen
    mid = 0
    if qos:
        if len(body) < end + 2:
            raise WireError("PUBLISH too short for its message id")
        mid = int.from_bytes(body[end:end + 2], "big")
        end += 2
    elif len(body) < end:
        raise WireError("PUBLISH too short for its topic")
    return Publish(body[2:2 + tlen], body[end:], qos, p.flags & 1, 1 if p.flags & 8 else 0,
                   mid, (PUBLISH << 4) | p.flags)


class StreamParser:
    """Splits a byte stream into packets; ``limit`` bounds one packet (the receive buffer)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        """Complete packets in ``data`` (plus what was pending); raises WireError on a length
        field longer than four bytes or a packet bigger than the limit."""
        self.buf += data
        out: list[Packet] = []
        while len(self.buf) >= 2:
            first = self.buf[0]
            kind = first >> 4  # reserved types (0, 15) are returned: the reader decides
            n, mult, i = 0, 1, 1
            while True:
                if i >= len(self.buf):
                    return out  # length bytes still arriving
                byte = self.buf[i]
                n += (byte & 0x7F) * mult
                mult *= 128
                i += 1
                if not byte & 0x80:
                    break
                if i > 4:
                    raise WireError("remaining length longer than four bytes")
            if 1 + (i - 1) + n > self.limit:
                raise WireError(f"packet of {n} bytes exceeds the {self.limit}-byte receive "
                                "buffer")
            if len(self.buf) < i + n:
                return out
            out.append(Packet(kind, first & 0x0F, bytes(self.buf[i:i + n])))
            del self.buf[:i + n]
        return out

    def reset(self) -> None:
        self.buf.clear()
