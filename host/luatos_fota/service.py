"""The check-in decision, shared by the libfota2 endpoint and the v2 (libfota3-shaped) API.

Order (architecture.md): product -> device allowed -> not banned -> the release that targets
this device -> newer than what it runs -> artifact -> loop guard. Each step that says "no"
returns an :class:`Outcome` carrying the vendor code (behaviour.md §11.3) and the reason, which is
also what lands in the audit log, so "why did this device get that?" has a recorded answer.

Speed: the catalogue (products, releases, targeting) and device states are cached in memory and
dropped when the DB generation counter moves (polled every ``cache_ttl_s``; local writes drop
them at once). A known device that is up to date costs no database round trip: its last-seen
time and the audit row go to the buffered writer. Bans, pins and registrations move only the
device generation, which drops cached devices but keeps the catalogue.

Threads: :meth:`FotaService.decide_fast` runs on the event loop and raises nothing but answers
None when it needs the database; :meth:`decide`, :meth:`commit_serve` and the push/download
helpers block and run in worker threads, serialised per device (striped locks) so two requests
of one device cannot both slip under the loop guard.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from luatos_common.version import FotaVersion, VersionError

from . import deviceauth, metrics
from .audit import AuditEvent, detail_json
from .catalog import Catalog, ProductInfo, ReleaseInfo
from .codes import VendorCode, status_for
from .config import ServerConfig
from .ratelimit import TokenBuckets
from .records import Artifact, Device, FotaResult, Serve
from .releasepush import PushPlan, Session, login_version, plan_release_push, session_ip
from .store import NotFound, RateLimited, SharedRate, Store, normalize_device_key, serves_worth
from .writer import BufferedWriter


@dataclass
class DeviceState:
    id: int  # the devices row
    device_key: str
    product_id: int | None
    reported_version: str
    version_changed_at: float
    ban_code: int
    ban_reason: str
    pinned_release_id: int | None
    registered: bool
    # parsed once, compared numerically (behaviour.md §11.1)
    reported_fv: FotaVersion | None = None

    @classmethod
    def from_row(cls, d: Device) -> DeviceState:
        st = cls(d.id, d.device_key, d.product_id, d.reported_version, d.version_changed_at, d.ban_code,
                 d.ban_reason, d.pinned_release_id, d.registered)
        try:
            st.reported_fv = FotaVersion.parse(st.reported_version) if st.reported_version else None
        except VersionError:
            st.reported_fv = None
        return st


class NewDeviceLimited(Exception):
    """Raised in :meth:`FotaService._device` when a new device row is over the per-IP or
    per-product rate (random ids must not fill the devices table)."""


class NeedsDatabase(Exception):
    """Raised inside :meth:`FotaService.decide_fast` where the answer needs a database round trip."""


# How specific a release's targeting is: a device list (or a pin) beats a percentage, which
# beats "all"; only then does the version decide (docs/behaviour.md §11.3 "a per-device assignment
# beats latest").
TARGET_RANK = {"devices": 2, "percent": 1, "all": 0}


@dataclass
class Query:
    """What a check-in says, whichever endpoint it came through."""

    channel: str  # v1 | v2
    key_type: str | None
    device_key: str | None  # what the device identifies itself by (mac/imei/uid value)
    project_key: str | None
    firmware_name: str | None
    version: str | None
    ip: str
    alt_project_key: str | None = None
    alt_firmware_name: str | None = None
    script_name: str | None = None  # v2: PROJECT, used when firmware_name is absent
    problems: list[str] | None = None  # request fields refused while parsing (code 3)
    credential: str | None = None  # the device token it presented (deviceauth.py)
    # Server-initiated (a push to a session whose login was authenticated): no credential to check.
    trusted: bool = False


@dataclass
class Outcome:
    code: int  # a VendorCode; OK (0) = serve
    msg: str
    product: ProductInfo | None = None
    device: DeviceState | None = None
    release: ReleaseInfo | None = None
    target: FotaVersion | None = None
    fota_sn: str | None = None
    reason: str = ""

    @property
    def serve(self) -> bool:
        return self.code == VendorCode.OK

    @property
    def status(self) -> int:
        return status_for(self.code)


class FotaService:
    def __init__(self, store: Store, config: ServerConfig,
                 blob_known: Callable[[str], bool] | None = None) -> None:
        self.store = store
        self.config = config
        self.writer = BufferedWriter(store, config.flush_interval_s, config.flush_batch,
                                     detail_max=config.audit_detail_max,
                                     audit_budget=TokenBuckets(config.audit_ip_rate, config.audit_ip_burst))
        # First check-ins that would create a device row: per client IP and per product.
        self.new_device_ip = TokenBuckets(config.new_device_ip_rate, config.new_device_ip_burst)
        self.new_device_product = TokenBuckets(config.new_device_product_rate, config.new_device_product_burst)
        self._catalog: Catalog | None = None
        self._checked_at = 0.0
        self._stale = False
        self._devices: dict[str, DeviceState] = {}
        self._tokens: dict[str, tuple[int, str] | None] = {}  # device_key -> imported token hash
        self._device_generation = 0
        # Decisions that touch the DB run in worker threads; one device's run is serialised so
        # two concurrent requests cannot both slip under the loop guard's limit.
        self._locks = [threading.Lock() for _ in range(64)]
        # Loop-guard counts kept in memory (see ServerConfig.serve_counts): (device id, release id)
        # -> serve times within the window, seeded from the DB on first use in this process.
        self.memory_serves = config.serve_counts == "memory"
        self._serve_log: dict[tuple[int, int], list[list[Any]]] = {}  # [ts, bytes|None, sn]
        # Whether a package is known to be readable without touching the disk (the app's cache).
        self.blob_known: Callable[[str], bool] = blob_known or (lambda sha: False)
        store.db.listeners.append(self.invalidate)
        store.db.pending_writers.append(self.writer.flush)

    # ------------------------------------------------------------------ caches

    def catalog(self) -> Catalog:
        """The current catalogue; may read the DB (call it off the event loop, or check
        :meth:`catalog_fresh` first)."""
        now = time.monotonic()
        cat = self._catalog
        if cat is None or self._stale or now - self._checked_at >= self.config.cache_ttl_s:
            self._stale = False
            gen, dev_gen = self.store.db.generations()
            if cat is None or gen != cat.generation:
                cat = self.store.releases.load_catalog()
                self._devices = {}
                self._catalog = cat
            elif dev_gen != self._device_generation:
                self._devices = {}  # a ban, pin or registration: re-read devices, keep the catalogue
                self._tokens = {}
            self._device_generation = dev_gen
            self._checked_at = now
        return cat

    def catalog_fresh(self) -> bool:
        return (self._catalog is not None and not self._stale
                and time.monotonic() - self._checked_at < self.config.cache_ttl_s)

    def invalidate(self) -> None:
        """Re-check the generation on the next check-in (safe to call from any thread)."""
        self._stale = True

    def close(self) -> None:
        if self.writer.flush in self.store.db.pending_writers:
            self.store.db.pending_writers.remove(self.writer.flush)
        self.writer.close()
        if self.invalidate in self.store.db.listeners:
            self.store.db.listeners.remove(self.invalidate)

    # ------------------------------------------------------------------ audit

    def audit(self, event: str, out: Outcome, q: Query, status: int, **detail: Any) -> None:
        if out.code == VendorCode.UNAUTHENTICATED:
            event = "unauthorized"
        device_key = out.device.device_key if out.device else (q.device_key or None)
        metrics.checkin(q.channel, out.code)
        if event == "serve":
            metrics.serve(detail.get("mode", "full"))
        self.writer.record(AuditEvent(
            event, device_key, out.product.id if out.product else None, out.release.id if out.release else None,
            status, out.code, q.ip or None,
            detail=detail_json({"msg": out.msg, "reason": out.reason, "channel": q.channel, "version": q.version,
                                **detail})))

    # ------------------------------------------------------------------ decision

    def _find_product(self, cat: Catalog, q: Query) -> tuple[ProductInfo | None, Outcome | None]:
        keys = [k for k in (q.project_key, q.alt_project_key) if k]
        if not keys or not any(k.strip() for k in keys):
            return None, Outcome(VendorCode.INVALID_PROJECT, "project_key missing",
                                 reason="the request carries no project_key")
        known = [k for k in keys if k in cat.by_key]
        if not known:
            return None, Outcome(VendorCode.INVALID_PROJECT, f"unknown project_key {q.project_key!r}",
                                 reason="no product has this project_key")
        candidates = cat.by_key[known[0]]
        names = [n for n in (q.firmware_name, q.alt_firmware_name) if n]
        for n in names:
            p = cat.by_key_name.get((known[0], n))
            if p is not None:
                return p, None
        if not names and q.channel == "v2":
            if len(candidates) == 1:
                return candidates[0], None
            if q.script_name:
                pref = f"{q.script_name}_LuatOS-SoC_"
                hits = [p for p in candidates if p.firmware_name.startswith(pref)]
                if len(hits) == 1:
                    return hits[0], None
        return None, Outcome(VendorCode.INVALID_FIRMWARE, f"unknown firmware_name {q.firmware_name!r} for this project_key",
                             reason="known firmware names: " + ", ".join(sorted(p.firmware_name for p in candidates)))

    def _lock_for(self, device_key: str) -> threading.Lock:
        return self._locks[hash(device_key) % len(self._locks)]

    def _device(self, device_key: str, q: Query, product: ProductInfo, version: str, db: bool) -> DeviceState | None:
        st = self._devices.get(device_key)
        if st is not None:
            return st
        if not db:
            raise NeedsDatabase
        row = self.store.devices.get(device_key)
        if row is None:
            if not product.auto_register:
                return None
            # This process's buckets first (cheap: a flood is refused without a database write),
            # then the same rates shared by every instance on the database, in the insert's
            # transaction: N instances together create no more devices than one would.
            if self.new_device_ip.take(q.ip or "") or self.new_device_product.take(str(product.id)):
                raise NewDeviceLimited
            try:
                row = self.store.devices.create(device_key, q.key_type or "mac", product.id, version, q.ip,
                                               limits=self._new_device_limits(product.id, q.ip))
            except RateLimited:
                raise NewDeviceLimited from None
        st = DeviceState.from_row(row)
        if len(self._devices) > 200_000:
            self._devices.clear()
        self._devices[device_key] = st
        return st

    def _new_device_limits(self, product_id: int, ip: str) -> list[SharedRate]:
        c = self.config
        out = [SharedRate(f"product:{product_id}", c.new_device_product_rate, c.new_device_product_burst)]
        if ip:
            out.append(SharedRate(f"ip:{ip[:100]}", c.new_device_ip_rate, c.new_device_ip_burst))
        return out

    def authenticated(self, product: ProductInfo, device_key: str, credential: str | None, db: bool = True) -> bool:
        """Whether ``credential`` proves ``device_key`` for ``product`` (raises NeedsDatabase
        when a per-device token is not cached and ``db`` is False)."""
        if product.auth_mode == "none":
            return True
        if not credential:
            return False
        stored = None
        if product.auth_mode == "token":
            if device_key in self._tokens:
                hit = self._tokens[device_key]
            elif not db:
                raise NeedsDatabase
            else:
                hit = self.store.products.device_token_hash(device_key)
                if len(self._tokens) > 200_000:
                    self._tokens.clear()
                self._tokens[device_key] = hit
            stored = hit[1] if hit is not None and hit[0] == product.id else None
        return deviceauth.check(product.auth_mode, product.auth_secret, device_key, credential, stored)

    def choose_release(self, cat: Catalog, product: ProductInfo, dev: DeviceState,
                       fv: FotaVersion) -> tuple[ReleaseInfo | None, str]:
        if dev.pinned_release_id is not None:
            r = cat.releases.get(dev.pinned_release_id)
            if r is not None and r.product_id == product.id:
                if not r.enabled:
                    return None, f"pinned to release {r.id}, which is paused"
                return r, f"pinned to release {r.id}"
        cands = [r for r in cat.releases_by_product.get(product.id, ()) if r.enabled and r.targets(dev.device_key)]
        if not cands:
            total = len(cat.releases_by_product.get(product.id, ()))
            return None, ("no release for this product" if not total
                          else "no enabled release targets this device")
        best = max(cands, key=lambda r: (TARGET_RANK.get(r.target_mode, 0), r.target_for(fv.core), r.id))
        return best, f"release {best.id} targets this device ({best.target_mode})"

    def decide(self, q: Query, *, count_serve: bool = True) -> Outcome:
        """The whole decision, database included (blocking: run it in a worker thread).

        With ``count_serve`` an upgrade is recorded as a serve (loop guard, ``fota_sn``) at once;
        the device endpoint passes False and calls :meth:`commit_serve` once the package is
        open, so a failed read never counts."""
        device_key = self._device_key(q)
        lock = self._lock_for(device_key) if device_key else None
        if lock is None:
            return self._decide(q, db=True)
        with lock:
            out = self._decide(q, db=True)
            if out.serve and count_serve:
                out = self._commit_serve(out, q, "full")
        return out

    def decide_fast(self, q: Query) -> Outcome | None:
        """The decision from memory only, or None when it needs the database (then call
        :meth:`decide` in a worker thread). Safe on the event loop."""
        if not self.catalog_fresh():
            return None
        try:
            return self._decide(q, db=False)
        except NeedsDatabase:
            return None

    def commit_serve_fast(self, out: Outcome, q: Query, mode: str = "full",
                          nbytes: int | None = None) -> Outcome | None:
        """:meth:`commit_serve` from memory only (counts in memory, no ban to write), or None."""
        if not self.memory_serves:
            return None
        lock = self._lock_for(out.device.device_key if out.device else "")
        if not lock.acquire(blocking=False):
            return None
        try:
            return self._commit_serve(out, q, mode, db=False, nbytes=nbytes)
        except NeedsDatabase:
            return None
        finally:
            lock.release()

    def commit_serve(self, out: Outcome, q: Query, mode: str = "full",
                     nbytes: int | None = None) -> Outcome:
        """Count a serve that is about to be sent (blocking). ``mode``: ``full`` (a 200 or a
        Range from 0), ``continuation`` (a Range from N>0), ``head`` (apply the guard, record
        nothing). ``nbytes``: what this serve sends (default: the whole package); the loop
        guard adds these up per device and release (store.serves_worth)."""
        device_key = out.device.device_key if out.device else ""
        with self._lock_for(device_key):
            return self._commit_serve(out, q, mode, nbytes=nbytes)

    def serve_not_delivered(self, out: Outcome, q: Query, sent: int, planned: int) -> None:
        """The client hung up before the serve's bytes were written (blocking): count only what
        was sent, and audit it as not delivered."""
        if not out.fota_sn:
            return
        if self.memory_serves and out.device is not None and out.release is not None:
            for entry in self._serve_log.get((out.device.id, out.release.id), ()):
                if entry[2] == out.fota_sn:
                    entry[1] = sent
        self.store.serves.not_delivered(out.fota_sn, sent, device_key=out.device.device_key if out.device else None,
                                       release_id=out.release.id if out.release else None, ip=q.ip,
                                       planned=planned)

    @staticmethod
    def _device_key(q: Query) -> str:
        k = (q.device_key or "").strip()
        return normalize_device_key(k) if k and k != "nil" else ""

    def _decide(self, q: Query, db: bool) -> Outcome:
        cat = self.catalog() if db else self._catalog
        assert cat is not None
        product, err = self._find_product(cat, q)
        if err is not None:
            return err
        assert product is not None
        if q.problems:
            return Outcome(VendorCode.INVALID_DEVICE, "; ".join(q.problems), product=product,
                           reason="malformed request: " + "; ".join(q.problems))
        device_key = (q.device_key or "").strip()
        if not device_key or device_key == "nil":
            if self.config.anonymous_devices == "by_ip" and q.ip:
                device_key = f"ip:{q.ip}"
            else:
                what = "the literal nil" if device_key == "nil" else "missing"
                return Outcome(VendorCode.INVALID_DEVICE, f"device id is {what}: send mac=, imei= or uid= "
                               "(set opts.imei in libfota2 for models it does not know)", product=product,
                               reason=f"device id {what}")
        else:
            device_key = normalize_device_key(device_key)
        if product.auth_mode != "none" and not q.trusted and not self.authenticated(product, device_key, q.credential, db):
            return Outcome(VendorCode.UNAUTHENTICATED, "device credential missing or wrong: send "
                           "Authorization: Bearer <device token>", product=product,
                           reason=f"product requires {product.auth_mode} device authentication")
        if not q.version:
            return Outcome(VendorCode.INVALID_DEVICE, "version missing (expected core.x.z)", product=product,
                           reason="no version parameter")
        if not q.version.isascii():
            return Outcome(VendorCode.INVALID_DEVICE, f"version {q.version!r} has non-ASCII characters",
                           product=product, reason="unparseable version")
        try:
            fv = FotaVersion.parse(q.version)
        except VersionError as e:
            return Outcome(VendorCode.INVALID_DEVICE, str(e), product=product, reason="unparseable version")
        try:
            dev = self._device(device_key, q, product, fv.raw, db)
        except NewDeviceLimited:
            return Outcome(VendorCode.WAIT, "too many new devices right now; retry later", product=product,
                           reason="new device id over the per-IP or per-product rate")
        if dev is None:
            return Outcome(VendorCode.NO_PERMISSION, f"device {device_key} is not registered for this product",
                           product=product, reason="product does not auto-register devices")
        if dev.product_id != product.id:
            if dev.registered and dev.product_id is not None:
                return Outcome(VendorCode.NO_PERMISSION, f"device {device_key} is registered to another product",
                               product=product, device=dev,
                               reason=f"device registered to product {dev.product_id}, not {product.id}")
            if not product.auto_register and not dev.registered:
                return Outcome(VendorCode.NO_PERMISSION, f"device {device_key} is not registered for this product",
                               product=product, device=dev,
                               reason="closed product; device not registered to it")
        elif not product.auto_register and not dev.registered:
            return Outcome(VendorCode.NO_PERMISSION, f"device {device_key} is not registered for this product",
                           product=product, device=dev, reason="closed product; device not registered to it")
        old = dev.reported_fv
        if old is None or fv != old or dev.product_id != product.id:
            if not db:
                raise NeedsDatabase
            self._note_version(dev, product, fv, old, q)
        if dev.ban_code:
            code = VendorCode.LOOP if dev.ban_code == VendorCode.LOOP else VendorCode.NOT_ALLOWED
            return Outcome(code, dev.ban_reason or "banned", product=product, device=dev,
                           reason=f"device banned (code {dev.ban_code})")
        release, why = self.choose_release(cat, product, dev, fv)
        if release is None:
            return Outcome(VendorCode.LATEST, "no update", product=product, device=dev, reason=why)
        target = release.target_for(fv.core)
        if target == fv:
            return Outcome(VendorCode.LATEST, "already latest", product=product, device=dev, release=release,
                           target=target, reason=f"{why}; device already runs {target}")
        if target < fv and not release.forced:
            return Outcome(VendorCode.LATEST, "already latest", product=product, device=dev, release=release,
                           target=target, reason=f"{why}; device runs {fv}, newer than {target} "
                           "(downgrade refused: release not forced)")
        if not db and not self.blob_known(release.sha256):
            raise NeedsDatabase  # blob existence is a disk call: decided off the loop
        if db and not self.store.blobs.exists(release.sha256):
            return Outcome(VendorCode.WAIT, "package temporarily unavailable", product=product, device=dev,
                           release=release, target=target,
                           reason=f"artifact {release.sha256} missing from the blob store")
        return Outcome(VendorCode.OK, "upgrade", product=product, device=dev, release=release, target=target,
                       reason=f"{why}; {fv} -> {target}" + (" (forced downgrade)" if target < fv else ""))

    def _serve_count(self, dev: DeviceState, release_id: int, since: float, size: int, db: bool) -> int:
        """Packages' worth served (store.serves_worth) from the in-memory log."""
        log = self._serve_log.get((dev.id, release_id))
        if log is None:
            if not db:
                raise NeedsDatabase
            seeded = [list(r) for r in self.store.serves.times(
                dev.id, release_id, time.time() - self.config.loop_window_s)]
            if len(self._serve_log) > 200_000:
                self._serve_log.clear()
            log = self._serve_log.setdefault((dev.id, release_id), seeded)
        recent = [e for e in log if e[0] >= since]
        return serves_worth(sum(1 for e in recent if e[1] is None),
                            sum(int(e[1]) for e in recent if e[1] is not None), size)

    def _record_serve(self, dev: DeviceState, release_id: int, channel: str, nbytes: int) -> str:
        if not self.memory_serves:
            return self.store.serves.record(dev.id, release_id, channel, dev.reported_version, nbytes)
        now = time.time()
        sn = secrets.token_hex(12)
        log = self._serve_log.setdefault((dev.id, release_id), [])
        log.append([now, nbytes, sn])
        if len(log) > 64 * self.config.loop_max_serves:
            cut = now - self.config.loop_window_s
            log[:] = [e for e in log if e[0] >= cut][-64 * self.config.loop_max_serves:]
        self.writer.serve({"fota_sn": sn, "device_id": dev.id, "release_id": release_id, "channel": channel,
                           "from_version": dev.reported_version, "served_at": now, "bytes": nbytes})
        return sn

    def _commit_serve(self, out: Outcome, q: Query, mode: str, db: bool = True,
                      nbytes: int | None = None) -> Outcome:
        dev, release = out.device, out.release
        assert dev is not None and release is not None
        size = release.size
        sent = size if nbytes is None else nbytes
        if dev.ban_code:  # banned meanwhile (another request of this device)
            code = VendorCode.LOOP if dev.ban_code == VendorCode.LOOP else VendorCode.NOT_ALLOWED
            return Outcome(code, dev.ban_reason or "banned", product=out.product, device=dev,
                           release=release, reason=f"device banned (code {dev.ban_code})")
        since = max(time.time() - self.config.loop_window_s, dev.version_changed_at)
        sn: str | None = None
        if self.memory_serves:
            n = self._serve_count(dev, release.id, since, size, db)
        else:
            if not db:
                raise NeedsDatabase
            n, sn = self.store.serves.count_and_record(dev.id, release.id, since, self.config.loop_max_serves,
                                                q.channel, dev.reported_version, mode, size=size,
                                                nbytes=sent)
        if mode == "continuation":
            out.reason += f"; continues a download ({sent} bytes, {n} package(s)' worth served before)"
        if n >= self.config.loop_max_serves:
            msg = (f"loop upgrade: release {release.id} served {n} times (packages' worth, resumed "
                   f"downloads added up) without the device reaching {out.target}; banned until "
                   "an operator unbans it")
            if mode != "head":  # HEAD answers what GET would, without side effects
                if not db:
                    raise NeedsDatabase
                dev.ban_reason = self.store.devices.loop_ban(dev.id, dev.device_key, release.id, n, self.config.loop_window_s,
                                                     dev.reported_version, q.ip)
                dev.ban_code = VendorCode.LOOP
                metrics.loop_ban()
            return Outcome(VendorCode.LOOP, msg, product=out.product, device=dev, release=release,
                           target=out.target, reason=f"loop guard tripped after {n} serves")
        if mode != "head":
            out.fota_sn = sn if sn is not None else self._record_serve(dev, release.id, q.channel, sent)
        return out

    def _note_version(self, dev: DeviceState, product: ProductInfo, fv: FotaVersion,
                      old: FotaVersion | None, q: Query) -> None:
        if old is not None and fv == old:  # only the product changed (an unregistered device moved)
            self.store.devices.move_to_product(dev.id, product.id, device_key=dev.device_key,
                                             old_product_id=dev.product_id, ip=q.ip)
            dev.product_id = product.id
            return
        rose = old is None or fv > old
        lift = dev.ban_code == VendorCode.LOOP and rose
        ban = self.store.devices.version_changed(dev.id, dev.device_key, product.id, dev.reported_version, fv.raw,
                                                fv, q.ip, lift, rose=rose,
                                                window_s=self.config.loop_window_s)
        dev.reported_version = fv.raw
        dev.reported_fv = fv
        if rose:
            dev.version_changed_at = time.time()
        dev.product_id = product.id
        if ban:
            dev.ban_code, dev.ban_reason = VendorCode.LOOP, ban
        elif lift:
            dev.ban_code, dev.ban_reason = 0, ""

    def push_decision(self, device_key: str, version: str | None, product: ProductInfo, release_id: int,
                      ip: str = "") -> tuple[Outcome | None, str]:
        """Should a push of ``release_id`` go to this device? (blocking). Returns the counted
        serve, or None and the reason it is skipped."""
        row = self.store.devices.get(normalize_device_key(device_key))
        if row is not None and row.reported_version:
            # What the device reported on a check-in wins: push-login data (anyone can send a
            # login) never changes the version the server believes, so it never confirms an install.
            version = row.reported_version
        if not version:
            return None, "version unknown (not in the push login, never checked in)"
        q = Query("push", "mac", device_key, product.project_key, product.firmware_name, version, ip, trusted=True)
        device_key = self._device_key(q)
        with self._lock_for(device_key):
            out = self._decide(q, db=True)
            if not out.serve:
                return None, f"code {out.code}: {out.msg} ({out.reason})"
            assert out.release is not None
            if out.release.id != release_id:
                return None, f"release {out.release.id} is the one for this device ({out.reason})"
            out = self._commit_serve(out, q, "full")
        if not out.serve:
            return None, f"code {out.code}: {out.msg} ({out.reason})"
        return out, ""

    def plan_release_push(self, release_id: int, product_id: int, sessions: list[Session],
                          wanted: list[str] | None) -> PushPlan:
        """Which of ``wanted`` (None: every online device) get release ``release_id`` now, each
        a counted serve (releasepush.py; blocking: run it in a worker thread)."""
        product = self.catalog().products.get(product_id)
        if product is None:
            raise NotFound(f"product {product_id} of release {release_id} is gone")

        def decide(device_key: str, login: Session) -> tuple[str | None, str]:
            out, why = self.push_decision(device_key, login_version(login), product, release_id, session_ip(login))
            if out is None:
                return None, why
            if not out.fota_sn:  # never expected: a counted serve always carries its fota_sn
                return None, "serve counted without a fota_sn; not pushed"
            return out.fota_sn, ""

        return plan_release_push(product.id, product.project_key, sessions, wanted, decide)

    def audit_release_push(self, plan: PushPlan, release_id: int, results: dict[str, str]) -> None:
        """The audit row of a release push: what each device was sent (or offline) and why the
        others were skipped."""
        self.writer.record(AuditEvent("push_release", product_id=plan.product_id, release_id=release_id,
                                      actor="api", detail=detail_json({"sent": results, "skipped": plan.skipped})))

    def download_serve(self, sha256: str, device_key: str, ip: str, mode: str,
                       nbytes: int | None = None) -> Outcome | None:
        """A ``/dl/`` download naming a known device (``?mac=``): count it like a check-in serve
        of that device's release carrying this package (blocking). None: not attributable."""
        device_key = normalize_device_key(device_key.strip())
        if not device_key or device_key == "nil":
            return None
        cat = self.catalog()
        row = self._devices.get(device_key)
        if row is None:
            r = self.store.devices.get(device_key)
            if r is None:
                return None
            row = DeviceState.from_row(r)
        dev = row
        rels = [r for r in cat.releases_by_product.get(dev.product_id or -1, ()) if r.sha256 == sha256]
        if not rels:
            return None
        product = cat.products[rels[0].product_id]
        q = Query("dl", "mac", device_key, product.project_key, product.firmware_name, dev.reported_version, ip)
        core = dev.reported_fv.core if dev.reported_fv else 0
        rel = max(rels, key=lambda r: r.id)
        out = Outcome(VendorCode.OK, "download", product=product, device=dev, release=rel, target=rel.target_for(core),
                      reason="download by an identified device")
        with self._lock_for(device_key):
            return self._commit_serve(out, q, mode, nbytes=nbytes)

    # The device handlers read the store through the service, like every other read they make.

    def artifact_by_id(self, artifact_id: int) -> Artifact | None:
        return self.store.releases.artifact_by_id(artifact_id)

    def artifact_by_sha(self, sha256: str) -> Artifact | None:
        return self.store.releases.artifact_by_sha(sha256)

    def serve_by_sn(self, fota_sn: str) -> Serve | None:
        return self.store.serves.by_sn(fota_sn)

    def record_result(self, fota_sn: str, result_code: int, ip: str = "") -> FotaResult:
        """A device's upgrade result (v2 ``turnkey_fota_result``); NotFound for an unknown ``fota_sn``."""
        return self.store.serves.record_result(fota_sn, result_code, ip)

    def device_may_download(self, sha256: str, device_key: str, credential: str) -> bool:
        """Whether an authenticated device may fetch this package: its credential proves it for
        its product, and a release of that product targeting it (or its pin) carries the package
        (blocking). Devices of products without authentication have no credential to show."""
        device_key = normalize_device_key(device_key.strip())
        if not device_key or device_key == "nil" or not credential:
            return False
        cat = self.catalog()
        row = self.store.devices.get(device_key)
        if row is None or row.product_id is None:
            return False
        product = cat.products.get(row.product_id)
        if product is None or product.auth_mode == "none" or not self.authenticated(product, device_key, credential):
            return False
        pin = row.pinned_release_id
        if pin is not None:
            rel = cat.releases.get(pin)
            return rel is not None and rel.sha256 == sha256
        return any(r.sha256 == sha256 and r.enabled and r.targets(device_key)
                   for r in cat.releases_by_product.get(product.id, ()))

    def push_login_refusal(self, device_key: str, info: dict[str, str], credential: str | None) -> str | None:
        """Why a push login may not speak for ``device_key``, or None (blocking).

        The products it may belong to: the one its check-ins registered it to, and those its
        login names. If any of them requires authentication, the credential must prove the
        device for one of those; a login naming no product while some product requires
        authentication is refused (it could otherwise impersonate any device)."""
        device_key = normalize_device_key(device_key)
        cat = self.catalog()
        cands: list[ProductInfo] = []
        row = self.store.devices.get(device_key)
        if row is not None and row.product_id in cat.products:
            cands.append(cat.products[row.product_id])
        pkey = info.get("project_key")
        if pkey:
            named = cat.by_key.get(pkey, [])
            fw = info.get("firmware_name")
            cands += [p for p in named if not fw or p.firmware_name == fw]
        secured = [p for p in cands if p.auth_mode != "none"]
        if not cands:
            if any(p.auth_mode != "none" for p in cat.products.values()):
                return "unknown product: log in with the project_key of your product and your token"
            return None
        if not secured:
            return None
        if any(self.authenticated(p, device_key, credential) for p in secured):
            return None
        return "device credential missing or wrong (login field \"token\")"

    def push_event(self, kind: str, device_key: str, data: dict[str, Any], ip: str | None = None) -> None:
        """``PushHub(on_event=...)`` hook: push-channel events go to the audit log (within the
        per-IP audit budget: a reconnect loop must not write rows as fast as it can connect)."""
        if ip is None:
            ip = str(data.get("peer") or "").rsplit(":", 1)[0] or None
        self.writer.record(AuditEvent(f"push_{kind}", device_key, ip=ip, detail=detail_json(data)))

    def seen(self, out: Outcome, ip: str) -> None:
        if out.device is not None:
            self.writer.seen(out.device.id, time.time(), ip)
