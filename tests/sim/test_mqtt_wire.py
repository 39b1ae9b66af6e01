"""The MQTT 3.1.1 wire functions: bytes as the specification lays them out, and a stream
split back into packets whatever the chunking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from luatos_sim import mqtt_wire as w


def test_connect_layout_with_will_and_credentials() -> None:
    pkt = w.connect(b"id", 240, username=b"u", password=b"p",
                    will=w.Will(b"t", b"bye", qos=1, retain=True))
    assert pkt[0] == 0x10
    body = pkt[2:]
    assert body[:7] == b"\x00\x04MQTT\x04"
    assert body[7] == 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02
    assert body[8:10] == (240).to_bytes(2, "big")
    assert body[10:] == b"\x00\x02id\x00\x01t\x00\x03bye\x00\x01u\x00\x01p"


def test_connect_without_credentials_leaves_them_out() -> None:
    pkt = w.connect(b"", 60, clean_session=False)
    assert pkt[9] == 0  # no flags at all: the firmware's zeroed broker struct
    assert pkt.endswith(b"\x00\x00")


def test_publish_and_parse_round_trip_big_payload() -> None:
    payload = bytes(range(256)) * 1000
    pkt = w.publish(b"a/b", payload, qos=2, retain=True, message_id=513, dup=True)
    (p,) = w.StreamParser(1 << 20).feed(pkt)
    pub = w.parse_publish(p)
    assert (pub.topic, pub.payload, pub.qos, pub.retain, pub.dup, pub.message_id) == \
        (b"a/b", payload, 2, 1, 1, 513)


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=6), st.integers(1, 50))
def test_stream_split_any_chunking(payloads: list[bytes], chunk: int) -> None:
    stream = b"".join(w.publish(b"t", p) for p in payloads) + w.PINGRESP_BYTES
    parser = w.StreamParser(10_000)
    got: list[w.Packet] = []
    for i in range(0, len(stream), chunk):
        got += parser.feed(stream[i:i + chunk])
    assert [w.parse_publish(p).payload for p in got[:-1]] == payloads
    assert got[-1].kind == w.PINGRESP


def test_limits_and_malformed_input() -> None:
    with pytest.raises(w.WireError, match="exceeds the 100-byte"):
        w.StreamParser(100).feed(w.publish(b"t", b"x" * 200))
    with pytest.raises(w.WireError, match="longer than four bytes"):
        w.StreamParser(100).feed(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(w.WireError):
        w.parse_publish(w.Packet(w.PUBLISH, 2, b"\x00\x05ab"))
    (p,) = w.StreamParser(100).feed(b"\x00\x00")  # reserved type: returned, the reader ignores it
    assert p.kind == 0
