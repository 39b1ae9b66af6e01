"""The check-in decision, shared by the libfota2 endpoint and the v2 (libfota3-shaped) API.

Order (architecture.md): product -> device allowed -> not banned -> the release that targets
this device -> newer than what it runs -> artifact -> loop guard. Each step that says "no"
returns an :class:`Outcome` carrying the vendor code (reference §11.3) and the reason, which is
also what lands in the audit log, so "why did this device get that?" has a recorded answer.

Speed: the catalogue (products, releases, targeting) and device states are cached in memory and
dropped when the DB generation counter moves (polled every ``cache_ttl_s``; local writes drop
them at once). A known device that is up to date costs no database round trip: its last-seen
time and the audit row go to the buffered writer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from luatos_common.version import FotaVersion, VersionError

from .catalog import Catalog, ProductInfo, ReleaseInfo
from .config import ServerConfig
from .store import Store, normalize_device_key
from .writer import BufferedWriter

# Vendor codes (reference §11.3) and the HTTP status each is sent with on the v1 endpoint.
CODE_INVALID_DEVICE = 3
CODE_NO_PERMISSION = 17
CODE_NOT_ALLOWED = 21
CODE_INVALID_PROJECT = 25
CODE_INVALID_FIRMWARE = 26
CODE_LATEST = 27
CODE_LOOP = 40
CODE_WAIT = 43
STATUS_FOR_CODE = {CODE_INVALID_DEVICE: 400, CODE_NO_PERMISSION: 403, CODE_NOT_ALLOWED: 403,
                   CODE_INVALID_PROJECT: 404, CODE_INVALID_FIRMWARE: 404, CODE_LATEST: 304,
                   CODE_LOOP: 403, CODE_WAIT: 503}


@dataclass
class DeviceState:
    id: int
    key: str
    product_id: int | None
    reported_version: str
    version_changed_at: float
    ban_code: int
    ban_reason: str
    pinned_release_id: int | None
    registered: bool

    @classmethod
    def from_row(cls, d: dict[str, Any]) -> DeviceState:
        return cls(d["id"], d["device_key"], d["product_id"], d["reported_version"],
                   float(d["version_changed_at"]), int(d["ban_code"]), d["ban_reason"],
                   d["pinned_release_id"], bool(d["registered"]))


@dataclass
class Query:
    """What a check-in says, whichever endpoint it came through."""

    channel: str  # v1 | v2
    key_type: str | None
    device_id: str | None
    project_key: str | None
    firmware_name: str | None
    version: str | None
    ip: str
    alt_project_key: str | None = None
    alt_firmware_name: str | None = None
    script_name: str | None = None  # v2: PROJECT, used when firmware_name is absent


@dataclass
class Outcome:
    code: int  # 0 = serve
    msg: str
    product: ProductInfo | None = None
    device: DeviceState | None = None
    release: ReleaseInfo | None = None
    target: FotaVersion | None = None
    fota_sn: str | None = None
    reason: str = ""

    @property
    def serve(self) -> bool:
        return self.code == 0

    @property
    def status(self) -> int:
        return 200 if self.code == 0 else STATUS_FOR_CODE.get(self.code, 400)


class FotaService:
    def __init__(self, store: Store, config: ServerConfig) -> None:
        self.store = store
        self.config = config
        self.writer = BufferedWriter(store, config.flush_interval_s, config.flush_batch)
        self._catalog: Catalog | None = None
        self._checked_at = 0.0
        self._stale = False
        self._devices: dict[str, DeviceState] = {}
        store.listeners.append(self.invalidate)

    # ------------------------------------------------------------------ caches

    def catalog(self) -> Catalog:
        now = time.monotonic()
        cat = self._catalog
        if cat is None or self._stale or now - self._checked_at >= self.config.cache_ttl_s:
            self._stale = False
            gen = self.store.generation()
            if cat is None or gen != cat.generation:
                cat = self.store.load_catalog()
                self._devices = {}
                self._catalog = cat
            self._checked_at = now
        return cat

    def invalidate(self) -> None:
        """Re-check the generation on the next check-in (safe to call from any thread)."""
        self._stale = True

    def close(self) -> None:
        self.writer.close()
        if self.invalidate in self.store.listeners:
            self.store.listeners.remove(self.invalidate)

    # ------------------------------------------------------------------ audit

    def audit(self, event: str, out: Outcome, q: Query, status: int, **detail: Any) -> None:
        dev = out.device.key if out.device else (q.device_id or None)
        self.writer.audit({
            "ts": time.time(), "event": event, "device_key": dev,
            "product_id": out.product.id if out.product else None,
            "release_id": out.release.id if out.release else None,
            "status": status, "code": out.code, "ip": q.ip or None, "actor": None,
            "detail": json.dumps({"msg": out.msg, "reason": out.reason, "channel": q.channel,
                                  "version": q.version, **detail}, ensure_ascii=False, default=str)})

    # ------------------------------------------------------------------ decision

    def _find_product(self, cat: Catalog, q: Query) -> tuple[ProductInfo | None, Outcome | None]:
        keys = [k for k in (q.project_key, q.alt_project_key) if k]
        if not keys or not any(k.strip() for k in keys):
            return None, Outcome(CODE_INVALID_PROJECT, "project_key missing",
                                 reason="the request carries no project_key")
        known = [k for k in keys if k in cat.by_key]
        if not known:
            return None, Outcome(CODE_INVALID_PROJECT, f"unknown project_key {q.project_key!r}",
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
        return None, Outcome(CODE_INVALID_FIRMWARE, f"unknown firmware_name {q.firmware_name!r} for this project_key",
                             reason="known firmware names: " + ", ".join(sorted(p.firmware_name for p in candidates)))

    def _device(self, key: str, q: Query, product: ProductInfo, version: str) -> DeviceState | None:
        st = self._devices.get(key)
        if st is not None:
            return st
        row = self.store.get_device(key)
        if row is None:
            if not product.auto_register:
                return None
            row = self.store.create_device(key, q.key_type or "mac", product.id, version, q.ip)
        st = DeviceState.from_row(row)
        if len(self._devices) > 200_000:
            self._devices.clear()
        self._devices[key] = st
        return st

    def choose_release(self, cat: Catalog, product: ProductInfo, dev: DeviceState,
                       fv: FotaVersion) -> tuple[ReleaseInfo | None, str]:
        if dev.pinned_release_id is not None:
            r = cat.releases.get(dev.pinned_release_id)
            if r is not None and r.product_id == product.id:
                if not r.enabled:
                    return None, f"pinned to release {r.id}, which is paused"
                return r, f"pinned to release {r.id}"
        cands = [r for r in cat.releases_by_product.get(product.id, ()) if r.enabled and r.targets(dev.key)]
        if not cands:
            total = len(cat.releases_by_product.get(product.id, ()))
            return None, ("no release for this product" if not total
                          else "no enabled release targets this device")
        best = max(cands, key=lambda r: (r.target_for(fv.core), r.id))
        return best, f"release {best.id} targets this device ({best.target_mode})"

    def decide(self, q: Query, *, count_serve: bool = True) -> Outcome:
        cat = self.catalog()
        product, err = self._find_product(cat, q)
        if err is not None:
            return err
        assert product is not None
        key = (q.device_id or "").strip()
        if not key or key == "nil":
            if self.config.anonymous_devices == "by_ip" and q.ip:
                key = f"ip:{q.ip}"
            else:
                what = "the literal nil" if key == "nil" else "missing"
                return Outcome(CODE_INVALID_DEVICE, f"device id is {what}: send mac=, imei= or uid= "
                               "(set opts.imei in libfota2 for models it does not know)", product=product,
                               reason=f"device id {what}")
        else:
            key = normalize_device_key(key)
        if not q.version:
            return Outcome(CODE_INVALID_DEVICE, "version missing (expected core.x.z)", product=product,
                           reason="no version parameter")
        try:
            fv = FotaVersion.parse(q.version)
        except VersionError as e:
            return Outcome(CODE_INVALID_DEVICE, str(e), product=product, reason="unparseable version")
        dev = self._device(key, q, product, fv.raw)
        if dev is None:
            return Outcome(CODE_NO_PERMISSION, f"device {key} is not registered for this product",
                           product=product, reason="product does not auto-register devices")
        if dev.reported_version != fv.raw or dev.product_id != product.id:
            self._note_version(dev, product, fv, q)
        if dev.ban_code:
            code = CODE_LOOP if dev.ban_code == CODE_LOOP else CODE_NOT_ALLOWED
            return Outcome(code, dev.ban_reason or "banned", product=product, device=dev,
                           reason=f"device banned (code {dev.ban_code})")
        release, why = self.choose_release(cat, product, dev, fv)
        if release is None:
            return Outcome(CODE_LATEST, "no update", product=product, device=dev, reason=why)
        target = release.target_for(fv.core)
        if target == fv:
            return Outcome(CODE_LATEST, "already latest", product=product, device=dev, release=release,
                           target=target, reason=f"{why}; device already runs {target}")
        if target < fv and not release.forced:
            return Outcome(CODE_LATEST, "already latest", product=product, device=dev, release=release,
                           target=target, reason=f"{why}; device runs {fv}, newer than {target} "
                           "(downgrade refused: release not forced)")
        if not self.store.blobs.exists(release.sha256):
            return Outcome(CODE_WAIT, "package temporarily unavailable", product=product, device=dev,
                           release=release, target=target,
                           reason=f"artifact {release.sha256} missing from the blob store")
        out = Outcome(0, "upgrade", product=product, device=dev, release=release, target=target,
                      reason=f"{why}; {fv} -> {target}" + (" (forced downgrade)" if target < fv else ""))
        if count_serve:
            since = max(time.time() - self.config.loop_window_s, dev.version_changed_at)
            n = self.store.count_serves(dev.id, release.id, since)
            if n >= self.config.loop_max_serves:
                self.store.loop_ban(dev.id, dev.key, release.id, n, self.config.loop_window_s, fv.raw, q.ip)
                self.invalidate()
                return Outcome(CODE_LOOP, f"loop upgrade: release {release.id} served {n} times without "
                               f"the device reaching {target}; banned until an operator unbans it",
                               product=product, device=dev, release=release, target=target,
                               reason=f"loop guard tripped after {n} serves")
            out.fota_sn = self.store.record_serve(dev.id, release.id, q.channel, fv.raw)
        return out

    def _note_version(self, dev: DeviceState, product: ProductInfo, fv: FotaVersion, q: Query) -> None:
        old = dev.reported_version
        if old == fv.raw:  # only the product changed
            self.store.update_device_product(dev.id, product.id)
            dev.product_id = product.id
            return
        lift = dev.ban_code == CODE_LOOP
        self.store.device_version_changed(dev.id, dev.key, product.id, old, fv.raw, fv, q.ip, lift)
        dev.reported_version = fv.raw
        dev.version_changed_at = time.time()
        dev.product_id = product.id
        if lift:
            dev.ban_code, dev.ban_reason = 0, ""

    def push_event(self, kind: str, device_id: str, data: dict[str, Any]) -> None:
        """``PushHub(on_event=...)`` hook: push-channel events go to the audit log."""
        self.writer.audit({"ts": time.time(), "event": f"push_{kind}", "device_key": device_id,
                           "product_id": None, "release_id": None, "status": None, "code": None,
                           "ip": None, "actor": None,
                           "detail": json.dumps(data, ensure_ascii=False, default=str)})

    def seen(self, out: Outcome, ip: str) -> None:
        if out.device is not None:
            self.writer.seen(out.device.id, time.time(), ip)
