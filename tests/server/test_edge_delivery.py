"""A client that half-closes while its answer is being prepared has hung up, and the answer's
``luatos.delivery`` must say so before the app sends anything (else a package the client never
got is counted as delivered: a flaky ``serve_aborted`` count in CI showed it).

asyncio orders the turn deterministically: the transport closes on EOF and drops every later
write at once, but ``connection_lost`` only runs on the next loop turn, after an app task that
was already scheduled. The app here sends in exactly that gap."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from luatos_fota.server import EdgeLimits, EdgeProtocol, edge_protocol


async def _answer_after_hangup(*, half_close: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    seen: dict[str, Any] = {}
    protocols: list[EdgeProtocol] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        delivery = scope["luatos.delivery"]
        proto = protocols[0]
        for _ in range(200_000 if half_close else 0):  # bounded: the EOF comes within a few turns
            if proto.transport.is_closing():
                break
            await asyncio.sleep(0)
        seen["closing"] = proto.transport.is_closing()
        seen["lost_before_send"] = delivery.lost
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"body"})
        seen["lost_after_send"] = delivery.lost
        seen["done"] = True

    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    config.load()
    state = ServerState()
    cls = edge_protocol(EdgeLimits())

    def factory() -> EdgeProtocol:
        p = cls(config=config, server_state=state, app_state={}, _loop=loop)
        protocols.append(p)
        return p

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        client.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        if half_close:
            client.shutdown(socket.SHUT_WR)
        for _ in range(500):  # 5 s at most
            if "done" in seen:
                break
            await asyncio.sleep(0.01)
        client.settimeout(2)
        got = b""
        try:
            while chunk := client.recv(4096):
                got += chunk
                if not half_close and got.endswith(b"body"):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
        seen["received"] = got
    finally:
        client.close()
        server.close()
        await server.wait_closed()
    return seen


def test_a_send_after_the_client_half_closed_is_known_lost_before_connection_lost_runs() -> None:
    seen = asyncio.run(_answer_after_hangup(half_close=True))
    assert seen["closing"] is True  # the app answered in the gap the test is about
    assert seen["lost_before_send"] is True
    assert seen["lost_after_send"] is True
    assert b"body" not in seen["received"]  # and indeed the client never got it


def test_a_client_that_stays_gets_its_answer_and_it_is_not_lost() -> None:
    seen = asyncio.run(_answer_after_hangup(half_close=False))
    assert seen["closing"] is False
    assert seen["lost_before_send"] is False and seen["lost_after_send"] is False
    assert seen["received"].endswith(b"body")
