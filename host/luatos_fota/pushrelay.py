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

import sqlalchemy as sa

from luatos_common.deviceid import normalize_device_id

from . import schema as t
from .push import LOGIN_INFO_KEYS, PushHub, encode_command, iso_utc
from .store import Store

log = logging.getLogger("luatos_fota.pushrelay")

#: Finished outbox rows are kept this long (they show what a device was sent), then pruned.
OUTBOX_KEEP_S = 24 * 3600.0


#: What a withdrawn outbox row says (the asker reports its own message instead).
WITHDRAWN = "error: not picked up in time"


class PushRelay:
    def __init__(self, store: Store, hub: PushHub, *, instance_id: str | None = None, poll_s: float = 0.2,
                 heartbeat_s: float = 2.0, stale_s: float = 10.0, wait_s: float = 5.0) -> None:
        self.store = store
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
        now = time.time()
        addr = f"{self.hub.address[0]}:{self.hub.address[1]}" if self.hub.address else ""
        with self.store.db.tx() as c:
            c.execute(t.push_instances.delete().where(t.push_instances.c.instance_id == self.instance_id))
            c.execute(t.push_instances.insert().values(instance_id=self.instance_id, push_address=addr,
                                                       started_at=now, heartbeat_at=now))

    def _unregister(self) -> None:
        with self.store.db.tx() as c:
            c.execute(t.push_sessions.delete().where(t.push_sessions.c.instance_id == self.instance_id))
            c.execute(t.push_outbox.update()
                      .where(t.push_outbox.c.instance_id == self.instance_id,
                             t.push_outbox.c.state.in_(("queued", "sending")))
                      .values(state="done", result="offline", done_at=time.time()))
            c.execute(t.push_instances.delete().where(t.push_instances.c.instance_id == self.instance_id))

    # ------------------------------------------------------------------ hub events

    async def on_hub_event(self, kind: str, device: str, data: dict[str, Any]) -> None:
        """``PushHub.on_event``: queue the session change (returns at once)."""
        if kind in ("login", "disconnect", "answer"):
            self._events.put_nowait((kind, device, data))

    async def _apply_events(self) -> None:
        while True:
            kind, device, data = await self._events.get()
            try:
                if kind == "login":
                    if self.hub.is_online(device):  # not already gone again
                        await asyncio.to_thread(self._session_login, device, data)
                elif kind == "disconnect":
                    # A new connection of the same device may have replaced the old one (its
                    # login can be reported before the old one's disconnect): keep its row.
                    if not self.hub.is_online(device):
                        await asyncio.to_thread(self._session_logout, device)
                elif kind == "answer":
                    await asyncio.to_thread(self._session_answer, device, data)
            except asyncio.CancelledError:
                raise
            except Exception:  # an outage: the heartbeat's reconcile repairs the rows later
                log.exception("push relay: session %s of %s not written", kind, device)

    def _session_login(self, device: str, data: dict[str, Any]) -> None:
        info = {k: data[k] for k in LOGIN_INFO_KEYS if k in data}
        with self.store.db.tx() as c:
            c.execute(t.push_sessions.delete().where(t.push_sessions.c.device_key == device))
            c.execute(t.push_sessions.insert().values(
                device_key=device, instance_id=self.instance_id, peer=str(data.get("peer", ""))[:100],
                info=json.dumps(info, ensure_ascii=False), connected_at=time.time()))

    def _session_logout(self, device: str) -> None:
        with self.store.db.tx() as c:  # only our own row: the device may have moved on already
            c.execute(t.push_sessions.delete().where(t.push_sessions.c.device_key == device,
                                                     t.push_sessions.c.instance_id == self.instance_id))

    def _session_answer(self, device: str, answer: dict[str, Any]) -> None:
        with self.store.db.tx() as c:
            c.execute(t.push_sessions.update()
                      .where(t.push_sessions.c.device_key == device,
                             t.push_sessions.c.instance_id == self.instance_id)
                      .values(last_answer=json.dumps(answer, ensure_ascii=False)[:4000],
                              last_answer_at=time.time()))

    # ------------------------------------------------------------------ queries

    def _live(self, *columns: Any) -> sa.Select[Any]:
        """Sessions held by instances whose heartbeat is recent."""
        j = t.push_sessions.join(t.push_instances,
                                 t.push_instances.c.instance_id == t.push_sessions.c.instance_id)
        return (sa.select(*columns).select_from(j)
                .where(t.push_instances.c.heartbeat_at >= time.time() - self.stale_s))

    def _live_sessions(self) -> list[dict[str, Any]]:
        q = self._live(t.push_sessions).order_by(t.push_sessions.c.device_key)
        with self.store.db.ro() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    async def online(self) -> list[dict[str, Any]]:
        """Every device logged in to a live instance, in the same shape as ``PushHub.online()``
        plus ``instance`` (and ``here``: held by this instance)."""
        local = {o["device"]: o for o in self.hub.online()}
        try:
            rows = await asyncio.to_thread(self._live_sessions)
        except Exception:  # database outage: this instance's own devices are still known
            log.exception("push relay: sessions unreadable, listing this instance's devices only")
            rows = []
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            key = r["device_key"]
            if r["instance_id"] == self.instance_id:
                if key not in local:  # disconnected a moment ago; the hub is the truth here
                    continue
                out[key] = {**local[key], "instance": self.instance_id, "here": True}
                continue
            info = json.loads(r["info"] or "{}")
            out[key] = {"device": key, **{k: info.get(k) for k in LOGIN_INFO_KEYS}, "peer": r["peer"],
                        "connected_at": iso_utc(r["connected_at"]), "last_seen": None,
                        "last_answer": json.loads(r["last_answer"]) if r["last_answer"] else None,
                        "last_answer_at": iso_utc(r["last_answer_at"]) if r["last_answer_at"] else None,
                        "instance": r["instance_id"],
                        "here": False}
        for key, o in local.items():  # logged in, session row not written yet
            out.setdefault(key, {**o, "instance": self.instance_id, "here": True})
        return [out[k] for k in sorted(out)]

    # ------------------------------------------------------------------ pushing

    async def push(self, device_ids: list[str], message: dict[str, Any]) -> dict[str, str]:
        """Like ``PushHub.push``, for devices on any live instance. A device on another instance
        gets the result its hub reported: "sent", "offline" or "error: ..."."""
        encode_command(message)  # refuse a bad message before anything is queued
        if isinstance(device_ids, str):
            raise TypeError("push device_ids must be a list of ids, not one string")
        normalized = {given: normalize_device_id(given) for given in device_ids}
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

    async def _push_remote(self, devices: list[str], message: dict[str, Any]) -> dict[str, str]:
        queued = await asyncio.to_thread(self._enqueue, devices, message)
        results = {d: "offline" for d in devices if d not in queued}
        deadline = time.monotonic() + self.wait_s
        pending = dict(queued)  # device -> outbox id
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(min(0.05, self.poll_s))
            done = await asyncio.to_thread(self._results, list(pending.values()))
            for device, row_id in list(pending.items()):
                if row_id in done:
                    results[device] = done[row_id]
                    del pending[device]
        if pending:
            late = await asyncio.to_thread(self._give_up, list(pending.values()))
            for device, row_id in pending.items():
                results[device] = late.get(row_id) or (
                    f"error: the instance holding this device did not send it within {self.wait_s:g} s")
        return results

    def _enqueue(self, devices: list[str], message: dict[str, Any]) -> dict[str, int]:
        text = json.dumps(message, ensure_ascii=False)
        out: dict[str, int] = {}
        with self.store.db.tx() as c:
            rows = c.execute(self._live(t.push_sessions.c.device_key, t.push_sessions.c.instance_id)
                             .where(t.push_sessions.c.device_key.in_(devices),
                                    t.push_sessions.c.instance_id != self.instance_id)).all()
            for device, instance in rows:
                res = c.execute(t.push_outbox.insert().values(
                    instance_id=instance, origin=self.instance_id, device_key=device, message=text,
                    created_at=time.time(), state="queued"))
                pk = res.inserted_primary_key
                assert pk is not None
                out[device] = int(pk[0])
        return out

    def _results(self, ids: list[int]) -> dict[int, str]:
        with self.store.db.ro() as c:
            return {int(r[0]): str(r[1]) for r in c.execute(
                sa.select(t.push_outbox.c.id, t.push_outbox.c.result)
                .where(t.push_outbox.c.id.in_(ids), t.push_outbox.c.state == "done"))}

    def _give_up(self, ids: list[int]) -> dict[int, str]:
        """Withdraw rows nobody claimed (so they are never sent late); return results of rows
        that finished meanwhile."""
        with self.store.db.tx() as c:
            c.execute(t.push_outbox.update()
                      .where(t.push_outbox.c.id.in_(ids), t.push_outbox.c.state == "queued")
                      .values(state="done", result=WITHDRAWN, done_at=time.time()))
        done = self._results(ids)
        return {i: r for i, r in done.items() if r != WITHDRAWN}

    # ------------------------------------------------------------------ the owner's side

    async def _run(self) -> None:
        next_beat = 0.0
        while True:
            try:
                if time.monotonic() >= next_beat:
                    await asyncio.to_thread(self._heartbeat, sorted(o["device"] for o in self.hub.online()))
                    next_beat = time.monotonic() + self.heartbeat_s
                # One row at a time: a row is "sending" only while it is really being sent, so
                # an asker that gives up can still withdraw every row behind it.
                while (claimed := await asyncio.to_thread(self._claim_one)) is not None:
                    row_id, device, text = claimed
                    try:
                        result = (await self.hub.push([device], json.loads(text)))[device]
                    except Exception as exc:  # noqa: BLE001 - report, never kill the loop
                        result = f"error: {exc}"
                    await asyncio.to_thread(self._finish, row_id, result)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database outage: try again next round
                log.exception("push relay round failed")
            await asyncio.sleep(self.poll_s)

    def _heartbeat(self, here: list[str]) -> None:
        """Beat, and make this instance's session rows match its hub's connections (repairs
        whatever an outage or a lost event left behind)."""
        now = time.time()
        with self.store.db.tx() as c:
            res = c.execute(t.push_instances.update()
                            .where(t.push_instances.c.instance_id == self.instance_id)
                            .values(heartbeat_at=now))
            if res.rowcount == 0:  # removed by someone (or a restore): put it back
                c.execute(t.push_instances.insert().values(instance_id=self.instance_id, push_address="",
                                                           started_at=now, heartbeat_at=now))
            mine = {r[0] for r in c.execute(sa.select(t.push_sessions.c.device_key)
                                           .where(t.push_sessions.c.instance_id == self.instance_id))}
            gone = mine - set(here)
            if gone:
                c.execute(t.push_sessions.delete().where(t.push_sessions.c.instance_id == self.instance_id,
                                                         t.push_sessions.c.device_key.in_(gone)))
            missing = [d for d in here if d not in mine]
            if missing:  # the device's row is ours now, wherever it pointed before
                c.execute(t.push_sessions.delete().where(t.push_sessions.c.device_key.in_(missing)))
                c.execute(t.push_sessions.insert(), [
                    {"device_key": d, "instance_id": self.instance_id, "peer": "", "info": "{}",
                     "connected_at": now} for d in missing])
            c.execute(t.push_outbox.delete().where(t.push_outbox.c.created_at < now - OUTBOX_KEEP_S))

    def _claim_one(self) -> tuple[int, str, str] | None:
        while True:
            with self.store.db.ro() as c:
                row = c.execute(sa.select(t.push_outbox.c.id, t.push_outbox.c.device_key,
                                          t.push_outbox.c.message)
                                .where(t.push_outbox.c.instance_id == self.instance_id,
                                       t.push_outbox.c.state == "queued")
                                .order_by(t.push_outbox.c.id).limit(1)).first()
            if row is None:
                return None
            with self.store.db.tx() as c:
                res = c.execute(t.push_outbox.update()
                                .where(t.push_outbox.c.id == row[0], t.push_outbox.c.state == "queued")
                                .values(state="sending"))
            if res.rowcount == 1:
                return int(row[0]), str(row[1]), str(row[2])
            # withdrawn by its asker meanwhile: that row is done, look at the next

    def _finish(self, row_id: int, result: str) -> None:
        with self.store.db.tx() as c:
            c.execute(t.push_outbox.update().where(t.push_outbox.c.id == row_id)
                      .values(state="done", result=result[:500], done_at=time.time()))
