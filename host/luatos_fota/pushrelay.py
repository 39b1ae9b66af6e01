"""The push channel across server instances that share one database.

Why: behind a load balancer each device's push socket lands on one instance, and an operator's
push request on any instance. Without a relay an instance sees only its own sockets, so "who is
online" is a fraction of the fleet and a push reaches only the devices that happen to share the
instance the operator hit. Through the database every instance sees every session, and a push
for a device held elsewhere is handed to the instance that holds it.

How: each instance has a heartbeat row (``push_instances``); a login writes the device's
session row (``push_sessions``) naming its instance, a disconnect removes it. A push for a
device on another live instance becomes an ``push_outbox`` row; the owner polls for its rows
every ``poll_s``, claims one (``queued`` → ``sending``, so exactly one instance sends it), sends
it through its hub and stores the hub's result, which the asking instance returns. A session of
an instance whose heartbeat is older than ``stale_s`` is not online (the instance died).
Polling, not LISTEN/NOTIFY, so the same code works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from luatos_common.deviceid import normalize_device_key

from .push import LOGIN_INFO_KEYS, PushHub, encode_command, iso_utc
from .repo_push import PushSessionsRepo

log = logging.getLogger("luatos_fota.pushrelay")

#: Finished outbox rows are kept this long (they show what a device was sent), then pruned.
OUTBOX_KEEP_S = 24 * 3600.0


#: What a withdrawn outbox row says (the asker reports its own message instead).
WITHDRAWN = "error: not picked up in time"


class PushRelay:
    def __init__(self, sessions: PushSessionsRepo, hub: PushHub, *, instance_id: str | None = None, poll_s: float = 0.2,
                 heartbeat_s: float = 2.0, stale_s: float = 10.0, wait_s: float = 5.0) -> None:
        self.sessions = sessions
        self.hub = hub
        self.instance_id = instance_id or uuid.uuid4().hex[:16]
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.wait_s = wait_s
        self._task: asyncio.Task[None] | None = None
        # Session writes are applied one at a time, in the order the hub reported them, by
        # one consumer; the hub's connection handlers only enqueue (never wait on the database).
        self._events: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await asyncio.to_thread(self._register)
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="push-relay")
        self._writer = loop.create_task(self._apply_events(), name="push-relay-sessions")

    async def stop(self) -> None:
        for task in (self._task, self._writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._writer = None
        try:
            await asyncio.to_thread(self._unregister)
        except Exception:  # a database outage at shutdown: the heartbeat goes stale instead
            log.exception("push relay: could not remove this instance's rows")

    def _register(self) -> None:
        addr = f"{self.hub.address[0]}:{self.hub.address[1]}" if self.hub.address else ""
        self.sessions.register(self.instance_id, addr)

    def _unregister(self) -> None:
        self.sessions.unregister(self.instance_id)

    # ------------------------------------------------------------------ hub events

    async def on_hub_event(self, kind: str, device_key: str, data: dict[str, Any]) -> None:
        """``PushHub.on_event``: queue the session change (returns at once)."""
        if kind in ("login", "disconnect", "answer"):
            self._events.put_nowait((kind, device_key, data))

    async def _apply_events(self) -> None:
        while True:
            kind, device_key, data = await self._events.get()
            try:
                if kind == "login":
                    if self.hub.is_online(device_key):  # not already gone again
                        await asyncio.to_thread(self._session_login, device_key, data)
                elif kind == "disconnect":
                    # A new connection of the same device may have replaced the old one (its
                    # login can be reported before the old one's disconnect): keep its row.
                    if not self.hub.is_online(device_key):
                        await asyncio.to_thread(self._session_logout, device_key)
                elif kind == "answer":
                    await asyncio.to_thread(self._session_answer, device_key, data)
            except asyncio.CancelledError:
                raise
            except Exception:  # an outage: the heartbeat's reconcile repairs the rows later
                log.exception("push relay: session %s of %s not written", kind, device_key)

    def _session_login(self, device_key: str, data: dict[str, Any]) -> None:
        info = {k: data[k] for k in LOGIN_INFO_KEYS if k in data}
        self.sessions.login(device_key, self.instance_id, str(data.get("peer", "")), info)

    def _session_logout(self, device_key: str) -> None:
        self.sessions.logout(device_key, self.instance_id)

    def _session_answer(self, device_key: str, answer: dict[str, Any]) -> None:
        self.sessions.answer(device_key, self.instance_id, answer)

    # ------------------------------------------------------------------ queries

    async def online(self) -> list[dict[str, Any]]:
        """Every device logged in to a live instance, in the same shape as ``PushHub.online()``
        plus ``instance`` (and ``here``: held by this instance)."""
        local = {o["device"]: o for o in self.hub.online()}
        try:
            rows = await asyncio.to_thread(self.sessions.live, self.stale_s)
        except Exception:  # database outage: this instance's own devices are still known
            log.exception("push relay: sessions unreadable, listing this instance's devices only")
            rows = []
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            key = r.device_key
            if r.instance_id == self.instance_id:
                if key not in local:  # disconnected a moment ago; the hub is the truth here
                    continue
                out[key] = {**local[key], "instance": self.instance_id, "here": True}
                continue
            out[key] = {"device": key, **{k: r.info.get(k) for k in LOGIN_INFO_KEYS}, "peer": r.peer,
                        "connected_at": iso_utc(r.connected_at), "last_seen": None,
                        "last_answer": r.last_answer,
                        "last_answer_at": iso_utc(r.last_answer_at) if r.last_answer_at else None,
                        "instance": r.instance_id,
                        "here": False}
        for key, o in local.items():  # logged in, session row not written yet
            out.setdefault(key, {**o, "instance": self.instance_id, "here": True})
        return [out[k] for k in sorted(out)]

    # ------------------------------------------------------------------ pushing

    async def push(self, device_keys: list[str], message: dict[str, Any]) -> dict[str, str]:
        """Like ``PushHub.push``, for devices on any live instance. A device on another instance
        gets the result its hub reported: "sent", "offline" or "error: ..."."""
        encode_command(message)  # refuse a bad message before anything is queued
        if isinstance(device_keys, str):
            raise TypeError("push device_keys must be a list of ids, not one string")
        normalized = {given: normalize_device_key(given) for given in device_keys}
        unique = list(dict.fromkeys(normalized.values()))
        local = [d for d in unique if self.hub.is_online(d)]
        results: dict[str, str] = {}
        if local:
            results.update(await self.hub.push(local, message))
        remote = [d for d in unique if d not in results]
        if remote:
            try:
                results.update(await self._push_remote(remote, message))
            except Exception as exc:  # the local ones went out: report, do not fail them all
                log.exception("push relay: remote push failed")
                results.update({d: f"error: push relay unavailable ({type(exc).__name__})" for d in remote})
        return {given: results[norm] for given, norm in normalized.items()}

    async def _push_remote(self, device_keys: list[str], message: dict[str, Any]) -> dict[str, str]:
        queued = await asyncio.to_thread(self.sessions.enqueue, self.instance_id, device_keys, message, self.stale_s)
        results = {d: "offline" for d in device_keys if d not in queued}
        deadline = time.monotonic() + self.wait_s
        pending = dict(queued)  # device key -> outbox id
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(min(0.05, self.poll_s))
            done = await asyncio.to_thread(self.sessions.results, list(pending.values()))
            for device_key, row_id in list(pending.items()):
                if row_id in done:
                    results[device_key] = done[row_id]
                    del pending[device_key]
        if pending:
            late = await asyncio.to_thread(self._give_up, list(pending.values()))
            for device_key, row_id in pending.items():
                results[device_key] = late.get(row_id) or (
                    f"error: the instance holding this device did not send it within {self.wait_s:g} s")
        return results

    def _give_up(self, ids: list[int]) -> dict[int, str]:
        """Withdraw rows nobody claimed (so they are never sent late); return results of rows
        that finished meanwhile."""
        self.sessions.withdraw(ids, WITHDRAWN)
        done = self.sessions.results(ids)
        return {i: r for i, r in done.items() if r != WITHDRAWN}

    # ------------------------------------------------------------------ the owner's side

    async def _run(self) -> None:
        next_beat = 0.0
        while True:
            try:
                if time.monotonic() >= next_beat:
                    here = {o["device"]: (str(o.get("peer") or ""),
                                          {k: o[k] for k in LOGIN_INFO_KEYS if o.get(k) is not None})
                            for o in self.hub.online()}
                    await asyncio.to_thread(self.sessions.heartbeat, self.instance_id, here, OUTBOX_KEEP_S)
                    next_beat = time.monotonic() + self.heartbeat_s
                # One row at a time: a row is "sending" only while it is really being sent, so
                # an asker that gives up can still withdraw every row behind it.
                while (item := await asyncio.to_thread(self.sessions.claim_one, self.instance_id)) is not None:
                    try:
                        result = (await self.hub.push([item.device_key], json.loads(item.message)))[item.device_key]
                    except Exception as exc:  # noqa: BLE001 - report, never kill the loop
                        result = f"error: {exc}"
                    await asyncio.to_thread(self.sessions.finish, item.id, result)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database outage: try again next round
                log.exception("push relay round failed")
            await asyncio.sleep(self.poll_s)
