"""The push channel under attack: line floods, deep JSON, idle and vanished peers, connection
floods. A real PushHub on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from luatos_fota.push import PushHub

STEP = 10.0  # bound on any single wait


async def _hub(**kw: Any) -> PushHub:
    hub = PushHub(**kw)
    await hub.start("127.0.0.1", 0)
    return hub


async def _lines(reader: asyncio.StreamReader) -> list[dict[str, Any]]:
    out = []
    while True:
        try:
            line = await asyncio.wait_for(reader.readline(), STEP)
        except TimeoutError:
            break
        if not line:
            break
        out.append(json.loads(line))
    return out


def test_line_flood_closes_the_connection_and_records_nothing_more() -> None:
    async def run() -> None:
        hub = await _hub(line_rate=2.0, line_burst=10.0)
        try:
            r, w = await asyncio.open_connection("127.0.0.1", hub.port)
            w.write(b'{"login":{"device":"C8C2C68CD602"}}\n')
            for i in range(200):
                w.write(b'{"fota_result":%d}\n' % i)
                w.write(b'{"heartbeat":%d}\n' % i)
            await w.drain()
            got = await _lines(r)
            assert got[-1]["code"] == "rate_limited", got[-3:]
            assert len(hub.answers("C8C2C68CD602")) <= 10  # the burst, then closed
            assert all("heartbeat" not in a["message"] for a in hub.answers("C8C2C68CD602"))
            w.close()
        finally:
            await hub.stop()

    asyncio.run(run())


def test_deep_json_gets_an_error_reply_and_the_socket_stays() -> None:
    async def run() -> None:
        hub = await _hub(max_line=8192)
        try:
            r, w = await asyncio.open_connection("127.0.0.1", hub.port)
            w.write(b'{"login":{"device":"C8C2C68CD602"}}\n')
            w.write(b"[" * 4000 + b"]" * 4000 + b"\n")
            w.write(b'{"ping":1}\n')
            await w.drain()
            first = json.loads(await asyncio.wait_for(r.readline(), STEP))
            deep = json.loads(await asyncio.wait_for(r.readline(), STEP))
            pong = json.loads(await asyncio.wait_for(r.readline(), STEP))
            assert first == {"login": "ok"} and deep["code"] == "bad_json" and "deep" in deep["error"]
            assert pong == {"pong": 1}
            w.close()
        finally:
            await hub.stop()

    asyncio.run(run())


def test_keepalive_is_set_and_idle_sockets_are_dropped() -> None:
    async def run() -> None:
        hub = await _hub(keepalive=(7, 3, 2), idle_timeout=1.0, login_timeout=1.0)
        try:
            r, w = await asyncio.open_connection("127.0.0.1", hub.port)
            w.write(b'{"login":{"device":"C8C2C68CD602"}}\n')
            await w.drain()
            await asyncio.wait_for(r.readline(), STEP)
            conn = next(iter(hub._connections))  # noqa: SLF001 - the server side of this socket
            sock = conn.writer.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 3
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 2
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 13000
            # idle (logged in, silent) and never-logged-in sockets are closed by the timeouts
            r2, w2 = await asyncio.open_connection("127.0.0.1", hub.port)
            closed = await asyncio.wait_for(_lines(r), STEP)
            closed2 = await asyncio.wait_for(_lines(r2), STEP)
            assert closed[-1]["code"] == "timeout" and closed2[-1]["code"] == "timeout"
            assert not hub.online()
            w.close()
            w2.close()
        finally:
            await hub.stop()

    asyncio.run(run())


def test_connection_flood_from_one_address_is_capped() -> None:
    async def run() -> None:
        hub = await _hub(max_connections_per_ip=5)
        try:
            held = [await asyncio.open_connection("127.0.0.1", hub.port) for _ in range(5)]
            await asyncio.sleep(0.1)
            r, w = await asyncio.open_connection("127.0.0.1", hub.port)
            answer = await _lines(r)
            assert answer and answer[0]["code"] == "busy"
            assert hub.refused_connections == 1
            for _, hw in held:
                hw.close()
            w.close()
        finally:
            await hub.stop()

    asyncio.run(run())


def test_login_cannot_replace_a_session_without_its_credential() -> None:
    async def run() -> None:
        hub = await _hub()
        try:
            r1, w1 = await asyncio.open_connection("127.0.0.1", hub.port)
            w1.write(b'{"login":{"device":"C8C2C68CD602","token":"secret-of-the-device"}}\n')
            await w1.drain()
            assert json.loads(await asyncio.wait_for(r1.readline(), STEP)) == {"login": "ok"}
            r2, w2 = await asyncio.open_connection("127.0.0.1", hub.port)
            w2.write(b'{"login":{"device":"C8C2C68CD602"}}\n')
            await w2.drain()
            refused = await _lines(r2)
            assert refused[-1]["code"] == "unauthorized"
            assert await hub.push(["C8C2C68CD602"], {"x": 1}) == {"C8C2C68CD602": "sent"}
            assert json.loads(await asyncio.wait_for(r1.readline(), STEP)) == {"x": 1}
            w1.close()
            w2.close()
        finally:
            await hub.stop()

    asyncio.run(run())
