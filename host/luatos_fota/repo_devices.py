"""Devices: what each device reported, its product, bans and pins, and the version-change rule
of the loop guard.

Names: ``device_key`` is the string a device identifies itself by (its MAC, IMEI or unique id,
normalised by :func:`normalize_device_key`); ``device_id`` is only ever the row id.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from luatos_common.deviceid import normalize_device_key
from luatos_common.version import FotaVersion, ScriptVersion, VersionError

from . import schema as t
from .audit import AuditEvent, detail_json
from .codes import VendorCode
from .db import Database
from .errors import Conflict, NotFound
from .records import Device
from .repo_audit import audit_change, insert_audit, version_changes
from .repo_products import ProductsRepo
from .repo_rates import SharedRate, take_tokens
from .repo_releases import ReleasesRepo

# Hot-path statements built once: SQLAlchemy memoises their cache keys on the object.
_Q_DEVICE = sa.select(t.devices).where(t.devices.c.device_key == sa.bindparam("k"))
_Q_INSERT_DEVICE = t.devices.insert()


def version_oscillation(changes: list[tuple[str, str]]) -> str | None:
    """The loop-guard rule for versions: ``changes`` are a device's reported version changes
    (old, new) within the window, oldest first, the latest one last. A device that comes back
    to a version after having fallen back from it (old -> new -> old -> new: the package
    installs, fails, the device rolls back and downloads it again) is oscillating; each
    rise restarts the serve count, so counting serves alone never stops it. Returns the path
    it took, or None."""
    if not changes:
        return None
    path = [changes[0][0], *(new for _, new in changes)]
    latest = path[-1]
    try:
        top = FotaVersion.parse(latest)
        for i in range(1, len(path) - 2):  # reached by a change, not merely where it started
            if path[i] != latest:
                continue
            between = [FotaVersion.parse(v) for v in path[i + 1:-1]]
            if any(v < top for v in between):
                return " -> ".join(path[max(0, i - 1):])
    except VersionError:
        return None
    return None


class DevicesRepo:
    def __init__(self, db: Database, products: ProductsRepo, releases: ReleasesRepo) -> None:
        self.db = db
        self.products = products
        self.releases = releases

    def get(self, device_key: str) -> Device | None:
        with self.db.ro() as c:
            r = c.execute(_Q_DEVICE, {"k": device_key}).first()
        return Device.from_row(r) if r else None

    def require(self, device_key: str) -> Device:
        d = self.get(normalize_device_key(device_key))
        if d is None:
            raise NotFound(f"device {device_key!r} has never checked in and is not registered")
        return d

    def create(self, device_key: str, key_type: str, product_id: int | None, version: str,
               ip: str, *, registered: bool = False, limits: Iterable[SharedRate] = ()) -> Device:
        """Insert (or return the existing row of) a device; safe against a concurrent insert.

        ``limits``: shared buckets that each give a token in the same transaction as the insert
        (raises :class:`RateLimited`, writing nothing, when one is empty). A device that another
        request inserted first costs no token: the whole transaction rolls back."""
        now = time.time()
        row = {"device_key": device_key, "key_type": key_type, "product_id": product_id,
               "reported_version": version, "version_changed_at": now, "first_seen": now,
               "last_seen": now, "last_ip": ip, "check_ins": 0, "registered": registered}
        try:
            with (self.db.tx() if registered else self.db.hot_tx()) as c:
                res = c.execute(_Q_INSERT_DEVICE, row)
                device_id = int(res.inserted_primary_key[0])  # type: ignore[index]
                insert_audit(c, [AuditEvent("device_registered", device_key, product_id, ip=ip or None,
                                            actor="admin" if registered else None,
                                            detail=detail_json({"version": version}), ts=now)])
                # After the insert: a device inserted concurrently fails above and costs no token.
                take_tokens(c, self.db.is_sqlite, limits, now)
            return Device(device_id, device_key, key_type, product_id, version, now, now, now, ip, 0, 0, "",
                          None, None, registered)
        except sa.exc.IntegrityError:  # registered concurrently (another request or instance)
            d = self.get(device_key)
            assert d is not None
            return d

    def register(self, device_key: str, product_id: int | None = None,
                 key_type: str = "mac", actor: str = "admin") -> Device:
        key = normalize_device_key(device_key)
        if not key or key == "nil":
            raise ValueError(f"device id {device_key!r} is not usable")
        d = self.get(key)
        if d is None:
            return self.create(key, key_type, product_id, "", "", registered=True)
        if product_id is not None:
            self.products.get(int(product_id))
        with self.db.tx() as c:
            vals: dict[str, Any] = {"registered": True}
            if product_id is not None:
                vals["product_id"] = int(product_id)
            c.execute(t.devices.update().where(t.devices.c.id == d.id).values(**vals))
            self.db.bump(c, devices_only=True)
            audit_change(c, "device_registered", actor=actor, device_key=key, product_id=product_id)
        return self.require(key)

    def version_changed(self, device_id: int, device_key: str, product_id: int | None,
                        old: str, new: str, new_fv: FotaVersion | None, ip: str,
                        lift_loop_ban: bool, *, rose: bool = True,
                        window_s: float = 0.0) -> str | None:
        """A device reports a different version: record it, confirm serves it reached, lift a loop ban.

        Only a *rising* version restarts the loop-guard window (``version_changed_at``): a device
        that falls back to its old image has not made progress (docs/behaviour.md §11.3). A device
        whose versions oscillate within ``window_s`` (:func:`version_oscillation`) is
        loop-banned instead; the ban reason is returned."""
        self.db.drain()  # serves still in a write buffer must be there to be confirmed
        now = time.time()
        with self.db.hot_tx() as c:
            oscillation = None
            if window_s > 0 and old:
                oscillation = version_oscillation([*version_changes(c, device_key, now - window_s), (old, new)])
            vals: dict[str, Any] = {"reported_version": new, "product_id": product_id}
            if oscillation:
                lift_loop_ban = False
                reason = (f"loop: versions oscillate ({oscillation}) within {window_s / 3600:g} h; "
                          "the package installs and the device falls back again")
                vals.update(ban_code=VendorCode.LOOP, banned_at=now, ban_reason=reason)
            if rose:
                vals["version_changed_at"] = now
            if lift_loop_ban:
                vals.update(ban_code=0, ban_reason="", banned_at=None)
            c.execute(t.devices.update().where(t.devices.c.id == device_id).values(**vals))
            if lift_loop_ban:
                self.db.bump(c, devices_only=True)
                audit_change(c, "unbanned", device_key=device_key, product_id=product_id, actor="version-change",
                             reason=f"reported version changed {old} -> {new}")
            confirmed: list[int] = []
            if new_fv is not None:
                rows = c.execute(
                    sa.select(t.serves.c.id, t.releases.c.script_version, t.releases.c.core_version,
                              t.releases.c.kind, t.releases.c.id.label("rid"))
                    .join(t.releases, t.releases.c.id == t.serves.c.release_id)
                    .where(t.serves.c.device_id == device_id, t.serves.c.confirmed_at.is_(None))).fetchall()
                for sid, sv_text, core, kind, _rid in rows:
                    try:
                        sv = ScriptVersion.parse(sv_text)
                    except VersionError:
                        continue
                    if (sv.x, sv.z) == (new_fv.x, new_fv.z) and (kind != "full" or core == new_fv.core):
                        confirmed.append(sid)
                if confirmed:
                    c.execute(t.serves.update().where(t.serves.c.id.in_(confirmed)).values(confirmed_at=now))
            audit_change(c, "version_changed", device_key=device_key, product_id=product_id, ip=ip or None,
                         old=old, new=new, confirmed_serves=confirmed)
            if oscillation:
                self.db.bump(c, devices_only=True)
                audit_change(c, "loop_ban", device_key=device_key, product_id=product_id, code=VendorCode.LOOP,
                             ip=ip or None, reason="oscillation", versions=oscillation,
                             window_s=window_s, version=new)
                return str(vals["ban_reason"])
        return None

    def move_to_product(self, device_id: int, product_id: int, *, device_key: str | None = None,
                        old_product_id: int | None = None, ip: str = "") -> None:
        """An unregistered device now checks in with another (open) product's key: follow it."""
        with self.db.hot_tx() as c:
            c.execute(t.devices.update().where(t.devices.c.id == device_id).values(product_id=product_id))
            audit_change(c, "device_moved", device_key=device_key, product_id=product_id, ip=ip or None,
                         old_product_id=old_product_id)

    def touch(self, seen: dict[int, tuple[float, str, int]]) -> None:
        """Apply buffered last-seen updates: device id -> (last_seen, ip, check-ins since last flush)."""
        if not seen:
            return
        with self.db.tx() as c:
            c.execute(t.devices.update().where(t.devices.c.id == sa.bindparam("did")).values(
                last_seen=sa.func.max(t.devices.c.last_seen, sa.bindparam("ts")) if self.db.is_sqlite
                else sa.func.greatest(t.devices.c.last_seen, sa.bindparam("ts")),
                last_ip=sa.bindparam("ip"),
                check_ins=t.devices.c.check_ins + sa.bindparam("n")),
                [{"did": k, "ts": v[0], "ip": v[1], "n": v[2]} for k, v in seen.items()])

    def loop_ban(self, device_id: int, device_key: str, release_id: int, serves: int, window_s: float,
                 version: str, ip: str) -> str:
        reason = (f"loop: release {release_id} served {serves} times within "
                  f"{window_s / 3600:g} h while the device kept reporting {version}")
        with self.db.hot_tx() as c:
            c.execute(t.devices.update().where(t.devices.c.id == device_id).values(
                ban_code=VendorCode.LOOP, banned_at=time.time(), ban_reason=reason))
            self.db.bump(c, devices_only=True)
            audit_change(c, "loop_ban", device_key=device_key, release_id=release_id, code=VendorCode.LOOP,
                         status=VendorCode.LOOP.status, ip=ip or None, serves=serves, window_s=window_s,
                         version=version)
        return reason

    def ban(self, device_key: str, reason: str = "", *, code: int = VendorCode.NOT_ALLOWED,
            actor: str = "admin") -> Device:
        d = self.require(device_key)
        with self.db.tx() as c:
            c.execute(t.devices.update().where(t.devices.c.id == d.id).values(
                ban_code=code, ban_reason=reason or "banned by an operator", banned_at=time.time()))
            self.db.bump(c, devices_only=True)
            audit_change(c, "banned", actor=actor, device_key=d.device_key, code=code, reason=reason)
        return self.require(d.device_key)

    def unban(self, device_key: str, *, actor: str = "admin") -> Device:
        d = self.require(device_key)
        with self.db.tx() as c:
            c.execute(t.devices.update().where(t.devices.c.id == d.id).values(
                ban_code=0, ban_reason="", banned_at=None, version_changed_at=time.time()))
            self.db.bump(c, devices_only=True)
            audit_change(c, "unbanned", actor=actor, device_key=d.device_key,
                         previous_code=d.ban_code, previous_reason=d.ban_reason)
        return self.require(d.device_key)

    def pin(self, device_key: str, release_id: int | None, *, actor: str = "admin") -> Device:
        d = self.require(device_key)
        if release_id is not None:
            rel = self.releases.get(release_id)
            if d.product_id is not None and rel.product_id != d.product_id:
                raise Conflict(f"release {release_id} belongs to product {rel.product_id}, "
                               f"device {d.device_key} to product {d.product_id}")
        with self.db.tx() as c:
            c.execute(t.devices.update().where(t.devices.c.id == d.id).values(pinned_release_id=release_id))
            self.db.bump(c, devices_only=True)
            audit_change(c, "pinned" if release_id else "unpinned", actor=actor,
                         device_key=d.device_key, release_id=release_id)
        return self.require(d.device_key)

    def all(self, *, product_id: int | None = None, banned: bool | None = None,
             limit: int = 1000, offset: int = 0) -> list[Device]:
        q = sa.select(t.devices).order_by(t.devices.c.id).limit(limit).offset(offset)
        if product_id is not None:
            q = q.where(t.devices.c.product_id == product_id)
        if banned is True:
            q = q.where(t.devices.c.ban_code != 0)
        elif banned is False:
            q = q.where(t.devices.c.ban_code == 0)
        with self.db.ro() as c:
            return [Device.from_row(r) for r in c.execute(q)]

    def product_device_keys(self, product_id: int) -> list[str]:
        with self.db.ro() as c:
            return [k for (k,) in c.execute(sa.select(t.devices.c.device_key).where(
                t.devices.c.product_id == product_id))]
