"""TCP push channel: devices keep a socket open, operators push FOTA commands down it.

Why this exists: a device on a 4-hour check timer would otherwise wait hours for an urgent
fix. The vendor demo ("Scenario 2: TCP push") keeps a TCP client connected to the server and
starts `libfota2.request` when it receives `{"fota":"true","url":"..."}`.

Wire protocol (UTF-8, one JSON object per line, lines end with "\\n"):

* Login, first line from the device, either nested or flat::

      {"login": {"device": "C8C2C68CD602", "project_key": "...", "firmware_name": "...",
                 "version": "2001.001.000", "core": "V2001"}}
      {"device": "C8C2C68CD602", "version": "2001.001.000"}

  The device id may also be given as ``mac``, ``imei`` or ``uid``. The server answers
  ``{"login":"ok"}``. Until a device has logged in, every other line gets an error reply, and a
  device that does not log in within ``login_timeout`` seconds is disconnected.
* Commands, server to device: whatever dict the operator pushes, typically
  ``{"fota":"true","url":"###http://host:port/pkg.bin","version":"..."}`` (``"true"`` is a
  string: the vendor receiver compares it with ``=="true"``). Each command is written with its
  own ``write`` and consecutive commands to one device are spaced by ``min_gap`` seconds,
  because the vendor receiver has no framing and needs each socket read to hold exactly one
  JSON document.
* Answers, device to server: an object with a result-like key (``RESULT_KEYS``:
  ``{"fota_result":0}``, ``{"ack":"fota",...}``) is recorded as the device's last answer;
  ``{"ping":x}`` is answered with ``{"pong":x}``; heartbeats (``{"heartbeat":n}``) and anything
  else only count as a sign of life (never recorded: a flood of them must not grow anything).
* Authentication: a login may carry ``"token"`` (deviceauth.py); the ``authenticate`` hook decides
  whether it proves the device id, and a login never replaces a live session of the same device
  unless it presents the same credential.
* Limits: ``line_rate``/``line_burst`` lines per second per connection (closed above), JSON
  nested at most ``max_depth`` deep, ``max_connections`` in total and per IP, TCP keepalive
  (``keepalive``: idle, interval, count) so a vanished peer is dropped within
  idle + interval x count seconds, ``idle_timeout`` without any line.
* Errors, server to device: ``{"error":"<what is wrong>","code":"<kind>"}``. A garbage line
  gets such a reply and the connection stays; a line longer than ``max_line`` bytes gets one and
  the connection is closed.

Robustness: a device that stops reading cannot stall anyone else; each write is bounded by
``max_buffer`` bytes queued and ``write_timeout`` seconds of draining, after which that device
is dropped. The hub has no database: ``on_event(kind, device_key, data)`` lets the server core
write audit entries (kinds: login, replaced, disconnect, answer, push, protocol_error).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from luatos_common.deviceid import normalize_device_key

from .deviceauth import same_secret
from .jsonlimits import loads_limited

log = logging.getLogger("luatos_fota.push")

EventCallback = Callable[[str, str, dict[str, Any]], Awaitable[None] | None]

#: The vendor receiver drains the socket into a 1024-byte buffer; a longer command is split.
DEVICE_RECEIVE_BUFFER = 1024
#: Keys that may carry the device id in a login, in order of preference.
DEVICE_ID_KEYS = ("device", "mac", "imei", "uid")
#: Login fields kept and shown in online().
LOGIN_INFO_KEYS = ("project_key", "firmware_name", "version", "core")
MAX_DEVICE_ID_LEN = 64
#: Consecutive rejected lines after which a connection is closed (each one is audited).
MAX_BAD_LINES = 20
#: Longest answer kept whole in memory (serialised); longer ones keep only their result fields.
ANSWER_KEPT_BYTES = 1024
#: Keys that make a device line an answer worth recording (results and acknowledgements).
RESULT_KEYS = ("fota_result", "result", "result_code", "ack")


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fota_command(url: str, version: str | None = None, *, raw_url: bool = True) -> dict[str, str]:
    """Build the push command the vendor receiver understands.

    ``raw_url`` prefixes "###" so libfota2 uses the URL exactly as given instead of appending
    its own query string (the package URL is already complete).
    """
    if not url:
        raise ValueError("fota_command: url is empty")
    if raw_url and not url.startswith("###"):
        url = "###" + url
    command = {"fota": "true", "url": url}
    if version:
        command["version"] = version
    return command


def encode_command(message: dict[str, Any]) -> bytes:
    """Validate and encode one command; raise ValueError naming what a device would choke on."""
    if not isinstance(message, dict):
        raise TypeError(
            f"push message must be a JSON object (dict), got {type(message).__name__}: a top-level "
            "number, boolean or null kills the vendor receiver's VM"
        )
    if "fota" in message and message["fota"] is not None and not isinstance(message["fota"], str):
        raise ValueError(
            f'push message field "fota" must be the string "true", not {message["fota"]!r} '
            f'({type(message["fota"]).__name__}): the vendor receiver compares with == "true"'
        )
    try:
        text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"push message is not JSON-serialisable: {exc}") from exc
    data = text.encode("utf-8") + b"\n"
    if len(data) > DEVICE_RECEIVE_BUFFER:
        raise ValueError(
            f"push message is {len(data)} bytes encoded, over the {DEVICE_RECEIVE_BUFFER}-byte "
            "device receive buffer: a vendor receiver would split it into two reads"
        )
    return data


def parse_login(obj: Any) -> tuple[str, dict[str, str]]:
    """Return (device_key, info) from a login object, or raise ValueError saying what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"login must be a JSON object, got {type(obj).__name__}")
    body = obj.get("login", obj)
    if not isinstance(body, dict):
        raise ValueError(
            f'"login" must be an object like {{"device":"C8C2C68CD602","version":"..."}}, '
            f"got {type(body).__name__}"
        )
    device_key = None
    for key in DEVICE_ID_KEYS:
        if body.get(key) not in (None, ""):
            device_key = body[key]
            break
    if device_key is None:
        raise ValueError(f"login has no device id (one of {', '.join(DEVICE_ID_KEYS)})")
    token = body.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > 200):
        raise ValueError("login token must be a string of at most 200 characters")
    if not isinstance(device_key, str):
        raise ValueError(f"login device id must be a string, got {type(device_key).__name__}")
    device_key = device_key.strip()
    if (
        not device_key
        or len(device_key) > MAX_DEVICE_ID_LEN
        or any(c.isspace() or not c.isprintable() for c in device_key)
    ):
        raise ValueError(
            f"login device id {device_key[:80]!r} must be 1..{MAX_DEVICE_ID_LEN} printable characters "
            "without spaces"
        )
    device_key = normalize_device_key(device_key)
    info: dict[str, str] = {}
    for key in LOGIN_INFO_KEYS:
        value = body.get(key)
        if value is not None:
            info[key] = value if isinstance(value, str) else json.dumps(value)
    return device_key, info


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str
    connected_at: float
    device_key: str | None = None
    info: dict[str, str] = field(default_factory=dict)
    last_seen: float = 0.0
    last_write: float = 0.0
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False
    close_reason: str = ""
    credential: str | None = None
    ip: str = ""
    tokens: float = 0.0  # line-rate bucket
    tokens_at: float = 0.0


class PushHub:
    """Keeps device connections and pushes commands to them.

    Run it on the event loop of the web server (start it in the app's lifespan) so admin
    handlers can ``await hub.push(...)``; from another thread use :meth:`push_threadsafe`.
    """

    def __init__(
        self,
        *,
        on_event: EventCallback | None = None,
        max_line: int = 4096,
        login_timeout: float = 15.0,
        idle_timeout: float | None = 3600.0,
        write_timeout: float = 5.0,
        max_buffer: int = 64 * 1024,
        min_gap: float = 0.2,
        sndbuf: int | None = 64 * 1024,
        answers_kept: int = 20,
        answers_bytes: int = 8 << 20,
        devices_remembered: int = 10_000,
        authenticate: Callable[[str, dict[str, str], str | None], Awaitable[str | None]] | None = None,
        line_rate: float = 2.0,
        line_burst: float = 30.0,
        max_depth: int = 32,
        max_connections: int = 20_000,
        max_connections_per_ip: int = 1_000,
        keepalive: tuple[int, int, int] | None = (60, 10, 3),
        ssl: Any = None,
    ) -> None:
        self.on_event = on_event
        self.max_line = max_line
        self.login_timeout = login_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.max_buffer = max_buffer
        self.min_gap = min_gap
        self.sndbuf = sndbuf
        self.answers_kept = answers_kept
        self.devices_remembered = devices_remembered
        self.answers_bytes = answers_bytes
        self._answer_bytes = 0
        self.authenticate = authenticate
        self.line_rate = line_rate
        self.line_burst = line_burst
        self.max_depth = max_depth
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.keepalive = keepalive
        self.ssl = ssl
        self._per_ip: dict[str, int] = {}
        self.refused_connections = 0
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._by_device: dict[str, _Connection] = {}
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._answers: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self.address: tuple[str, int] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on host:port (0 picks a free port); return the bound address."""
        if self._server is not None:
            raise RuntimeError("PushHub already started")
        self._loop = asyncio.get_running_loop()
        # limit: a line may be max_line bytes plus its "\n"; readuntil fails past that.
        self._server = await asyncio.start_server(self._handle, host, port, limit=self.max_line + 1,
                                                  ssl=self.ssl)
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        log.info("push channel listening on %s:%d", *self.address)
        return self.address

    @property
    def port(self) -> int:
        if self.address is None:
            raise RuntimeError("PushHub not started")
        return self.address[1]

    async def stop(self) -> None:
        """Stop listening and close every device connection."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            self._drop(conn, "server shutting down")
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None

    # ------------------------------------------------------------------ queries

    def online(self) -> list[dict[str, Any]]:
        """Logged-in devices, sorted by device id."""
        result = []
        for device_key, conn in sorted(self._by_device.items()):
            answers = self._answers.get(device_key)
            last = answers[-1] if answers else None
            result.append(
                {
                    "device": device_key,
                    **{k: conn.info.get(k) for k in LOGIN_INFO_KEYS},
                    "peer": conn.peer,
                    "connected_at": iso_utc(conn.connected_at),
                    "last_seen": iso_utc(conn.last_seen),
                    "last_answer": last["message"] if last else None,
                    "last_answer_at": last["at"] if last else None,
                }
            )
        return result

    def peer_ip(self, device_key: str) -> str:
        """The address a logged-in device connects from ("" when offline)."""
        conn = self._by_device.get(normalize_device_key(device_key))
        return conn.ip if conn is not None else ""

    @property
    def online_count(self) -> int:
        """How many devices are logged in (cheap: for metrics scrapes)."""
        return len(self._by_device)

    def is_online(self, device_key: str) -> bool:
        return normalize_device_key(device_key) in self._by_device

    def answers(self, device_key: str) -> list[dict[str, Any]]:
        """Answers the device sent (also after it went offline), oldest first:
        ``[{"at": iso-time, "message": {...}}, ...]``."""
        return [{"at": e["at"], "message": e["message"]}
                for e in self._answers.get(normalize_device_key(device_key), ())]

    # ------------------------------------------------------------------ pushing

    async def push(self, device_keys: list[str], message: dict[str, Any]) -> dict[str, str]:
        """Send one command to each device; result per device: "sent", "offline" or "error: ...".

        Devices are written concurrently, so a slow one delays only its own result (at most
        ``write_timeout`` + ``min_gap``). Raises ValueError/TypeError for a message no device
        could take.
        """
        data = encode_command(message)
        if isinstance(device_keys, str):
            raise TypeError("push device_keys must be a list of device keys, not one string")
        # One write per device, even when the caller names it twice in different spellings.
        normalized = {given: normalize_device_key(given) for given in device_keys}
        unique = list(dict.fromkeys(normalized.values()))
        results = await asyncio.gather(*(self._push_one(d, data) for d in unique))
        by_device = dict(zip(unique, results, strict=True))
        for device_key, result in by_device.items():
            await self._emit("push", device_key, {"message": message, "result": result})
        return {given: by_device[norm] for given, norm in normalized.items()}

    def push_threadsafe(
        self, device_keys: list[str], message: dict[str, Any], timeout: float = 60.0
    ) -> dict[str, str]:
        """push() from a thread that is not the hub's event loop thread."""
        if self._loop is None:
            raise RuntimeError("PushHub not started")
        future = asyncio.run_coroutine_threadsafe(self.push(device_keys, message), self._loop)
        return future.result(timeout)

    async def _push_one(self, device_key: str, data: bytes) -> str:
        conn = self._by_device.get(device_key)
        if conn is None or conn.closed:
            return "offline"
        return await self._send(conn, data)

    async def _send(self, conn: _Connection, data: bytes) -> str:
        """Write one document in its own write; drop the connection if it cannot keep up."""
        async with conn.send_lock:
            if conn.closed:
                return "offline"
            wait = conn.last_write + self.min_gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                if conn.closed:
                    return "offline"
            transport = conn.writer.transport
            queued = transport.get_write_buffer_size()
            if queued + len(data) > self.max_buffer:
                reason = f"slow reader: {queued} bytes still unsent (limit {self.max_buffer})"
                self._drop(conn, reason)
                return "error: " + reason
            try:
                conn.writer.write(data)
                conn.last_write = time.monotonic()
                await asyncio.wait_for(conn.writer.drain(), self.write_timeout)
            except TimeoutError:
                reason = f"slow reader: write not drained within {self.write_timeout:g} s"
                self._drop(conn, reason)
                return "error: " + reason
            except (ConnectionError, OSError, RuntimeError) as exc:
                reason = f"connection lost: {exc.__class__.__name__}: {exc}"
                self._drop(conn, reason)
                return "error: " + reason
            return "sent"

    async def _reply(self, conn: _Connection, obj: dict[str, Any]) -> None:
        await self._send(conn, json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    # ------------------------------------------------------------------ connection handling

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        sock = writer.get_extra_info("socket")
        peername = writer.get_extra_info("peername") or ("?", 0)
        conn = _Connection(reader, writer, f"{peername[0]}:{peername[1]}", time.time())
        conn.last_seen = conn.connected_at
        conn.ip = str(peername[0])
        conn.tokens, conn.tokens_at = self.line_burst, time.monotonic()
        if (len(self._connections) >= self.max_connections
                or self._per_ip.get(conn.ip, 0) >= self.max_connections_per_ip):
            self.refused_connections += 1
            with contextlib.suppress(Exception):
                writer.write(b'{"error":"too many connections; retry later","code":"busy"}\n')
                writer.transport.close()
            self._handlers.discard(task)
            return
        self._connections.add(conn)
        self._per_ip[conn.ip] = self._per_ip.get(conn.ip, 0) + 1
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.sndbuf:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            if self.keepalive:
                set_keepalive(sock, *self.keepalive)
        # Let the transport buffer up to max_buffer before drain() starts waiting.
        writer.transport.set_write_buffer_limits(high=self.max_buffer // 2)
        try:
            await self._serve(conn)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # never let one device kill the hub
            log.exception("push connection %s failed", conn.peer)
            self._drop(conn, f"internal error: {exc}")
        finally:
            self._drop(conn, conn.close_reason or "connection closed")
            self._handlers.discard(task)

    async def _serve(self, conn: _Connection) -> None:
        bad_lines = 0
        while not conn.closed:
            timeout = self.login_timeout if conn.device_key is None else self.idle_timeout
            try:
                line = await asyncio.wait_for(conn.reader.readuntil(b"\n"), timeout)
            except TimeoutError:
                what = "no login" if conn.device_key is None else "idle"
                await self._close_with(conn, f"{what} timeout after {timeout:g} s", "timeout")
                return
            except asyncio.LimitOverrunError:
                await self._close_with(
                    conn, f"line longer than {self.max_line} bytes", "line_too_long"
                )
                return
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    await self._line(conn, exc.partial)  # last line without "\n"
                conn.close_reason = "closed by device"
                return
            except (ConnectionError, OSError) as exc:
                conn.close_reason = f"connection lost: {exc}"
                return
            if len(line) > self.max_line + 1:  # defensive: readuntil already enforces it
                await self._close_with(
                    conn, f"line longer than {self.max_line} bytes", "line_too_long"
                )
                return
            if not line.strip():
                continue
            conn.last_seen = time.time()
            if not self._take_line_token(conn):
                await self._close_with(
                    conn, f"more than {self.line_rate:g} lines/s (burst {self.line_burst:g})", "rate_limited"
                )
                return
            ok = await self._line(conn, line)
            bad_lines = 0 if ok else bad_lines + 1
            if bad_lines >= MAX_BAD_LINES:
                what = "without a login" if conn.device_key is None else "in a row"
                await self._close_with(conn, f"{bad_lines} bad lines {what}", "too_many_errors")
                return

    async def _line(self, conn: _Connection, raw: bytes) -> bool:
        """Handle one line; return False when it was rejected."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return await self._protocol_error(
                conn,
                f"line is not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}",
                "bad_utf8",
            )
        try:
            obj = loads_limited(text, self.max_depth)
        except json.JSONDecodeError as exc:
            return await self._protocol_error(
                conn, f"invalid JSON at column {exc.colno}: {exc.msg}", "bad_json"
            )
        except (ValueError, RecursionError) as exc:
            return await self._protocol_error(conn, f"invalid JSON: {exc}", "bad_json")
        if not isinstance(obj, dict):
            return await self._protocol_error(
                conn, f"expected a JSON object, got {type(obj).__name__}", "not_object"
            )
        if conn.device_key is None or "login" in obj:
            return await self._login(conn, obj)
        if "ping" in obj and len(obj) == 1:
            await self._reply(conn, {"pong": obj["ping"]})
            return True
        if not any(k in obj for k in RESULT_KEYS):
            return True  # a heartbeat or anything else: a sign of life, never recorded
        self._record_answer(conn.device_key, obj)
        await self._emit("answer", conn.device_key, obj)
        return True

    def _take_line_token(self, conn: _Connection) -> bool:
        if self.line_rate <= 0:
            return True
        now = time.monotonic()
        conn.tokens = min(self.line_burst, conn.tokens + (now - conn.tokens_at) * self.line_rate)
        conn.tokens_at = now
        if conn.tokens < 1.0:
            return False
        conn.tokens -= 1.0
        return True

    async def _login(self, conn: _Connection, obj: dict[str, Any]) -> bool:
        try:
            device_key, info = parse_login(obj)
        except ValueError as exc:
            return await self._protocol_error(conn, f"bad login: {exc}", "bad_login")
        if conn.device_key is not None and device_key != conn.device_key:
            return await self._protocol_error(
                conn,
                f"already logged in as {conn.device_key!r}, cannot log in as {device_key!r}",
                "bad_login",
            )
        body = obj.get("login", obj)
        credential = body.get("token") if isinstance(body, dict) else None
        if self.authenticate is not None:
            refused = await self.authenticate(device_key, info, credential)
            if refused:
                await self._emit("protocol_error", device_key, {"peer": conn.peer, "error": f"login refused: {refused}"})
                await self._close_with(conn, f"login refused: {refused}", "unauthorized")
                return False
        previous = self._by_device.get(device_key)
        if previous is not None and previous is not conn and not same_secret(previous.credential, credential):
            await self._emit("protocol_error", device_key, {"peer": conn.peer,
                                                        "error": "login refused: session held with another credential"})
            await self._close_with(conn, "login refused: this device is logged in with another credential",
                                   "unauthorized")
            return False
        if previous is not None and previous is not conn:
            await self._close_with(
                previous, "replaced by a new login of the same device", "replaced"
            )
            await self._emit("replaced", device_key, {"old_peer": previous.peer, "new_peer": conn.peer})
        conn.device_key = device_key
        conn.info = info
        conn.credential = credential
        self._by_device[device_key] = conn
        await self._reply(conn, {"login": "ok"})
        await self._emit("login", device_key, {"peer": conn.peer, **info})
        return True

    async def _protocol_error(self, conn: _Connection, message: str, code: str) -> bool:
        await self._reply(conn, {"error": message, "code": code})
        await self._emit("protocol_error", conn.device_key or "", {"peer": conn.peer, "error": message})
        return False

    async def _close_with(self, conn: _Connection, reason: str, code: str) -> None:
        """Tell the device why, then close (best effort: a stuck device just gets dropped)."""
        if not conn.closed:
            data = json.dumps({"error": reason, "code": code}).encode() + b"\n"
            transport = conn.writer.transport
            if transport.get_write_buffer_size() + len(data) <= self.max_buffer:
                with contextlib.suppress(Exception):
                    conn.writer.write(data)
        self._drop(conn, reason, graceful=True)

    def _drop(self, conn: _Connection, reason: str, graceful: bool = False) -> None:
        if conn.closed:
            return
        conn.closed = True
        conn.close_reason = reason
        if conn in self._connections:
            self._connections.discard(conn)
            left = self._per_ip.get(conn.ip, 1) - 1
            if left > 0:
                self._per_ip[conn.ip] = left
            else:
                self._per_ip.pop(conn.ip, None)
        transport = conn.writer.transport
        if graceful:
            transport.close()  # flushes what is buffered, then closes
        else:
            transport.abort()
        if conn.device_key is not None and self._by_device.get(conn.device_key) is conn:
            del self._by_device[conn.device_key]
            if self._loop is not None and not self._loop.is_closed():
                task = self._loop.create_task(
                    self._emit("disconnect", conn.device_key, {"peer": conn.peer, "reason": reason})
                )
                self._background.add(task)  # keep a reference until it ran
                task.add_done_callback(self._background.discard)
        log.info("push connection %s (%s) closed: %s", conn.peer, conn.device_key, reason)

    def _record_answer(self, device_key: str, obj: dict[str, Any]) -> None:
        """Keep the answer in memory, bounded: at most ANSWER_KEPT_BYTES of each (a longer one is
        kept as its result fields only) and ``answers_bytes`` over all devices (oldest go)."""
        size = len(json.dumps(obj, ensure_ascii=False, default=str))
        if size > ANSWER_KEPT_BYTES:
            obj = {k: obj[k] for k in RESULT_KEYS if k in obj and len(str(obj[k])) <= 100}
            obj["truncated"] = size
            size = len(json.dumps(obj, default=str))
        entries = self._answers.get(device_key)
        if entries is None:
            entries = self._answers[device_key] = deque(maxlen=self.answers_kept)
            while len(self._answers) > self.devices_remembered:
                self._forget_oldest()
        else:
            self._answers.move_to_end(device_key)
        if len(entries) == entries.maxlen and entries:
            self._answer_bytes -= entries[0]["size"]
        entries.append({"at": iso_utc(time.time()), "message": obj, "size": size})
        self._answer_bytes += size
        while self._answer_bytes > self.answers_bytes and len(self._answers) > 1:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        _, gone = self._answers.popitem(last=False)
        self._answer_bytes -= sum(e["size"] for e in gone)

    async def _emit(self, kind: str, device_key: str, data: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        try:
            result = self.on_event(kind, device_key, data)
            if inspect.isawaitable(result):
                await result
        except Exception:  # an audit hook must not break the channel
            log.exception("push on_event(%s, %s) failed", kind, device_key)


def set_keepalive(sock: socket.socket, idle: int, interval: int, count: int) -> None:
    """TCP keepalive: a peer that vanished (power cut, lost coverage) is found within
    ``idle + interval * count`` seconds instead of the kernel's two hours."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, idle))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, interval))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, max(1, count))
        # Unacknowledged data (a push to a dead peer) gives up on the same schedule.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 1000 * (idle + interval * count))


@contextlib.contextmanager
def running_hub(host: str = "127.0.0.1", port: int = 0, **options: Any) -> Iterator[PushHub]:
    """Run a PushHub on its own event loop in a background thread (for sync code and tools).

    Use ``hub.push_threadsafe(...)`` from the calling thread.
    """
    hub = PushHub(**options)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(hub.start(host, port))
        except BaseException as exc:  # report bind errors to the caller
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="push-hub", daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        loop.close()
        raise failure[0]
    try:
        yield hub
    finally:
        asyncio.run_coroutine_threadsafe(hub.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
