"""Releases and the packages they carry (artifacts): publishing, targeting, preflight, the
catalogue the check-in path decides from, and rollout statistics.

Release creation is crash-safe: the blob is made durable first (see blobs.py) and then the
artifact row, the release row and its audit entry are inserted in a single transaction, so
after a kill -9 the store holds either the whole release or none of it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from luatos_common.deviceid import normalize_device_key
from luatos_common.version import ScriptVersion

from . import schema as t
from .blobs import Blobs, crashpoint
from .catalog import Catalog, ProductInfo, ReleaseInfo, rollout_bucket
from .db import Database
from .errors import Conflict, NotFound
from .records import Artifact, Release, ReleaseStats
from .repo_audit import audit_change
from .repo_products import ProductsRepo
from .uploads import TARGET_MODES, UploadError, check_rises, check_upload

# What a publisher may ask of the preflight, and the outcomes that keep a release disabled.
PREFLIGHT_REQUESTS = ("", "pending", "skipped")
PREFLIGHT_BLOCKS = ("pending", "running", "failed")

_Q_CATALOG_GENERATION = sa.select(t.generation.c.value).where(t.generation.c.id == t.GEN_CATALOG)
_Q_CATALOG_RELEASES = (sa.select(t.releases, t.artifacts.c.sha256, t.artifacts.c.size)
                       .join(t.artifacts, t.artifacts.c.id == t.releases.c.artifact_id))
_Q_RELEASE_DEVICES = sa.select(t.release_devices.c.release_id, t.release_devices.c.device_key)


def _release_query() -> sa.Select[Any]:
    r, a, p = t.releases, t.artifacts, t.products
    return (sa.select(r, a.c.sha256, a.c.size, a.c.kind.label("package_kind"),
                      p.c.project_key, p.c.firmware_name)
            .join(a, a.c.id == r.c.artifact_id).join(p, p.c.id == r.c.product_id))


def _release(c: Connection, row: Any) -> Release:
    device_keys = tuple(x[0] for x in c.execute(
        sa.select(t.release_devices.c.device_key).where(t.release_devices.c.release_id == row.id)
        .order_by(t.release_devices.c.device_key)))
    return Release.from_row(row, device_keys)


def _refuse_duplicate(c: Connection, product_id: int, up: Any) -> None:
    rows = c.execute(sa.select(t.releases.c.id, t.releases.c.script_version, t.releases.c.kind,
                               t.releases.c.core_version).where(t.releases.c.product_id == product_id))
    for rid, sv_text, kind, core in rows:
        sv = ScriptVersion.parse(sv_text)
        same_core = (kind == "script" and up.kind == "script") or core == up.core_version
        if (sv.x, sv.z) == (up.script_version.x, up.script_version.z) and kind == up.kind and same_core:
            raise Conflict(f"release {rid} of this product already carries version {sv_text} "
                           f"({kind}); devices could not tell them apart")


def _refuse_not_above(c: Connection, product_id: int, up: Any, allow: bool) -> list[str]:
    rels = [(r.id, r.script_version, r.kind, r.core_version) for r in c.execute(
        sa.select(t.releases.c.id, t.releases.c.script_version, t.releases.c.kind,
                  t.releases.c.core_version).where(t.releases.c.product_id == product_id))]
    versions = [v for (v,) in c.execute(
        sa.select(t.devices.c.reported_version).distinct().where(
            t.devices.c.product_id == product_id, t.devices.c.reported_version != ""))]
    return check_rises(up, rels, versions, allow_downgrade=allow)


class ReleasesRepo:
    def __init__(self, db: Database, blobs: Blobs, products: ProductsRepo) -> None:
        self.db = db
        self.blobs = blobs
        self.products = products

    # ------------------------------------------------------------------ publishing

    def add(self, data: bytes, *, product_id: int, version: str | None = None,
            core: str | int | None = None, kind: str | None = None, filename: str | None = None,
            notes: str = "", enabled: bool = True, forced: bool = False,
            percent: float | None = None, device_keys: Iterable[str] | None = None,
            allow_downgrade: bool = False, preflight: str = "",
            actor: str = "admin") -> Release:
        """Validate, store the blob durably, then insert artifact + release in one transaction.

        Refused (UploadError) unless the package is what it claims (uploads.check_upload) and
        its version is above every version the product's devices may be running; with
        ``allow_downgrade`` it is published anyway and the finding is recorded in the release
        notes and the audit.

        ``preflight``: ``"pending"`` creates the release disabled until its preflight passes
        (:meth:`record_preflight` enables it then, if ``enabled`` was asked); ``"skipped"`` is
        the operator's override, recorded in the audit; ``""`` (library callers) asks none."""
        if preflight not in PREFLIGHT_REQUESTS:
            raise ValueError(f"preflight {preflight!r}: expected one of {PREFLIGHT_REQUESTS}")
        product = self.products.get(product_id)
        up = check_upload(data, filename=filename, version=version, core=core, kind=kind,
                          firmware_name=product.firmware_name)
        dev_list = sorted({normalize_device_key(d) for d in (device_keys or []) if d.strip()})
        if percent is not None and not (0 <= float(percent) <= 100):
            raise UploadError("percent", f"percent {percent} is outside 0..100")
        if dev_list and percent is not None:
            raise UploadError("percent", "give either a device list or a percentage, not both")
        mode = "devices" if dev_list else ("percent" if percent is not None else "all")
        with self.db.ro() as c:  # before the (possibly large) blob write; repeated in the transaction
            _refuse_duplicate(c, product_id, up)
            _refuse_not_above(c, product_id, up, allow_downgrade)
        sha = self.blobs.put(data)
        crashpoint("before_db")
        now = time.time()
        with self.db.tx() as c:
            _refuse_duplicate(c, product_id, up)
            downgrade = _refuse_not_above(c, product_id, up, allow_downgrade)
            art = c.execute(sa.select(t.artifacts.c.id).where(t.artifacts.c.sha256 == sha)).first()
            if art is None:
                art_id = c.execute(t.artifacts.insert().values(
                    sha256=sha, size=len(data), kind=up.package.kind, core_version=up.core_version
                    if up.kind == "full" else None,
                    details=json.dumps({**up.package.details,
                                        "files": sorted(up.package.files or {})}, default=str),
                    filename=filename or "", created_at=now)).inserted_primary_key[0]  # type: ignore[index]
            else:
                art_id = art[0]
            rid = c.execute(t.releases.insert().values(
                product_id=product_id, artifact_id=art_id, script_version=str(up.script_version),
                core_version=up.core_version, kind=up.kind,
                notes="\n".join([notes, *up.notes, *downgrade]).strip(),
                enabled=enabled and preflight != "pending", forced=forced,
                target_mode=mode, percent=float(percent) if percent is not None else 100.0,
                preflight_status=preflight, enable_on_pass=enabled and preflight == "pending",
                created_at=now)).inserted_primary_key[0]  # type: ignore[index]
            if dev_list:
                c.execute(t.release_devices.insert(), [{"release_id": rid, "device_key": d} for d in dev_list])
            crashpoint("in_transaction")
            self.db.bump(c)
            audit_change(c, "release_added", actor=actor, product_id=product_id, release_id=rid,
                         version=str(up.script_version), core=up.core_version, kind=up.kind,
                         sha256=sha, size=len(data), version_source=up.version_source,
                         project=up.project, target=mode, percent=percent, devices=len(dev_list),
                         downgrade="; ".join(downgrade) or None, preflight=preflight or None)
            if preflight == "skipped":
                audit_change(c, "preflight_skipped", actor=actor, product_id=product_id,
                             release_id=rid, reason="skipped by the operator")
        crashpoint("committed")
        return self.get(rid)

    def get(self, release_id: int) -> Release:
        with self.db.ro() as c:
            row = c.execute(_release_query().where(t.releases.c.id == release_id)).first()
            if row is None:
                raise NotFound(f"release {release_id} does not exist")
            return _release(c, row)

    def all(self, product_id: int | None = None) -> list[Release]:
        with self.db.ro() as c:
            q = _release_query().order_by(t.releases.c.id)
            if product_id is not None:
                q = q.where(t.releases.c.product_id == product_id)
            return [_release(c, r) for r in c.execute(q).fetchall()]

    def archive(self, release_id: int, *, actor: str = "admin") -> Release:
        """Retire a release for good: it is paused, never served again, and listed apart. Its
        package stays (devices that have it keep it; the audit keeps naming it)."""
        rel = self.get(release_id)
        if rel.archived:
            return rel
        with self.db.tx() as c:
            c.execute(t.releases.update().where(t.releases.c.id == release_id)
                      .values(archived=True, enabled=False))
            self.db.bump(c)
            audit_change(c, "release_archived", actor=actor, release_id=release_id, was_enabled=rel.enabled)
        return self.get(release_id)

    def update(self, release_id: int, *, enabled: bool | None = None, forced: bool | None = None,
               notes: str | None = None, actor: str = "admin") -> Release:
        rel = self.get(release_id)
        if enabled and rel.archived:
            raise Conflict(f"release {release_id} is archived; archived releases are not served "
                           "again (publish the package as a new release instead)")
        if enabled and rel.preflight_status in PREFLIGHT_BLOCKS:
            summary = (rel.preflight_result or {}).get("summary", "")
            raise Conflict(f"release {release_id} cannot be enabled: its preflight is "
                           f"{rel.preflight_status}" + (f" ({summary})" if summary else ""))
        vals = {k: v for k, v in (("enabled", enabled), ("forced", forced), ("notes", notes)) if v is not None}
        if vals:
            with self.db.tx() as c:
                c.execute(t.releases.update().where(t.releases.c.id == release_id).values(**vals))
                self.db.bump(c)
                ev = "release_updated"
                if set(vals) == {"enabled"}:
                    ev = "release_enabled" if enabled else "release_paused"
                audit_change(c, ev, actor=actor, release_id=release_id, changes=vals)
        return self.get(release_id)

    def set_target(self, release_id: int, mode: str, *, percent: float | None = None,
                   device_keys: Iterable[str] | None = None, actor: str = "admin") -> Release:
        if mode not in TARGET_MODES:
            raise ValueError(f"target mode {mode!r}: expected one of {', '.join(TARGET_MODES)}")
        self.get(release_id)
        dev_list = sorted({normalize_device_key(d) for d in (device_keys or []) if d.strip()})
        if mode == "percent":
            if percent is None or not (0 <= float(percent) <= 100):
                raise ValueError(f"percent {percent!r}: expected a number in 0..100")
        if mode == "devices" and not dev_list:
            raise ValueError("target mode 'devices' needs at least one device id")
        with self.db.tx() as c:
            vals: dict[str, Any] = {"target_mode": mode}
            if percent is not None:
                vals["percent"] = float(percent)
            c.execute(t.releases.update().where(t.releases.c.id == release_id).values(**vals))
            if mode == "devices":
                c.execute(t.release_devices.delete().where(t.release_devices.c.release_id == release_id))
                c.execute(t.release_devices.insert(), [{"release_id": release_id, "device_key": d} for d in dev_list])
            self.db.bump(c)
            audit_change(c, "release_target", actor=actor, release_id=release_id, mode=mode,
                         percent=percent, devices=dev_list[:50], device_count=len(dev_list))
        return self.get(release_id)

    # ------------------------------------------------------------------ preflight

    def pending_preflights(self) -> list[int]:
        """Releases waiting for a preflight, oldest first. (One a killed worker left "running"
        stays so until an operator asks again: another instance may still be running it.)"""
        with self.db.ro() as c:
            return [r[0] for r in c.execute(
                sa.select(t.releases.c.id).where(t.releases.c.preflight_status == "pending")
                .order_by(t.releases.c.id))]

    def claim_preflight(self, release_id: int) -> bool:
        """Mark a pending preflight running; False if another worker (or instance) has it."""
        with self.db.tx() as c:
            n = c.execute(t.releases.update().where(
                t.releases.c.id == release_id, t.releases.c.preflight_status == "pending")
                .values(preflight_status="running")).rowcount
        return bool(n)

    def request_preflight(self, release_id: int, *, actor: str = "admin") -> Release:
        """Queue the release's preflight again (after one that could not run, or a worker
        that died): it is pending, and disabled until it passes."""
        rel = self.get(release_id)
        with self.db.tx() as c:
            c.execute(t.releases.update().where(t.releases.c.id == release_id).values(
                preflight_status="pending", enabled=False,
                enable_on_pass=bool(rel.enabled or rel.enable_on_pass)))
            self.db.bump(c)
            audit_change(c, "preflight_requested", actor=actor, product_id=rel.product_id,
                         release_id=release_id, previous=rel.preflight_status or None)
        return self.get(release_id)

    def record_preflight(self, release_id: int, result: dict[str, Any], *,
                         actor: str = "preflight") -> Release:
        """Store a preflight result with the release; a pass enables it when that was asked.
        A fail (or "could not preflight") keeps it disabled; the audit gets the outcome."""
        status = str(result.get("status", "failed"))
        if status not in ("passed", "failed", "unsupported"):
            status = "failed"
        rel = self.get(release_id)
        enable = status == "passed" and rel.enable_on_pass
        with self.db.tx() as c:
            vals: dict[str, Any] = {"preflight_status": status,
                                    "preflight": json.dumps(result, default=str)}
            if enable:
                vals["enabled"] = True
            c.execute(t.releases.update().where(t.releases.c.id == release_id).values(**vals))
            self.db.bump(c)
            audit_change(c, "preflight", actor=actor, product_id=rel.product_id,
                         release_id=release_id, outcome=status, summary=result.get("summary"),
                         wall_s=result.get("wall_s"), virtual_ms=result.get("virtual_ms"),
                         warnings=result.get("warnings") or [], enabled=enable)
        return self.get(release_id)

    def previous(self, release_id: int) -> Release | None:
        """The product's release a device most likely runs before this one: the newest enabled
        (or preflight-passed) release created before it."""
        rel = self.get(release_id)
        older = [r for r in self.all(rel.product_id) if r.id < release_id
                 and (r.enabled or r.preflight_status == "passed")]
        return older[-1] if older else None

    # ------------------------------------------------------------------ artifacts

    def artifacts(self) -> list[Artifact]:
        with self.db.ro() as c:
            return [Artifact.from_row(r) for r in c.execute(sa.select(t.artifacts).order_by(t.artifacts.c.id))]

    def artifact_by_id(self, artifact_id: int) -> Artifact | None:
        with self.db.ro() as c:
            r = c.execute(sa.select(t.artifacts).where(t.artifacts.c.id == artifact_id)).first()
        return Artifact.from_row(r) if r else None

    def artifact_by_sha(self, sha: str) -> Artifact | None:
        with self.db.ro() as c:
            r = c.execute(sa.select(t.artifacts).where(t.artifacts.c.sha256 == sha.lower())).first()
        return Artifact.from_row(r) if r else None

    def artifact_refs(self) -> tuple[list[tuple[int, str, int]], list[tuple[int, int]]]:
        """``([(artifact id, sha256, size)], [(release id, artifact id)])``: what ``luatos-fota
        check`` compares with the blob store, read in one go."""
        with self.db.ro() as c:
            arts = [(int(r[0]), str(r[1]), int(r[2])) for r in c.execute(
                sa.select(t.artifacts.c.id, t.artifacts.c.sha256, t.artifacts.c.size))]
            rels = [(int(r[0]), int(r[1])) for r in c.execute(sa.select(t.releases.c.id, t.releases.c.artifact_id))]
        return arts, rels

    def gc_blobs(self, min_age_s: float = 3600.0) -> list[str]:
        """Delete stored packages no artifact row references (left by a crash between the blob
        rename and the commit) once older than ``min_age_s``; returns their digests."""
        with self.db.ro() as c:
            used = [r[0] for r in c.execute(sa.select(t.artifacts.c.sha256))]
        return self.blobs.gc(used, min_age_s)

    # ------------------------------------------------------------------ catalogue (hot path)

    def load_catalog(self) -> Catalog:
        with self.db.ro() as c:
            cat = Catalog(int(c.execute(_Q_CATALOG_GENERATION).scalar_one()))
            for p in c.execute(sa.select(t.products)):
                cat.add_product(ProductInfo(p.id, p.project_key, p.firmware_name, p.name, bool(p.auto_register),
                                            p.auth_mode or "none", p.auth_secret or ""))
            devs: dict[int, set[str]] = {}
            for rid, key in c.execute(_Q_RELEASE_DEVICES):
                devs.setdefault(rid, set()).add(key)
            for r in c.execute(_Q_CATALOG_RELEASES):
                cat.add_release(ReleaseInfo(
                    r.id, r.product_id, ScriptVersion.parse(r.script_version), r.core_version, r.kind,
                    bool(r.enabled), bool(r.forced), r.target_mode, float(r.percent),
                    frozenset(devs.get(r.id, ())), r.artifact_id, r.sha256, int(r.size)))
        return cat

    # ------------------------------------------------------------------ rollout statistics

    def stats(self, release_id: int | None = None) -> list[ReleaseStats]:
        """Rollout progress: devices targeted, served (distinct), confirmed (distinct)."""
        self.db.drain()
        rels = [self.get(release_id)] if release_id is not None else self.all()
        out = []
        s = t.serves.c
        with self.db.ro() as c:
            for rel in rels:
                served = c.execute(sa.select(sa.func.count(sa.distinct(s.device_id))).where(
                    s.release_id == rel.id)).scalar_one()
                serves_total = c.execute(sa.select(sa.func.count()).select_from(t.serves).where(
                    s.release_id == rel.id)).scalar_one()
                confirmed = c.execute(sa.select(sa.func.count(sa.distinct(s.device_id))).where(
                    s.release_id == rel.id, s.confirmed_at.is_not(None))).scalar_one()
                failed = c.execute(sa.select(sa.func.count(sa.distinct(s.device_id))).where(
                    s.release_id == rel.id, s.result_code.is_not(None),
                    s.result_code.not_in([0, 1]))).scalar_one()
                keys = [k for (k,) in c.execute(sa.select(t.devices.c.device_key).where(
                    t.devices.c.product_id == rel.product_id))]
                if rel.target_mode == "all":
                    targeted = len(keys)
                elif rel.target_mode == "devices":
                    targeted = len(rel.device_keys)
                else:
                    limit = round(rel.percent * 100)
                    targeted = sum(1 for k in keys if rollout_bucket(k, rel.id) < limit)
                out.append(ReleaseStats(rel.id, rel.product_id, rel.script_version, rel.core_version, rel.kind,
                                        rel.enabled, rel.target_mode, rel.percent, len(keys), targeted,
                                        int(served), int(serves_total), int(confirmed), int(failed)))
        return out
