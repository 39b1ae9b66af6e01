"""The push channel's shared state: which instance is alive (``push_instances``), which holds
each device's socket (``push_sessions``), and pushes handed from one instance to another
(``push_outbox``). The relay logic that uses it is pushrelay.py; every statement is here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from . import schema as t
from .db import Database
from .records import OutboxItem, PushSession

i_, s_, o_ = t.push_instances.c, t.push_sessions.c, t.push_outbox.c


class PushSessionsRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ instances

    def register(self, instance_id: str, push_address: str) -> None:
        now = time.time()
        with self.db.tx() as c:
            c.execute(t.push_instances.delete().where(i_.instance_id == instance_id))
            c.execute(t.push_instances.insert().values(instance_id=instance_id, push_address=push_address,
                                                       started_at=now, heartbeat_at=now))

    def unregister(self, instance_id: str) -> None:
        """The instance's rows go; pushes still queued for it are answered "offline"."""
        with self.db.tx() as c:
            c.execute(t.push_sessions.delete().where(s_.instance_id == instance_id))
            c.execute(t.push_outbox.update()
                      .where(o_.instance_id == instance_id, o_.state.in_(("queued", "sending")))
                      .values(state="done", result="offline", done_at=time.time()))
            c.execute(t.push_instances.delete().where(i_.instance_id == instance_id))

    def heartbeat(self, instance_id: str, here: Mapping[str, tuple[str, dict[str, Any]]],
                  outbox_keep_s: float) -> None:
        """Beat, and make the instance's session rows match ``here`` (device key -> peer and login
        info, as its hub holds them), which repairs whatever an outage or a lost event left
        behind; finished outbox rows older than ``outbox_keep_s`` go. A repaired row carries the
        hub's login info: a beat that wins the race with the login's own write (or deletes that
        write, under READ COMMITTED) must not leave a row that forgot the device's version."""
        now = time.time()
        with self.db.tx() as c:
            res = c.execute(t.push_instances.update().where(i_.instance_id == instance_id)
                            .values(heartbeat_at=now))
            if res.rowcount == 0:  # removed by someone (or a restore): put it back
                c.execute(t.push_instances.insert().values(instance_id=instance_id, push_address="",
                                                           started_at=now, heartbeat_at=now))
            mine = {r[0] for r in c.execute(sa.select(s_.device_key).where(s_.instance_id == instance_id))}
            gone = mine - set(here)
            if gone:
                c.execute(t.push_sessions.delete().where(s_.instance_id == instance_id, s_.device_key.in_(gone)))
            missing = [k for k in here if k not in mine]
            if missing:  # the device's row is ours now, wherever it pointed before
                c.execute(t.push_sessions.delete().where(s_.device_key.in_(missing)))
                c.execute(t.push_sessions.insert(), [
                    {"device_key": k, "instance_id": instance_id, "peer": here[k][0][:100],
                     "info": json.dumps(here[k][1], ensure_ascii=False), "connected_at": now}
                    for k in missing])
            c.execute(t.push_outbox.delete().where(o_.created_at < now - outbox_keep_s))

    # ------------------------------------------------------------------ sessions

    def login(self, device_key: str, instance_id: str, peer: str, info: dict[str, Any]) -> None:
        with self.db.tx() as c:
            c.execute(t.push_sessions.delete().where(s_.device_key == device_key))
            c.execute(t.push_sessions.insert().values(
                device_key=device_key, instance_id=instance_id, peer=peer[:100],
                info=json.dumps(info, ensure_ascii=False), connected_at=time.time()))

    def logout(self, device_key: str, instance_id: str) -> None:
        """Only the instance's own row: the device may have moved on already."""
        with self.db.tx() as c:
            c.execute(t.push_sessions.delete().where(s_.device_key == device_key, s_.instance_id == instance_id))

    def answer(self, device_key: str, instance_id: str, answer: dict[str, Any]) -> None:
        with self.db.tx() as c:
            c.execute(t.push_sessions.update()
                      .where(s_.device_key == device_key, s_.instance_id == instance_id)
                      .values(last_answer=json.dumps(answer, ensure_ascii=False)[:4000],
                              last_answer_at=time.time()))

    @staticmethod
    def _live(stale_s: float, *columns: Any) -> sa.Select[Any]:
        """Sessions held by instances whose heartbeat is recent."""
        j = t.push_sessions.join(t.push_instances, i_.instance_id == s_.instance_id)
        return sa.select(*columns).select_from(j).where(i_.heartbeat_at >= time.time() - stale_s)

    def live(self, stale_s: float) -> list[PushSession]:
        """Every session of an instance whose heartbeat is younger than ``stale_s``, by device key."""
        with self.db.ro() as c:
            return [PushSession.from_row(r) for r in c.execute(
                self._live(stale_s, t.push_sessions).order_by(s_.device_key))]

    # ------------------------------------------------------------------ outbox

    def enqueue(self, origin: str, device_keys: list[str], message: dict[str, Any],
                stale_s: float) -> dict[str, int]:
        """An outbox row for each device held by another live instance: device key -> row id."""
        text = json.dumps(message, ensure_ascii=False)
        out: dict[str, int] = {}
        with self.db.tx() as c:
            rows = c.execute(self._live(stale_s, s_.device_key, s_.instance_id)
                             .where(s_.device_key.in_(device_keys), s_.instance_id != origin)).all()
            for device_key, instance in rows:
                res = c.execute(t.push_outbox.insert().values(
                    instance_id=instance, origin=origin, device_key=device_key, message=text,
                    created_at=time.time(), state="queued"))
                pk = res.inserted_primary_key
                assert pk is not None
                out[device_key] = int(pk[0])
        return out

    def results(self, ids: list[int]) -> dict[int, str]:
        """Row id -> result of the rows among ``ids`` that are done."""
        with self.db.ro() as c:
            return {int(r[0]): str(r[1]) for r in c.execute(
                sa.select(o_.id, o_.result).where(o_.id.in_(ids), o_.state == "done"))}

    def withdraw(self, ids: list[int], result: str) -> None:
        """Rows nobody claimed yet are done with ``result`` (so they are never sent late)."""
        with self.db.tx() as c:
            c.execute(t.push_outbox.update().where(o_.id.in_(ids), o_.state == "queued")
                      .values(state="done", result=result, done_at=time.time()))

    def claim_one(self, instance_id: str) -> OutboxItem | None:
        """The oldest row queued for this instance, now ``sending`` (exactly one claimer wins)."""
        while True:
            with self.db.ro() as c:
                row = c.execute(sa.select(o_.id, o_.device_key, o_.message)
                                .where(o_.instance_id == instance_id, o_.state == "queued")
                                .order_by(o_.id).limit(1)).first()
            if row is None:
                return None
            with self.db.tx() as c:
                res = c.execute(t.push_outbox.update().where(o_.id == row[0], o_.state == "queued")
                                .values(state="sending"))
            if res.rowcount == 1:
                return OutboxItem(int(row[0]), str(row[1]), str(row[2]))
            # withdrawn by its asker meanwhile: that row is done, look at the next

    def finish(self, row_id: int, result: str) -> None:
        with self.db.tx() as c:
            c.execute(t.push_outbox.update().where(o_.id == row_id)
                      .values(state="done", result=result[:500], done_at=time.time()))
