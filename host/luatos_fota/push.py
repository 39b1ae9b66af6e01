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
* Answers, device to server: any JSON object (``{"fota_result":0}``...) is recorded as the
  device's last answer; ``{"ping":x}`` is answered with ``{"pong":x}`` and is not recorded.
* Errors, server to device: ``{"error":"<what is wrong>","code":"<kind>"}``. A garbage line
  gets such a reply and the connection stays; a line longer than ``max_line`` bytes gets one and
  the connection is closed.

Robustness: a device that stops reading cannot stall anyone else; each write is bounded by
``max_buffer`` bytes queued and ``write_timeout`` seconds of draining, after which that device
is dropped. The hub has no database: ``on_event(kind, device_id, data)`` lets the server core
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

from luatos_common.deviceid import normalize_device_id

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
    """Return (device_id, info) from a login object, or raise ValueError saying what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"login must be a JSON object, got {type(obj).__name__}")
    body = obj.get("login", obj)
    if not isinstance(body, dict):
        raise ValueError(
            f'"login" must be an object like {{"device":"C8C2C68CD602","version":"..."}}, '
            f"got {type(body).__name__}"
        )
    device = None
    for key in DEVICE_ID_KEYS:
        if body.get(key) not in (None, ""):
            device = body[key]
            break
    if device is None:
        raise ValueError(f"login has no device id (one of {', '.join(DEVICE_ID_KEYS)})")
    if not isinstance(device, str):
        raise ValueError(f"login device id must be a string, got {type(device).__name__}")
    device = device.strip()
    if (
        not device
        or len(device) > MAX_DEVICE_ID_LEN
        or any(c.isspace() or not c.isprintable() for c in device)
    ):
        raise ValueError(
            f"login device id {device[:80]!r} must be 1..{MAX_DEVICE_ID_LEN} printable characters "
            "without spaces"
        )
    device = normalize_device_id(device)
    info: dict[str, str] = {}
    for key in LOGIN_INFO_KEYS:
        value = body.get(key)
        if value is not None:
            info[key] = value if isinstance(value, str) else json.dumps(value)
    return device, info


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str
    connected_at: float
    device: str | None = None
    info: dict[str, str] = field(default_factory=dict)
    last_seen: float = 0.0
    last_write: float = 0.0
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False
    close_reason: str = ""


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
        devices_remembered: int = 10_000,
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
        self._server = await asyncio.start_server(self._handle, host, port, limit=self.max_line + 1)
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
        for device, conn in sorted(self._by_device.items()):
            answers = self._answers.get(device)
            last = answers[-1] if answers else None
            result.append(
                {
                    "device": device,
                    **{k: conn.info.get(k) for k in LOGIN_INFO_KEYS},
                    "peer": conn.peer,
                    "connected_at": iso_utc(conn.connected_at),
                    "last_seen": iso_utc(conn.last_seen),
                    "last_answer": last["message"] if last else None,
                    "last_answer_at": last["at"] if last else None,
                }
            )
        return result

    @property
    def online_count(self) -> int:
        """How many devices are logged in (cheap: for metrics scrapes)."""
        return len(self._by_device)

    def is_online(self, device_id: str) -> bool:
        return normalize_device_id(device_id) in self._by_device

    def answers(self, device_id: str) -> list[dict[str, Any]]:
        """Answers the device sent (also after it went offline), oldest first:
        ``[{"at": iso-time, "message": {...}}, ...]``."""
        return list(self._answers.get(normalize_device_id(device_id), ()))

    # ------------------------------------------------------------------ pushing

    async def push(self, device_ids: list[str], message: dict[str, Any]) -> dict[str, str]:
        """Send one command to each device; result per device: "sent", "offline" or "error: ...".

        Devices are written concurrently, so a slow one delays only its own result (at most
        ``write_timeout`` + ``min_gap``). Raises ValueError/TypeError for a message no device
        could take.
        """
        data = encode_command(message)
        if isinstance(device_ids, str):
            raise TypeError("push device_ids must be a list of ids, not one string")
        # One write per device, even when the caller names it twice in different spellings.
        normalized = {given: normalize_device_id(given) for given in device_ids}
        unique = list(dict.fromkeys(normalized.values()))
        results = await asyncio.gather(*(self._push_one(d, data) for d in unique))
        by_device = dict(zip(unique, results, strict=True))
        for device, result in by_device.items():
            await self._emit("push", device, {"message": message, "result": result})
        return {given: by_device[norm] for given, norm in normalized.items()}

    def push_threadsafe(
        self, device_ids: list[str], message: dict[str, Any], timeout: float = 60.0
    ) -> dict[str, str]:
        """push() from a thread that is not the hub's event loop thread."""
        if self._loop is None:
            raise RuntimeError("PushHub not started")
        future = asyncio.run_coroutine_threadsafe(self.push(device_ids, message), self._loop)
        return future.result(timeout)

    async def _push_one(self, device: str, data: bytes) -> str:
        conn = self._by_device.get(device)
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
        self._connections.add(conn)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.sndbuf:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
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
            timeout = self.login_timeout if conn.device is None else self.idle_timeout
            try:
                line = await asyncio.wait_for(conn.reader.readuntil(b"\n"), timeout)
            except TimeoutError:
                what = "no login" if conn.device is None else "idle"
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
            ok = await self._line(conn, line)
            bad_lines = 0 if ok else bad_lines + 1
            if bad_lines >= MAX_BAD_LINES:
                what = "without a login" if conn.device is None else "in a row"
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
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            return await self._protocol_error(
                conn, f"invalid JSON at column {exc.colno}: {exc.msg}", "bad_json"
            )
        if not isinstance(obj, dict):
            return await self._protocol_error(
                conn, f"expected a JSON object, got {type(obj).__name__}", "not_object"
            )
        if conn.device is None or "login" in obj:
            return await self._login(conn, obj)
        if "ping" in obj and len(obj) == 1:
            await self._reply(conn, {"pong": obj["ping"]})
            return True
        self._record_answer(conn.device, obj)
        await self._emit("answer", conn.device, obj)
        return True

    async def _login(self, conn: _Connection, obj: dict[str, Any]) -> bool:
        try:
            device, info = parse_login(obj)
        except ValueError as exc:
            return await self._protocol_error(conn, f"bad login: {exc}", "bad_login")
        if conn.device is not None and device != conn.device:
            return await self._protocol_error(
                conn,
                f"already logged in as {conn.device!r}, cannot log in as {device!r}",
                "bad_login",
            )
        previous = self._by_device.get(device)
        if previous is not None and previous is not conn:
            await self._close_with(
                previous, "replaced by a new login of the same device", "replaced"
            )
            await self._emit("replaced", device, {"old_peer": previous.peer, "new_peer": conn.peer})
        conn.device = device
        conn.info = info
        self._by_device[device] = conn
        await self._reply(conn, {"login": "ok"})
        await self._emit("login", device, {"peer": conn.peer, **info})
        return True

    async def _protocol_error(self, conn: _Connection, message: str, code: str) -> bool:
        await self._reply(conn, {"error": message, "code": code})
        await self._emit("protocol_error", conn.device or "", {"peer": conn.peer, "error": message})
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
        self._connections.discard(conn)
        transport = conn.writer.transport
        if graceful:
            transport.close()  # flushes what is buffered, then closes
        else:
            transport.abort()
        if conn.device is not None and self._by_device.get(conn.device) is conn:
            del self._by_device[conn.device]
            if self._loop is not None and not self._loop.is_closed():
                task = self._loop.create_task(
                    self._emit("disconnect", conn.device, {"peer": conn.peer, "reason": reason})
                )
                self._background.add(task)  # keep a reference until it ran
                task.add_done_callback(self._background.discard)
        log.info("push connection %s (%s) closed: %s", conn.peer, conn.device, reason)

    def _record_answer(self, device: str, obj: dict[str, Any]) -> None:
        entries = self._answers.get(device)
        if entries is None:
            entries = self._answers[device] = deque(maxlen=self.answers_kept)
            while len(self._answers) > self.devices_remembered:
                self._answers.popitem(last=False)
        else:
            self._answers.move_to_end(device)
        entries.append({"at": iso_utc(time.time()), "message": obj})

    async def _emit(self, kind: str, device: str, data: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        try:
            result = self.on_event(kind, device, data)
            if inspect.isawaitable(result):
                await result
        except Exception:  # an audit hook must not break the channel
            log.exception("push on_event(%s, %s) failed", kind, device)


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
