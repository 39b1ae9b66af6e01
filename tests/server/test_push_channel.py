"""The TCP push channel over real loopback sockets."""

from __future__ import annotations

import asyncio
import functools
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from luatos_fota.push import PushHub, encode_command, fota_command, parse_login, running_hub

STEP = 10.0  # generous bound for any single network step (not a timing assertion)


def run_async(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


class Device:
    """A newline-JSON device client on a real socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, hub: PushHub, rcvbuf: int | None = None) -> Device:
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        else:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", hub.port))
            reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    @classmethod
    async def login(cls, hub: PushHub, device: str, **info: str) -> Device:
        dev = await cls.connect(hub)
        await dev.send({"login": {"device": device, **info}})
        assert await dev.recv() == {"login": "ok"}
        return dev

    async def send(self, obj: Any) -> None:
        await self.send_raw(json.dumps(obj).encode() + b"\n")

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self) -> Any:
        line = await asyncio.wait_for(self.reader.readline(), STEP)
        assert line.endswith(b"\n"), f"connection closed, got {line!r}"
        return json.loads(line)

    async def closed(self) -> bool:
        """True once the server has closed the connection (reads past any pending lines)."""
        while True:
            line = await asyncio.wait_for(self.reader.readline(), STEP)
            if not line:
                return True

    def close(self) -> None:
        self.writer.close()


async def wait_for(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(int(STEP / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def started(**options: Any) -> PushHub:
    options.setdefault("min_gap", 0.0)
    hub = PushHub(**options)
    await hub.start("127.0.0.1", 0)
    return hub


# --------------------------------------------------------------------------- pure helpers


def test_fota_command_uses_string_true_and_raw_url() -> None:
    assert fota_command("http://h:1/p.bin", "2001.002.000") == {
        "fota": "true",
        "url": "###http://h:1/p.bin",
        "version": "2001.002.000",
    }
    assert fota_command("###http://h/p.bin") == {"fota": "true", "url": "###http://h/p.bin"}


def test_encode_command_rejects_what_a_device_would_choke_on() -> None:
    assert encode_command({"fota": "true", "url": "###x"}) == b'{"fota":"true","url":"###x"}\n'
    with pytest.raises(ValueError, match='"fota" must be the string "true"'):
        encode_command({"fota": True, "url": "###x"})
    with pytest.raises(TypeError, match="JSON object"):
        encode_command([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1024-byte device receive buffer"):
        encode_command({"fota": "true", "url": "###" + "x" * 1100})


def test_parse_login_nested_flat_and_errors() -> None:
    assert parse_login(
        {"login": {"device": "C8C2C68CD602", "version": "2001.001.000", "core": "V2001"}}
    ) == (
        "C8C2C68CD602",
        {"version": "2001.001.000", "core": "V2001"},
    )
    assert parse_login({"device": "c8:c2:c6:8c:d6:02"}) == ("C8C2C68CD602", {})
    assert parse_login({"device": "861234567890123"}) == ("861234567890123", {})
    assert parse_login({"mac": "AABBCCDDEEFF", "version": "1.2.3"}) == (
        "AABBCCDDEEFF",
        {"version": "1.2.3"},
    )
    with pytest.raises(ValueError, match="no device id"):
        parse_login({"login": {"version": "1"}})


def test_parse_login_keeps_non_string_values_as_json() -> None:
    """Mutation audit: a login dropping non-string values went unnoticed. A device that sends
    a number or a table keeps it (as JSON text), so the operator sees what it said."""
    assert parse_login({"device": "C8C2C68CD602", "version": 2001001, "core": ["V2001"],
                        "project_key": None, "firmware_name": True}) == (
        "C8C2C68CD602", {"version": "2001001", "core": '["V2001"]', "firmware_name": "true"})
    with pytest.raises(ValueError, match="must be a string"):
        parse_login({"device": 12})
    with pytest.raises(ValueError, match="printable characters"):
        parse_login({"device": "has space"})


# --------------------------------------------------------------------------- sockets


@run_async
async def test_hundred_devices_push_reaches_exactly_the_targets() -> None:
    events: list[tuple[str, str]] = []
    hub = await started(on_event=lambda kind, dev, data: events.append((kind, dev)))
    try:
        ids = [f"C8C2C68C{i:04X}" for i in range(100)]
        devices = dict(
            zip(
                ids,
                await asyncio.gather(
                    *(Device.login(hub, d, version="2001.001.000", core="V2001") for d in ids)
                ),
                strict=True,
            )
        )
        online = hub.online()
        assert [o["device"] for o in online] == sorted(ids)
        assert online[0]["version"] == "2001.001.000" and online[0]["core"] == "V2001"
        assert online[0]["peer"].startswith("127.0.0.1:")

        targets = ids[::3]
        command = fota_command("http://127.0.0.1:8/p.bin", "2001.002.000")
        result = await hub.push(targets + ["NOT-CONNECTED"], command)
        assert result == {**{t: "sent" for t in targets}, "NOT-CONNECTED": "offline"}
        for t in targets:
            assert await devices[t].recv() == command
        # Nobody else got anything: a ping round-trip on each other device returns the pong first.
        others = [d for d in ids if d not in targets]
        for d in others:
            await devices[d].send({"ping": d})
        for d in others:
            assert await devices[d].recv() == {"pong": d}
        assert ("push", targets[0]) in events and ("login", ids[-1]) in events
        for dev in devices.values():
            dev.close()
        await wait_for(lambda: not hub.online(), "all devices to go offline")
    finally:
        await hub.stop()


@run_async
async def test_each_command_is_its_own_line_and_spaced_per_device() -> None:
    hub = await started(min_gap=0.05)
    try:
        dev = await Device.login(hub, "A1")
        result = await asyncio.gather(
            hub.push(["A1"], {"fota": "true", "url": "###u1"}),
            hub.push(["A1"], {"fota": "true", "url": "###u2"}),
        )
        assert result == [{"A1": "sent"}, {"A1": "sent"}]
        got = {json.dumps(await dev.recv()), json.dumps(await dev.recv())}
        assert got == {'{"fota": "true", "url": "###u1"}', '{"fota": "true", "url": "###u2"}'}
    finally:
        await hub.stop()


@run_async
async def test_answers_recorded_and_kept_after_disconnect() -> None:
    events: list[tuple[str, str, dict[str, Any]]] = []

    async def on_event(kind: str, dev: str, data: dict[str, Any]) -> None:
        events.append((kind, dev, data))

    hub = await started(on_event=on_event)
    try:
        dev = await Device.login(hub, "C8C2C68CD602", version="2001.001.000")
        await dev.send({"fota_result": 0, "version": "2001.002.000"})
        await dev.send({"heartbeat": 1})  # a sign of life, never an answer
        await dev.send({"note": "rebooting"})  # no result-like key: not recorded
        await dev.send({"ack": "fota", "status": "started"})
        await wait_for(lambda: len(hub.answers("C8C2C68CD602")) == 2, "two answers")
        answers = hub.answers("C8C2C68CD602")
        assert [a["message"] for a in answers] == [
            {"fota_result": 0, "version": "2001.002.000"},
            {"ack": "fota", "status": "started"},
        ]
        assert answers[0]["at"].endswith("Z")
        assert hub.online()[0]["last_answer"] == {"ack": "fota", "status": "started"}
        dev.close()
        await wait_for(lambda: not hub.online(), "device offline")
        assert len(hub.answers("C8C2C68CD602")) == 2
        assert hub.answers("never-seen") == []
        await wait_for(lambda: any(e[0] == "disconnect" for e in events), "disconnect event")
        assert ("answer", "C8C2C68CD602", {"ack": "fota", "status": "started"}) in events
        assert not any(e[0] == "answer" and ("note" in e[2] or "heartbeat" in e[2]) for e in events)
    finally:
        await hub.stop()


@run_async
async def test_garbage_gets_json_error_and_connection_survives() -> None:
    hub = await started()
    try:
        dev = await Device.connect(hub)
        await dev.send_raw(b"hello there\n")
        reply = await dev.recv()
        assert reply["code"] == "bad_json" and "invalid JSON at column 1" in reply["error"]
        await dev.send_raw(b"\xff\xfe{}\n")
        assert (await dev.recv())["code"] == "bad_utf8"
        await dev.send([1, 2, 3])
        assert (await dev.recv())["code"] == "not_object"
        await dev.send({"version": "1"})  # valid JSON, but no device id
        reply = await dev.recv()
        assert reply["code"] == "bad_login" and "no device id" in reply["error"]
        await dev.send({"device": "C8C2C68CD602"})  # flat login still accepted afterwards
        assert await dev.recv() == {"login": "ok"}
        await dev.send_raw(b"{not json\n")
        assert (await dev.recv())["code"] == "bad_json"
        await dev.send_raw(b"null\n")
        assert (await dev.recv())["code"] == "not_object"
        assert await hub.push(["C8C2C68CD602"], {"x": 1}) == {"C8C2C68CD602": "sent"}
        assert await dev.recv() == {"x": 1}
        # An operator may type the MAC in lower case with colons.
        assert await hub.push(["c8:c2:c6:8c:d6:02"], {"x": 2}) == {"c8:c2:c6:8c:d6:02": "sent"}
        assert await dev.recv() == {"x": 2}
        assert hub.answers("C8C2C68CD602") == []  # errors are not answers
    finally:
        await hub.stop()


@run_async
async def test_oversized_line_disconnects_only_that_client() -> None:
    hub = await started(max_line=4096)
    try:
        good = await Device.login(hub, "GOOD")
        bad = await Device.login(hub, "BAD")
        await bad.send_raw(b'{"x":"' + b"a" * 5000 + b'"}\n')
        reply = await bad.recv()
        assert reply["code"] == "line_too_long" and "4096" in reply["error"]
        assert await bad.closed()
        await wait_for(lambda: not hub.is_online("BAD"), "BAD offline")
        # A line without any newline at all is cut off the same way.
        raw = await Device.connect(hub)
        await raw.send_raw(b"z" * 10000)
        assert (await raw.recv())["code"] == "line_too_long"
        assert await raw.closed()
        # A line of exactly max_line bytes is fine.
        body = b'{"result":"' + b"p" * (4096 - 13) + b'"}'
        assert len(body) == 4096
        await good.send_raw(body + b"\n")
        await wait_for(lambda: len(hub.answers("GOOD")) == 1, "GOOD answer")
        assert await hub.push(["GOOD", "BAD"], {"ok": 1}) == {"GOOD": "sent", "BAD": "offline"}
        assert await good.recv() == {"ok": 1}
    finally:
        await hub.stop()


@run_async
async def test_relogin_replaces_previous_connection() -> None:
    events: list[tuple[str, str]] = []
    hub = await started(on_event=lambda kind, dev, data: events.append((kind, dev)))
    try:
        first = await Device.login(hub, "C8C2C68CD602", version="2001.001.000")
        second = await Device.login(hub, "C8C2C68CD602", version="2001.002.000")
        reply = await first.recv()
        assert reply["code"] == "replaced"
        assert await first.closed()
        online = hub.online()
        assert len(online) == 1 and online[0]["version"] == "2001.002.000"
        assert await hub.push(["C8C2C68CD602"], {"n": 2}) == {"C8C2C68CD602": "sent"}
        assert await second.recv() == {"n": 2}
        assert ("replaced", "C8C2C68CD602") in events
        # Logging in as someone else on a logged-in connection is refused.
        await second.send({"login": {"device": "OTHER"}})
        assert (await second.recv())["code"] == "bad_login"
        assert [o["device"] for o in hub.online()] == ["C8C2C68CD602"]
    finally:
        await hub.stop()


@run_async
async def test_login_and_idle_timeouts_disconnect() -> None:
    hub = await started(login_timeout=0.2, idle_timeout=0.3)
    try:
        silent = await Device.connect(hub)
        reply = await silent.recv()
        assert reply["code"] == "timeout" and "no login" in reply["error"]
        assert await silent.closed()
        idle = await Device.login(hub, "IDLE")
        reply = await idle.recv()
        assert reply["code"] == "timeout" and "idle" in reply["error"]
        assert await idle.closed()
        assert hub.online() == []
    finally:
        await hub.stop()


@run_async
async def test_slow_reader_does_not_block_others_and_is_dropped() -> None:
    # A long write timeout: the slow push stays blocked while the fast push goes through.
    hub = await started(write_timeout=60.0, max_buffer=32 * 1024, sndbuf=8192)
    try:
        slow = await Device.connect(hub, rcvbuf=4096)
        await slow.send({"device": "SLOW"})
        assert await slow.recv() == {"login": "ok"}  # ...and never reads again
        fast = await Device.login(hub, "FAST")
        filler = {"fota": "true", "url": "###http://127.0.0.1/" + "f" * 900}
        slow_results: list[str] = []

        async def flood() -> None:
            for _ in range(1000):
                result = (await hub.push(["SLOW"], filler))["SLOW"]
                slow_results.append(result)
                if result != "sent":
                    return

        flooding = asyncio.create_task(flood())
        conn = hub._by_device["SLOW"]
        await wait_for(
            lambda: conn.writer.transport.get_write_buffer_size() > 0,
            "slow client's buffer to fill",
        )
        assert not flooding.done()  # blocked in drain, waiting on the slow client
        assert await hub.push(["FAST"], {"n": 1}) == {"FAST": "sent"}
        assert await fast.recv() == {"n": 1}
        assert not flooding.done()  # the fast push did not wait for the slow one
        await hub.stop()  # frees the blocked writer
        await asyncio.wait_for(flooding, STEP)
        assert slow_results[-1].startswith("error: ") or slow_results[-1] == "offline"
    finally:
        await hub.stop()


@run_async
async def test_slow_reader_dropped_after_write_timeout() -> None:
    hub = await started(write_timeout=0.2, max_buffer=32 * 1024, sndbuf=8192)
    try:
        slow = await Device.connect(hub, rcvbuf=4096)
        await slow.send({"device": "SLOW"})
        assert await slow.recv() == {"login": "ok"}
        fast = await Device.login(hub, "FAST")
        filler = {"fota": "true", "url": "###http://127.0.0.1/" + "f" * 900}
        results = []
        for _ in range(2000):
            result = await hub.push(["SLOW", "FAST"], filler)
            results.append(result)
            if result["SLOW"] != "sent":
                break
            assert await fast.recv() == filler
        assert results[-1]["SLOW"].startswith("error: slow reader")
        assert results[-1]["FAST"] == "sent"
        assert not hub.is_online("SLOW") and hub.is_online("FAST")
        assert (await hub.push(["SLOW"], {"n": 1})) == {"SLOW": "offline"}
    finally:
        await hub.stop()


def test_running_hub_in_thread_for_sync_callers() -> None:
    with running_hub(min_gap=0.0) as hub:
        sock = socket.create_connection(("127.0.0.1", hub.port), timeout=STEP)
        sock.sendall(b'{"login":{"device":"SYNC1","version":"1.0.1"}}\n')
        stream = sock.makefile("rb")
        assert json.loads(stream.readline()) == {"login": "ok"}
        assert hub.push_threadsafe(["SYNC1", "SYNC2"], fota_command("http://h/p.bin")) == {
            "SYNC1": "sent",
            "SYNC2": "offline",
        }
        assert json.loads(stream.readline()) == {"fota": "true", "url": "###http://h/p.bin"}
        sock.close()


@run_async
async def test_one_write_per_device_whatever_the_spelling() -> None:
    hub = await started()
    try:
        dev = await Device.login(hub, "C8C2C68CD602")
        result = await hub.push(["C8C2C68CD602", "c8-c2-c6-8c-d6-02"], {"n": 1})
        assert result == {"C8C2C68CD602": "sent", "c8-c2-c6-8c-d6-02": "sent"}
        assert await dev.recv() == {"n": 1}
        await dev.send({"ping": "after"})
        assert await dev.recv() == {"pong": "after"}  # and not a second {"n": 1}
        with pytest.raises(TypeError, match="list of device keys"):
            await hub.push("C8C2C68CD602", {"n": 2})  # type: ignore[arg-type]
    finally:
        await hub.stop()


@run_async
async def test_a_stream_of_garbage_is_cut_off_but_the_hub_lives() -> None:
    events: list[tuple[str, str]] = []
    hub = await started(on_event=lambda kind, dev, data: events.append((kind, dev)))
    try:
        noisy = await Device.login(hub, "NOISY")
        await noisy.send_raw(b"not json\n" * 25)
        codes = []
        while True:
            line = await asyncio.wait_for(noisy.reader.readline(), STEP)
            if not line:
                break
            codes.append(json.loads(line)["code"])
        assert codes == ["bad_json"] * 20 + ["too_many_errors"]
        assert events.count(("protocol_error", "NOISY")) == 20
        await wait_for(lambda: not hub.is_online("NOISY"), "NOISY offline")
        other = await Device.login(hub, "OTHER")  # the hub still serves everyone else
        assert await hub.push(["OTHER"], {"n": 1}) == {"OTHER": "sent"}
        assert await other.recv() == {"n": 1}
    finally:
        await hub.stop()
