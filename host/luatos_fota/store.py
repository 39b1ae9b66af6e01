"""The durable state of a FOTA server: SQL tables (SQLite or PostgreSQL) plus content-addressed
blobs, behind one class that the HTTP app, the admin API and the CLI all use.

Why one class for all three: ``luatos-fota release add`` must work whether or not a server is
running on the same data directory, so the CLI writes through exactly the same code path, and
SQLite in WAL mode with ``busy_timeout`` lets the two processes share the file safely. Every
write that changes what a check-in may decide bumps the ``generation`` row inside the same
transaction, which is how other processes and instances learn that their caches are stale.

Release creation is crash-safe: the blob is made durable first (see blobs.py) and then the
artifact row and the release row are inserted in a single transaction, so after a kill -9 the
store holds either the whole release or none of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from luatos_common.deviceid import normalize_device_id
from luatos_common.version import FotaVersion, ScriptVersion, VersionError, format_core

from . import schema as t
from .audit import AuditEvent, detail_json
from .blobs import BLOBS_ENV, Blobs, crashpoint, open_blobs
from .catalog import Catalog, ProductInfo, ReleaseInfo, rollout_bucket
from .codes import VendorCode
from .db import Database, sqlite_url
from .errors import Conflict, NotFound, RateLimited, StoreBusy
from .groupcommit import BatchBusy, GroupCommit
from .uploads import TARGET_MODES, UploadError, check_rises, check_upload

log = logging.getLogger("luatos_fota.store")


@dataclass(frozen=True)
class SharedRate:
    """A token bucket kept in the database (``rate_buckets``): ``rate`` tokens/s up to
    ``burst``, the same rule as ratelimit.TokenBuckets but one bucket for every instance."""

    key: str
    rate: float
    burst: float


# What a publisher may ask of the preflight, and the outcomes that keep a release disabled.
PREFLIGHT_REQUESTS = ("", "pending", "skipped")
PREFLIGHT_BLOCKS = ("pending", "running", "failed")

# One rule for every part that names a device (store, push hub, admin API).
normalize_device_key = normalize_device_id


def _bucket_take_statement() -> sa.Update:
    """One token off a bucket in one statement, refilled first, only if one is there: the row
    lock the UPDATE takes (PostgreSQL re-checks the WHERE on the row it waited for; SQLite
    holds the write lock) makes it exact across instances without a separate SELECT."""
    b = t.rate_buckets.c
    now, rate, burst = (sa.bindparam(n, type_=sa.Float) for n in ("now", "rate", "burst"))
    # Clocks of different hosts may differ a little: time running backwards refills nothing.
    elapsed = sa.case((now > b.updated_at, now - b.updated_at), else_=0.0)
    refilled = b.tokens + elapsed * rate
    tokens = sa.case((refilled > burst, burst), else_=refilled)
    return (t.rate_buckets.update().where(b.key == sa.bindparam("k"), tokens >= 1.0)
            .values(tokens=tokens - 1.0, updated_at=sa.case((now > b.updated_at, now), else_=b.updated_at)))


_Q_BUCKET_TAKE = _bucket_take_statement()
_Q_BUCKET = sa.select(t.rate_buckets.c.tokens, t.rate_buckets.c.updated_at).where(
    t.rate_buckets.c.key == sa.bindparam("k"))


def _take_tokens(c: Connection, is_sqlite: bool, limits: Iterable[SharedRate], now: float) -> None:
    """One token from each shared bucket, inside the caller's write transaction (a refusal
    raises, so the caller's writes roll back with the tokens already taken). Keys in sorted
    order so two transactions cannot deadlock on PostgreSQL."""
    for lim in sorted((lim for lim in limits if lim.rate > 0), key=lambda lim: lim.key):
        burst = max(1.0, lim.burst)
        params = {"k": lim.key, "now": now, "rate": lim.rate, "burst": burst}
        if c.execute(_Q_BUCKET_TAKE, params).rowcount == 1:
            continue
        row = c.execute(_Q_BUCKET, {"k": lim.key}).first()
        if row is None:  # first use: a full bucket less this token (whoever inserts first wins)
            values = {"key": lim.key, "tokens": burst - 1.0, "updated_at": now}
            ins = (sqlite_insert(t.rate_buckets).values(**values).on_conflict_do_nothing() if is_sqlite
                   else pg_insert(t.rate_buckets).values(**values).on_conflict_do_nothing())
            # RETURNING says whether this statement inserted the row (rowcount of an upsert is not
            # reliable across drivers).
            inserted = c.execute(ins.returning(t.rate_buckets.c.key)).first() is not None
            if inserted or c.execute(_Q_BUCKET_TAKE, params).rowcount == 1:
                continue
            row = c.execute(_Q_BUCKET, {"k": lim.key}).one()
        tokens = min(burst, float(row[0]) + max(0.0, now - float(row[1])) * lim.rate)
        raise RateLimited(lim.key, max(0.0, 1.0 - tokens) / lim.rate)


# Hot-path statements built once: SQLAlchemy memoises their cache keys on the object.
_Q_DEVICE = sa.select(t.devices).where(t.devices.c.device_key == sa.bindparam("k"))
_Q_INSERT_DEVICE = t.devices.insert()
_Q_INSERT_AUDIT = t.audit.insert()
_Q_INSERT_SERVE = t.serves.insert()
# The hot serve path on SQLite runs these on the DBAPI connection (see _count_and_record_batch_sqlite).
_SQL_SERVE_LOAD = ("SELECT coalesce(sum(CASE WHEN bytes IS NULL THEN 1 ELSE 0 END), 0), "
                   "coalesce(sum(bytes), 0) FROM serves WHERE device_id = ? AND release_id = ? "
                   "AND served_at >= ?")
_SQL_INSERT_SERVE = ("INSERT INTO serves (fota_sn, device_id, release_id, channel, from_version, served_at, "
                     "bytes) VALUES (?, ?, ?, ?, ?, ?, ?)")  # the columns of _SERVE_COLUMNS, in order
_Q_DEVICE_SERVE_LOCK = sa.text("SELECT pg_advisory_xact_lock(7306151, :d)")
_Q_COUNT_SERVES = sa.select(sa.func.count()).select_from(t.serves).where(
    t.serves.c.device_id == sa.bindparam("d"), t.serves.c.release_id == sa.bindparam("r"),
    t.serves.c.served_at >= sa.bindparam("s"))
_Q_SERVE_LOAD = sa.select(
    sa.func.coalesce(sa.func.sum(sa.case((t.serves.c.bytes.is_(None), 1), else_=0)), 0),
    sa.func.coalesce(sa.func.sum(t.serves.c.bytes), 0)).where(
    t.serves.c.device_id == sa.bindparam("d"), t.serves.c.release_id == sa.bindparam("r"),
    t.serves.c.served_at >= sa.bindparam("s"))


@dataclass(frozen=True, slots=True)
class _ServeItem:
    device_id: int
    release_id: int
    since: float
    limit: int
    channel: str
    from_version: str
    mode: str
    size: int = 0  # the whole package, in bytes (0: unknown, every serve counts as one)
    nbytes: int | None = None  # what this serve sends (None: the whole package)


_SERVE_COLUMNS = ("fota_sn", "device_id", "release_id", "channel", "from_version", "served_at", "bytes")


def serves_worth(whole: int, nbytes: int, size: int) -> int:
    """How many serves a device has had of one package: rows without a byte count (older
    rows) are one each; the bytes of the others add up, and each package's worth is one
    serve. A download resumed from byte N adds only what it sent, so a cut-and-resume is
    one serve, while resuming from byte 1 again and again is as many as the bytes say."""
    if size <= 0:
        return whole
    return whole + nbytes // size


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


def _decide_serves(items: list[_ServeItem], load: Callable[[_ServeItem], tuple[int, int]],
                   ) -> tuple[list[tuple[int, str | None]], list[tuple[Any, ...]]]:
    """The loop-guard rule for one batch, in order: (serves counted before each item, its
    fota_sn or None) and the serve rows to insert (_SERVE_COLUMNS). ``load`` reads the
    database: (rows without bytes, sum of bytes) in the window; what was granted earlier in
    the batch is added, so the count stays exact. ``full`` (a 200 or a Range from 0) and
    ``continuation`` (a Range from N>0) are both served while fewer than ``limit`` packages'
    worth went out; ``head`` is never recorded."""
    out: list[tuple[int, str | None]] = []
    rows: list[tuple[Any, ...]] = []
    granted: dict[tuple[int, int], tuple[int, int]] = {}
    for it in items:
        key = (it.device_id, it.release_id)
        whole, nbytes = load(it)
        g_whole, g_bytes = granted.get(key, (0, 0))
        n = serves_worth(whole + g_whole, nbytes + g_bytes, it.size)
        if it.mode not in ("full", "continuation") or n >= it.limit:
            out.append((n, None))
            continue
        sent: int | None = (it.nbytes if it.nbytes is not None else it.size) if it.size > 0 else None
        sn = secrets.token_hex(12)
        rows.append((sn, it.device_id, it.release_id, it.channel, it.from_version, time.time(), sent))
        granted[key] = (g_whole + 1, g_bytes) if sent is None else (g_whole, g_bytes + sent)
        out.append((n, sn))
    return out, rows


def _row(r: Any) -> dict[str, Any]:
    return dict(r._mapping)


class Store:
    """Open (and migrate) the store of ``data_dir``; ``db_url`` overrides the SQLite default."""

    def __init__(self, data_dir: str | os.PathLike[str], db_url: str | None = None, *,
                 hot_busy_timeout_s: float = 2.0, blob_url: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # packages and the admin token are nobody else's business
            os.chmod(self.data_dir, 0o700)
        self.db = Database(db_url or sqlite_url(self.data_dir), hot_busy_timeout_s=hot_busy_timeout_s,
                           data_dir=self.data_dir)
        self.db_url = self.db.url
        self._serve_batches: GroupCommit[_ServeItem, tuple[int, str | None]] = GroupCommit(
            self._count_and_record_batch)
        # Packages: DATA/blobs, or an object store (blob_url, else $LUATOS_FOTA_BLOBS) cached there.
        self.blobs: Blobs = open_blobs(self.data_dir / "blobs", blob_url or os.environ.get(BLOBS_ENV))
        self.blobs.clean_tmp()

    def close(self) -> None:
        self.db.close()

    @staticmethod
    def insert_audit(c: Connection, events: Sequence[AuditEvent]) -> None:
        """Every audit entry reaches the table through here (audit.py)."""
        c.execute(_Q_INSERT_AUDIT, [e.row() for e in events])

    @classmethod
    def _audit(cls, c: Connection, event_: str, *, actor: str | None = None, device_key: str | None = None,
               product_id: int | None = None, release_id: int | None = None, code: int | None = None,
               status: int | None = None, ip: str | None = None, **detail: Any) -> None:
        """A state change's entry, in the transaction that made the change."""
        cls.insert_audit(c, [AuditEvent(event_, device_key, product_id, release_id, status, code, ip, actor,
                                        detail_json(detail or None))])

    def write_audit(self, events: Sequence[AuditEvent]) -> int:
        """Entries decided elsewhere (the buffered writer), in one transaction."""
        if not events:
            return 0
        with self.db.tx() as c:
            self.insert_audit(c, events)
        return len(events)

    # ------------------------------------------------------------------ products

    def add_product(self, project_key: str, firmware_name: str, name: str = "",
                    auto_register: bool = True, actor: str = "admin") -> dict[str, Any]:
        pkey, fw = project_key.strip(), firmware_name.strip()
        if not pkey:
            raise ValueError("project_key must not be empty")
        if not fw:
            raise ValueError("firmware_name must not be empty (libfota2 sends <PROJECT>_LuatOS-SoC_<bsp>)")
        if any(ch.isspace() for ch in fw):
            raise ValueError(f"firmware_name {fw!r} contains whitespace: the device's request line "
                             "would break (HTTP 400) before reaching the server")
        with self.db.tx() as c:
            exists = c.execute(sa.select(t.products.c.id).where(
                t.products.c.project_key == pkey, t.products.c.firmware_name == fw)).first()
            if exists:
                raise Conflict(f"product {pkey!r}/{fw!r} already exists (id {exists[0]})")
            pid = c.execute(t.products.insert().values(
                project_key=pkey, firmware_name=fw, name=name or fw, auto_register=auto_register,
                created_at=time.time())).inserted_primary_key[0]  # type: ignore[index]
            self.db.bump(c)
            self._audit(c, "product_added", actor=actor, product_id=pid, project_key=pkey,
                        firmware_name=fw)
        return self.get_product(pid)

    def get_product(self, product_id: int) -> dict[str, Any]:
        with self.db.ro() as c:
            r = c.execute(sa.select(t.products).where(t.products.c.id == product_id)).first()
        if r is None:
            raise NotFound(f"product {product_id} does not exist")
        return _row(r)

    def find_product(self, project_key: str, firmware_name: str | None = None) -> dict[str, Any]:
        with self.db.ro() as c:
            q = sa.select(t.products).where(t.products.c.project_key == project_key)
            if firmware_name is not None:
                q = q.where(t.products.c.firmware_name == firmware_name)
            rows = c.execute(q).fetchall()
        if not rows:
            what = f"{project_key!r}/{firmware_name!r}" if firmware_name else f"key {project_key!r}"
            raise NotFound(f"no product {what}; create it with `luatos-fota product add`")
        if len(rows) > 1:
            raise Conflict(f"project key {project_key!r} has {len(rows)} products; give the firmware name")
        return _row(rows[0])

    def list_products(self) -> list[dict[str, Any]]:
        with self.db.ro() as c:
            return [_row(r) for r in c.execute(sa.select(t.products).order_by(t.products.c.id))]

    def update_product(self, product_id: int, *, name: str | None = None,
                       auto_register: bool | None = None, actor: str = "admin") -> dict[str, Any]:
        vals: dict[str, Any] = {}
        if name is not None:
            vals["name"] = name
        if auto_register is not None:
            vals["auto_register"] = bool(auto_register)
        self.get_product(product_id)
        if vals:
            with self.db.tx() as c:
                c.execute(t.products.update().where(t.products.c.id == product_id).values(**vals))
                self.db.bump(c)
                self._audit(c, "product_updated", actor=actor, product_id=product_id, changes=vals)
        return self.get_product(product_id)

    def set_product_auth(self, product_id: int, mode: str, *, secret: str | None = None,
                         actor: str = "admin") -> dict[str, Any]:
        """Switch a product's device authentication (deviceauth.py); ``hmac`` gets a new random
        secret unless one is given (returned once in the result, as ``auth_secret``)."""
        from .deviceauth import AUTH_MODES, new_secret

        if mode not in AUTH_MODES:
            raise ValueError(f"auth mode must be one of {', '.join(AUTH_MODES)}, not {mode!r}")
        self.get_product(product_id)
        vals: dict[str, Any] = {"auth_mode": mode}
        if mode == "hmac":
            vals["auth_secret"] = secret or new_secret()
        with self.db.tx() as c:
            c.execute(t.products.update().where(t.products.c.id == product_id).values(**vals))
            self.db.bump(c)
            self._audit(c, "product_auth", actor=actor, product_id=product_id, mode=mode)
        return self.get_product(product_id)

    def import_device_tokens(self, product_id: int, tokens: Iterable[tuple[str, str]], *,
                             actor: str = "admin") -> int:
        """Set per-device tokens (``token`` mode): (device id, token) pairs, replacing older ones."""
        from .deviceauth import MAX_TOKEN_LEN, token_hash

        self.get_product(product_id)
        rows = {}
        for n, (dev, tok) in enumerate(tokens, 1):
            key, tok = normalize_device_key(str(dev).strip()), str(tok).strip()
            if not key or len(key) > 64:
                raise ValueError(f"row {n}: device id {dev!r} must be 1..64 characters")
            if len(tok) < 16 or len(tok) > MAX_TOKEN_LEN:
                raise ValueError(f"row {n} ({key}): token must be 16..{MAX_TOKEN_LEN} characters, not {len(tok)}")
            rows[key] = token_hash(tok)
        now = time.time()
        with self.db.tx() as c:
            if rows:
                c.execute(t.device_tokens.delete().where(t.device_tokens.c.device_key.in_(list(rows))))
                c.execute(t.device_tokens.insert(), [{"device_key": k, "product_id": product_id,
                                                      "token_sha256": h, "created_at": now}
                                                     for k, h in rows.items()])
            self.db.bump(c, devices_only=True)
            self._audit(c, "device_tokens", actor=actor, product_id=product_id, count=len(rows))
        return len(rows)

    def device_token_hash(self, device_key: str) -> tuple[int, str] | None:
        """(product id, token SHA-256) of a device's imported token, or None."""
        with self.db.ro() as c:
            r = c.execute(sa.select(t.device_tokens.c.product_id, t.device_tokens.c.token_sha256)
                          .where(t.device_tokens.c.device_key == device_key)).first()
        return (int(r[0]), str(r[1])) if r else None

    # ------------------------------------------------------------------ releases

    def add_release(self, data: bytes, *, product_id: int, version: str | None = None,
                    core: str | int | None = None, kind: str | None = None, filename: str | None = None,
                    notes: str = "", enabled: bool = True, forced: bool = False,
                    percent: float | None = None, devices: Iterable[str] | None = None,
                    allow_downgrade: bool = False, preflight: str = "",
                    actor: str = "admin") -> dict[str, Any]:
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
        product = self.get_product(product_id)
        up = check_upload(data, filename=filename, version=version, core=core, kind=kind,
                          firmware_name=product["firmware_name"])
        dev_list = sorted({normalize_device_key(d) for d in (devices or []) if d.strip()})
        if percent is not None and not (0 <= float(percent) <= 100):
            raise UploadError("percent", f"percent {percent} is outside 0..100")
        if dev_list and percent is not None:
            raise UploadError("percent", "give either a device list or a percentage, not both")
        mode = "devices" if dev_list else ("percent" if percent is not None else "all")
        with self.db.ro() as c:  # before the (possibly large) blob write; repeated in the transaction
            self._refuse_duplicate(c, product_id, up)
            self._refuse_not_above(c, product_id, up, allow_downgrade)
        sha = self.blobs.put(data)
        crashpoint("before_db")
        now = time.time()
        with self.db.tx() as c:
            self._refuse_duplicate(c, product_id, up)
            downgrade = self._refuse_not_above(c, product_id, up, allow_downgrade)
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
            self._audit(c, "release_added", actor=actor, product_id=product_id, release_id=rid,
                        version=str(up.script_version), core=up.core_version, kind=up.kind,
                        sha256=sha, size=len(data), version_source=up.version_source,
                        project=up.project, target=mode, percent=percent, devices=len(dev_list),
                        downgrade="; ".join(downgrade) or None, preflight=preflight or None)
            if preflight == "skipped":
                self._audit(c, "preflight_skipped", actor=actor, product_id=product_id,
                            release_id=rid, reason="skipped by the operator")
        crashpoint("committed")
        return self.get_release(rid)

    @staticmethod
    def _refuse_duplicate(c: Connection, product_id: int, up: Any) -> None:
        rows = c.execute(sa.select(t.releases.c.id, t.releases.c.script_version, t.releases.c.kind,
                                   t.releases.c.core_version).where(t.releases.c.product_id == product_id))
        for rid, sv_text, kind, core in rows:
            sv = ScriptVersion.parse(sv_text)
            same_core = (kind == "script" and up.kind == "script") or core == up.core_version
            if (sv.x, sv.z) == (up.script_version.x, up.script_version.z) and kind == up.kind and same_core:
                raise Conflict(f"release {rid} of this product already carries version {sv_text} "
                               f"({kind}); devices could not tell them apart")

    @staticmethod
    def _refuse_not_above(c: Connection, product_id: int, up: Any, allow: bool) -> list[str]:
        rels = [(r.id, r.script_version, r.kind, r.core_version) for r in c.execute(
            sa.select(t.releases.c.id, t.releases.c.script_version, t.releases.c.kind,
                      t.releases.c.core_version).where(t.releases.c.product_id == product_id))]
        versions = [v for (v,) in c.execute(
            sa.select(t.devices.c.reported_version).distinct().where(
                t.devices.c.product_id == product_id, t.devices.c.reported_version != ""))]
        return check_rises(up, rels, versions, allow_downgrade=allow)

    def _release_query(self) -> sa.Select[Any]:
        r, a, p = t.releases, t.artifacts, t.products
        return (sa.select(r, a.c.sha256, a.c.size, a.c.kind.label("package_kind"),
                          p.c.project_key, p.c.firmware_name)
                .join(a, a.c.id == r.c.artifact_id).join(p, p.c.id == r.c.product_id))

    def _release_dict(self, c: Connection, row: Any) -> dict[str, Any]:
        d = _row(row)
        sv = ScriptVersion.parse(d["script_version"])
        d["script_x"], d["script_z"] = sv.x, sv.z
        d["core_num"] = d["core_version"]
        d["core_version"] = format_core(d["core_version"]) if d["core_version"] is not None else None
        d["devices"] = [x[0] for x in c.execute(
            sa.select(t.release_devices.c.device_key).where(t.release_devices.c.release_id == d["id"])
            .order_by(t.release_devices.c.device_key))]
        d["download_path"] = f"/dl/{d['sha256']}.bin"
        try:
            d["preflight_result"] = json.loads(d.pop("preflight")) if d.get("preflight") else None
        except ValueError:
            d["preflight_result"] = None
        return d

    def get_release(self, release_id: int) -> dict[str, Any]:
        with self.db.ro() as c:
            row = c.execute(self._release_query().where(t.releases.c.id == release_id)).first()
            if row is None:
                raise NotFound(f"release {release_id} does not exist")
            return self._release_dict(c, row)

    def list_releases(self, product_id: int | None = None) -> list[dict[str, Any]]:
        with self.db.ro() as c:
            q = self._release_query().order_by(t.releases.c.id)
            if product_id is not None:
                q = q.where(t.releases.c.product_id == product_id)
            return [self._release_dict(c, r) for r in c.execute(q).fetchall()]

    def archive_release(self, release_id: int, *, actor: str = "admin") -> dict[str, Any]:
        """Retire a release for good: it is paused, never served again, and listed apart. Its
        package stays (devices that have it keep it; the audit keeps naming it)."""
        rel = self.get_release(release_id)
        if rel["archived"]:
            return rel
        with self.db.tx() as c:
            c.execute(t.releases.update().where(t.releases.c.id == release_id)
                      .values(archived=True, enabled=False))
            self.db.bump(c)
            self._audit(c, "release_archived", actor=actor, release_id=release_id,
                        was_enabled=bool(rel["enabled"]))
        return self.get_release(release_id)

    def update_release(self, release_id: int, *, enabled: bool | None = None, forced: bool | None = None,
                       notes: str | None = None, actor: str = "admin") -> dict[str, Any]:
        rel = self.get_release(release_id)
        if enabled and rel["archived"]:
            raise Conflict(f"release {release_id} is archived; archived releases are not served "
                           "again (publish the package as a new release instead)")
        if enabled and rel["preflight_status"] in PREFLIGHT_BLOCKS:
            summary = (rel["preflight_result"] or {}).get("summary", "")
            raise Conflict(f"release {release_id} cannot be enabled: its preflight is "
                           f"{rel['preflight_status']}" + (f" ({summary})" if summary else ""))
        vals = {k: v for k, v in (("enabled", enabled), ("forced", forced), ("notes", notes)) if v is not None}
        if vals:
            with self.db.tx() as c:
                c.execute(t.releases.update().where(t.releases.c.id == release_id).values(**vals))
                self.db.bump(c)
                ev = "release_updated"
                if set(vals) == {"enabled"}:
                    ev = "release_enabled" if enabled else "release_paused"
                self._audit(c, ev, actor=actor, release_id=release_id, changes=vals)
        return self.get_release(release_id)

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

    def request_preflight(self, release_id: int, *, actor: str = "admin") -> dict[str, Any]:
        """Queue the release's preflight again (after one that could not run, or a worker
        that died): it is pending, and disabled until it passes."""
        rel = self.get_release(release_id)
        with self.db.tx() as c:
            c.execute(t.releases.update().where(t.releases.c.id == release_id).values(
                preflight_status="pending", enabled=False,
                enable_on_pass=bool(rel["enabled"] or rel["enable_on_pass"])))
            self.db.bump(c)
            self._audit(c, "preflight_requested", actor=actor, product_id=rel["product_id"],
                        release_id=release_id, previous=rel["preflight_status"] or None)
        return self.get_release(release_id)

    def record_preflight(self, release_id: int, result: dict[str, Any], *,
                         actor: str = "preflight") -> dict[str, Any]:
        """Store a preflight result with the release; a pass enables it when that was asked.
        A fail (or "could not preflight") keeps it disabled; the audit gets the outcome."""
        status = str(result.get("status", "failed"))
        if status not in ("passed", "failed", "unsupported"):
            status = "failed"
        rel = self.get_release(release_id)
        enable = status == "passed" and bool(rel["enable_on_pass"])
        with self.db.tx() as c:
            vals: dict[str, Any] = {"preflight_status": status,
                                    "preflight": json.dumps(result, default=str)}
            if enable:
                vals["enabled"] = True
            c.execute(t.releases.update().where(t.releases.c.id == release_id).values(**vals))
            self.db.bump(c)
            self._audit(c, "preflight", actor=actor, product_id=rel["product_id"],
                        release_id=release_id, outcome=status, summary=result.get("summary"),
                        wall_s=result.get("wall_s"), virtual_ms=result.get("virtual_ms"),
                        warnings=result.get("warnings") or [], enabled=enable)
        return self.get_release(release_id)

    def previous_release(self, release_id: int) -> dict[str, Any] | None:
        """The product's release a device most likely runs before this one: the newest enabled
        (or preflight-passed) release created before it."""
        rel = self.get_release(release_id)
        older = [r for r in self.list_releases(rel["product_id"]) if r["id"] < release_id
                 and (r["enabled"] or r["preflight_status"] == "passed")]
        return older[-1] if older else None

    def set_release_target(self, release_id: int, mode: str, *, percent: float | None = None,
                           devices: Iterable[str] | None = None, actor: str = "admin") -> dict[str, Any]:
        if mode not in TARGET_MODES:
            raise ValueError(f"target mode {mode!r}: expected one of {', '.join(TARGET_MODES)}")
        self.get_release(release_id)
        dev_list = sorted({normalize_device_key(d) for d in (devices or []) if d.strip()})
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
            self._audit(c, "release_target", actor=actor, release_id=release_id, mode=mode,
                        percent=percent, devices=dev_list[:50], device_count=len(dev_list))
        return self.get_release(release_id)

    def list_artifacts(self) -> list[dict[str, Any]]:
        with self.db.ro() as c:
            return [_row(r) for r in c.execute(sa.select(t.artifacts).order_by(t.artifacts.c.id))]

    def gc_blobs(self, min_age_s: float = 3600.0) -> list[str]:
        """Delete stored packages no artifact row references (left by a crash between the blob
        rename and the commit) once older than ``min_age_s``; returns their digests."""
        with self.db.ro() as c:
            used = [r[0] for r in c.execute(sa.select(t.artifacts.c.sha256))]
        return self.blobs.gc(used, min_age_s)

    def artifact_by_id(self, artifact_id: int) -> dict[str, Any] | None:
        with self.db.ro() as c:
            r = c.execute(sa.select(t.artifacts).where(t.artifacts.c.id == artifact_id)).first()
        return _row(r) if r else None

    def artifact_by_sha(self, sha: str) -> dict[str, Any] | None:
        with self.db.ro() as c:
            r = c.execute(sa.select(t.artifacts).where(t.artifacts.c.sha256 == sha.lower())).first()
        return _row(r) if r else None

    # ------------------------------------------------------------------ catalogue (hot path)

    def load_catalog(self) -> Catalog:
        with self.db.ro() as c:
            gen = int(c.execute(sa.select(t.generation.c.value).where(t.generation.c.id == 1)).scalar_one())
            cat = Catalog(gen)
            for p in c.execute(sa.select(t.products)):
                cat.add_product(ProductInfo(p.id, p.project_key, p.firmware_name, p.name, bool(p.auto_register),
                                            p.auth_mode or "none", p.auth_secret or ""))
            devs: dict[int, set[str]] = {}
            for rid, key in c.execute(sa.select(t.release_devices.c.release_id, t.release_devices.c.device_key)):
                devs.setdefault(rid, set()).add(key)
            q = (sa.select(t.releases, t.artifacts.c.sha256, t.artifacts.c.size)
                 .join(t.artifacts, t.artifacts.c.id == t.releases.c.artifact_id))
            for r in c.execute(q):
                cat.add_release(ReleaseInfo(
                    r.id, r.product_id, ScriptVersion.parse(r.script_version), r.core_version, r.kind,
                    bool(r.enabled), bool(r.forced), r.target_mode, float(r.percent),
                    frozenset(devs.get(r.id, ())), r.artifact_id, r.sha256, int(r.size)))
        return cat

    # ------------------------------------------------------------------ devices

    def get_device(self, device_key: str) -> dict[str, Any] | None:
        with self.db.ro() as c:
            r = c.execute(_Q_DEVICE, {"k": device_key}).first()
        return _row(r) if r else None

    def require_device(self, device_key: str) -> dict[str, Any]:
        key = normalize_device_key(device_key)
        d = self.get_device(key)
        if d is None:
            raise NotFound(f"device {device_key!r} has never checked in and is not registered")
        return d

    def create_device(self, device_key: str, key_type: str, product_id: int | None, version: str,
                      ip: str, *, registered: bool = False, limits: Iterable[SharedRate] = ()) -> dict[str, Any]:
        """Insert (or return the existing row of) a device; safe against a concurrent insert.

        ``limits``: shared buckets that each give a token in the same transaction as the insert
        (raises :class:`RateLimited`, writing nothing, when one is empty). A device that another
        request inserted first costs no token: the whole transaction rolls back."""
        now = time.time()
        row = {"device_key": device_key, "key_type": key_type, "product_id": product_id,
               "reported_version": version, "version_changed_at": now, "first_seen": now,
               "last_seen": now, "last_ip": ip, "check_ins": 0, "registered": registered,
               "ban_code": 0, "ban_reason": "", "banned_at": None, "pinned_release_id": None}
        try:
            with (self.db.tx() if registered else self.db.hot_tx()) as c:
                res = c.execute(_Q_INSERT_DEVICE, {k: v for k, v in row.items() if k not in (
                    "ban_code", "ban_reason", "banned_at", "pinned_release_id")})
                row["id"] = res.inserted_primary_key[0]  # type: ignore[index]
                self.insert_audit(c, [AuditEvent("device_registered", device_key, product_id, ip=ip or None,
                                                 actor="admin" if registered else None,
                                                 detail=detail_json({"version": version}), ts=now)])
                # After the insert: a device inserted concurrently fails above and costs no token.
                _take_tokens(c, self.db.is_sqlite, limits, now)
            return row
        except sa.exc.IntegrityError:  # registered concurrently (another request or instance)
            d = self.get_device(device_key)
            assert d is not None
            return d

    def prune_rate_buckets(self, idle_s: float) -> int:
        """Drop buckets untouched for ``idle_s`` (long enough to have refilled: they hold no
        information), so per-IP rows do not accumulate."""
        with self.db.tx() as c:
            res = c.execute(t.rate_buckets.delete().where(t.rate_buckets.c.updated_at < time.time() - idle_s))
        return int(res.rowcount or 0)

    def rate_bucket(self, key: str) -> tuple[float, float] | None:
        """(tokens, updated_at) of a shared bucket, for operators and tests."""
        with self.db.ro() as c:
            r = c.execute(sa.select(t.rate_buckets.c.tokens, t.rate_buckets.c.updated_at)
                          .where(t.rate_buckets.c.key == key)).first()
        return (float(r[0]), float(r[1])) if r else None

    def register_device(self, device_key: str, product_id: int | None = None,
                        key_type: str = "mac", actor: str = "admin") -> dict[str, Any]:
        key = normalize_device_key(device_key)
        if not key or key == "nil":
            raise ValueError(f"device id {device_key!r} is not usable")
        d = self.get_device(key)
        if d is None:
            return self.create_device(key, key_type, product_id, "", "", registered=True)
        if product_id is not None:
            self.get_product(int(product_id))
        with self.db.tx() as c:
            vals: dict[str, Any] = {"registered": True}
            if product_id is not None:
                vals["product_id"] = int(product_id)
            c.execute(t.devices.update().where(t.devices.c.id == d["id"]).values(**vals))
            self.db.bump(c, devices_only=True)
            self._audit(c, "device_registered", actor=actor, device_key=key, product_id=product_id)
        return self.require_device(key)

    def device_version_changed(self, device_id: int, device_key: str, product_id: int | None,
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
                history = [json.loads(d or "{}") for (d,) in c.execute(
                    sa.select(t.audit.c.detail).where(
                        t.audit.c.device_key == device_key, t.audit.c.event == "version_changed",
                        t.audit.c.ts >= now - window_s).order_by(t.audit.c.id))]
                changes = [(h.get("old", ""), h.get("new", "")) for h in history if h.get("old")]
                oscillation = version_oscillation([*changes, (old, new)])
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
                self._audit(c, "unbanned", device_key=device_key, product_id=product_id, actor="version-change",
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
            self._audit(c, "version_changed", device_key=device_key, product_id=product_id, ip=ip or None,
                        old=old, new=new, confirmed_serves=confirmed)
            if oscillation:
                self.db.bump(c, devices_only=True)
                self._audit(c, "loop_ban", device_key=device_key, product_id=product_id, code=VendorCode.LOOP,
                            ip=ip or None, reason="oscillation", versions=oscillation,
                            window_s=window_s, version=new)
                return str(vals["ban_reason"])
        return None

    def update_device_product(self, device_id: int, product_id: int, *, device_key: str | None = None,
                              old_product_id: int | None = None, ip: str = "") -> None:
        """An unregistered device now checks in with another (open) product's key: follow it."""
        with self.db.hot_tx() as c:
            c.execute(t.devices.update().where(t.devices.c.id == device_id).values(product_id=product_id))
            self._audit(c, "device_moved", device_key=device_key, product_id=product_id, ip=ip or None,
                        old_product_id=old_product_id)

    def touch_devices(self, seen: dict[int, tuple[float, str, int]]) -> None:
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

    def ban(self, device_key: str, reason: str = "", *, code: int = VendorCode.NOT_ALLOWED, actor: str = "admin") -> dict[str, Any]:
        d = self.require_device(device_key)
        with self.db.tx() as c:
            c.execute(t.devices.update().where(t.devices.c.id == d["id"]).values(
                ban_code=code, ban_reason=reason or "banned by an operator", banned_at=time.time()))
            self.db.bump(c, devices_only=True)
            self._audit(c, "banned", actor=actor, device_key=d["device_key"], code=code, reason=reason)
        return self.require_device(d["device_key"])

    def unban(self, device_key: str, *, actor: str = "admin") -> dict[str, Any]:
        d = self.require_device(device_key)
        with self.db.tx() as c:
            c.execute(t.devices.update().where(t.devices.c.id == d["id"]).values(
                ban_code=0, ban_reason="", banned_at=None, version_changed_at=time.time()))
            self.db.bump(c, devices_only=True)
            self._audit(c, "unbanned", actor=actor, device_key=d["device_key"],
                        previous_code=d["ban_code"], previous_reason=d["ban_reason"])
        return self.require_device(d["device_key"])

    def pin(self, device_key: str, release_id: int | None, *, actor: str = "admin") -> dict[str, Any]:
        d = self.require_device(device_key)
        if release_id is not None:
            rel = self.get_release(release_id)
            if d["product_id"] is not None and rel["product_id"] != d["product_id"]:
                raise Conflict(f"release {release_id} belongs to product {rel['product_id']}, "
                               f"device {d['device_key']} to product {d['product_id']}")
        with self.db.tx() as c:
            c.execute(t.devices.update().where(t.devices.c.id == d["id"]).values(pinned_release_id=release_id))
            self.db.bump(c, devices_only=True)
            self._audit(c, "pinned" if release_id else "unpinned", actor=actor,
                        device_key=d["device_key"], release_id=release_id)
        return self.require_device(d["device_key"])

    def list_devices(self, *, product_id: int | None = None, banned: bool | None = None,
                     limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        q = sa.select(t.devices).order_by(t.devices.c.id).limit(limit).offset(offset)
        if product_id is not None:
            q = q.where(t.devices.c.product_id == product_id)
        if banned is True:
            q = q.where(t.devices.c.ban_code != 0)
        elif banned is False:
            q = q.where(t.devices.c.ban_code == 0)
        with self.db.ro() as c:
            return [_row(r) for r in c.execute(q)]

    # ------------------------------------------------------------------ serves and loop guard

    def count_serves(self, device_id: int, release_id: int, since: float) -> int:
        with self.db.ro() as c:
            return int(c.execute(_Q_COUNT_SERVES, {"d": device_id, "r": release_id, "s": since}).scalar_one())

    def serve_load(self, device_id: int, release_id: int, since: float) -> tuple[int, int]:
        """(serve rows without a byte count, bytes of the others) since ``since``."""
        with self.db.ro() as c:
            whole, nbytes = c.execute(_Q_SERVE_LOAD, {"d": device_id, "r": release_id, "s": since}).one()
        return int(whole), int(nbytes)

    def count_and_record(self, device_id: int, release_id: int, since: float, limit: int, channel: str,
                         from_version: str, mode: str, *, size: int = 0,
                         nbytes: int | None = None) -> tuple[int, str | None]:
        """Loop-guard count and, when it allows, the serve row, committed before this returns.
        ``mode``: ``full`` and ``continuation`` record below ``limit`` packages' worth of
        ``size`` bytes (see :func:`serves_worth`), ``nbytes`` being what this one sends;
        ``head`` never. Returns (serves counted before this one, fota_sn or None).

        Concurrent calls share one transaction (group commit, see groupcommit.py); each item is
        counted after the ones before it in the batch, so the count stays exact."""
        item = _ServeItem(device_id, release_id, since, limit, channel, from_version, mode, size, nbytes)
        try:
            return self._serve_batches.submit(item, self.db.hot_busy_timeout_s)
        except BatchBusy as e:
            raise StoreBusy(f"database busy: {e}") from None

    def _count_and_record_batch(self, items: list[_ServeItem]) -> list[tuple[int, str | None]]:
        if self.db.is_sqlite:
            return self._count_and_record_batch_sqlite(items)
        with self.db.hot_tx() as c:
            # SQLite's write lock serialises instances; on PostgreSQL each device's
            # count-then-insert is made exact by a transaction lock on that device, taken in id
            # order so two instances' batches cannot deadlock.
            for device_id in sorted({it.device_id for it in items}):
                c.execute(_Q_DEVICE_SERVE_LOCK, {"d": device_id})
            def load(it: _ServeItem) -> tuple[int, int]:
                whole, nbytes = c.execute(_Q_SERVE_LOAD, {"d": it.device_id, "r": it.release_id,
                                                          "s": it.since}).one()
                return int(whole), int(nbytes)

            out, rows = _decide_serves(items, load)
            if rows:
                c.execute(_Q_INSERT_SERVE, [dict(zip(_SERVE_COLUMNS, r, strict=True)) for r in rows])
            return out

    def _count_and_record_batch_sqlite(self, items: list[_ServeItem]) -> list[tuple[int, str | None]]:
        """The same as the SQLAlchemy path above, on the DBAPI connection: every package a
        check-in serves passes here, and Core's per-statement machinery was three quarters of
        its cost (0.15 ms against 0.03 ms raw), on the event loop's GIL."""
        with self.db.turn(self.db.hot_busy_timeout_s):
            raw = self.db.hot_engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("BEGIN IMMEDIATE")  # waits at most busy_timeout for other processes
                try:
                    def load(it: _ServeItem) -> tuple[int, int]:
                        cur.execute(_SQL_SERVE_LOAD, (it.device_id, it.release_id, it.since))
                        whole, nbytes = cur.fetchone() or (0, 0)
                        return int(whole), int(nbytes)

                    out, rows = _decide_serves(items, load)
                    if rows:
                        cur.executemany(_SQL_INSERT_SERVE, rows)
                    cur.execute("COMMIT")
                except BaseException:
                    dbapi = raw.driver_connection
                    if dbapi is not None and dbapi.in_transaction:
                        dbapi.rollback()
                    raise
                finally:
                    cur.close()
            finally:
                raw.close()  # back to the pool
        return out

    def serve_times(self, device_id: int, release_id: int, since: float,
                    ) -> list[tuple[float, int | None, str]]:
        """(served_at, bytes, fota_sn) of this release's serves to this device since ``since``
        (seeds in-memory counts)."""
        with self.db.ro() as c:
            return sorted((float(r[0]), None if r[1] is None else int(r[1]), str(r[2])) for r in c.execute(
                sa.select(t.serves.c.served_at, t.serves.c.bytes, t.serves.c.fota_sn).where(
                    t.serves.c.device_id == device_id, t.serves.c.release_id == release_id,
                    t.serves.c.served_at >= since)))

    def serve_not_delivered(self, fota_sn: str, sent: int, *, device_key: str | None, release_id: int | None,
                            ip: str = "", planned: int = 0) -> None:
        """The client hung up before the serve's bytes were written: the serve row keeps only
        what was sent (so the loop guard counts that), and the audit says so."""
        self.db.drain()
        with self.db.tx() as c:
            c.execute(t.serves.update().where(t.serves.c.fota_sn == fota_sn).values(bytes=sent))
            self._audit(c, "serve_aborted", device_key=device_key, release_id=release_id, ip=ip or None,
                        fota_sn=fota_sn, bytes_sent=sent, bytes_planned=planned,
                        reason="the client hung up before the package was written")

    def insert_serves(self, rows: list[dict[str, Any]]) -> None:
        """Batched serve rows (fota_sn issued in memory); see BufferedWriter.serve."""
        with self.db.tx() as c:
            c.execute(t.serves.insert(), rows)

    def serve_by_sn(self, fota_sn: str) -> dict[str, Any] | None:
        self.db.drain()
        with self.db.ro() as c:
            r = c.execute(sa.select(t.serves, t.devices.c.device_key, t.devices.c.ban_code, t.artifacts.c.sha256)
                          .join(t.devices, t.devices.c.id == t.serves.c.device_id)
                          .join(t.releases, t.releases.c.id == t.serves.c.release_id)
                          .join(t.artifacts, t.artifacts.c.id == t.releases.c.artifact_id)
                          .where(t.serves.c.fota_sn == fota_sn)).first()
        return _row(r) if r else None

    def record_serve(self, device_id: int, release_id: int, channel: str, from_version: str,
                     nbytes: int | None = None) -> str:
        sn = secrets.token_hex(12)
        with self.db.hot_tx() as c:
            c.execute(t.serves.insert().values(fota_sn=sn, device_id=device_id, release_id=release_id,
                                               channel=channel, from_version=from_version,
                                               served_at=time.time(), bytes=nbytes))
        return sn

    def loop_ban(self, device_id: int, device_key: str, release_id: int, serves: int, window_s: float,
                 version: str, ip: str) -> str:
        reason = (f"loop: release {release_id} served {serves} times within "
                  f"{window_s / 3600:g} h while the device kept reporting {version}")
        with self.db.hot_tx() as c:
            c.execute(t.devices.update().where(t.devices.c.id == device_id).values(
                ban_code=VendorCode.LOOP, banned_at=time.time(), ban_reason=reason))
            self.db.bump(c, devices_only=True)
            self._audit(c, "loop_ban", device_key=device_key, release_id=release_id, code=VendorCode.LOOP,
                        status=VendorCode.LOOP.status, ip=ip or None, serves=serves, window_s=window_s, version=version)
        return reason

    def record_result(self, fota_sn: str, result_code: int, ip: str = "") -> dict[str, Any]:
        self.db.drain()
        with self.db.tx() as c:
            row = c.execute(sa.select(t.serves, t.devices.c.device_key)
                            .join(t.devices, t.devices.c.id == t.serves.c.device_id)
                            .where(t.serves.c.fota_sn == fota_sn)).first()
            if row is None:
                raise NotFound(f"unknown fota_sn {fota_sn!r}")
            now = time.time()
            ok = result_code in (0, 1)
            vals: dict[str, Any] = {"result_code": result_code, "reported_at": now}
            if ok and row.confirmed_at is None:
                vals["confirmed_at"] = now
            c.execute(t.serves.update().where(t.serves.c.id == row.id).values(**vals))
            self._audit(c, "fota_result", device_key=row.device_key, release_id=row.release_id,
                        code=result_code, ip=ip or None, fota_sn=fota_sn, success=ok)
            return {"fota_sn": fota_sn, "release_id": row.release_id, "device_key": row.device_key,
                    "success": ok}

    # ------------------------------------------------------------------ audit and stats

    def query_audit(self, *, device: str | None = None, event_: str | None = None,
                    release_id: int | None = None, limit: int = 200,
                    before_id: int | None = None) -> list[dict[str, Any]]:
        q = sa.select(t.audit).order_by(t.audit.c.id.desc()).limit(max(1, min(limit, 10000)))
        if device:
            q = q.where(t.audit.c.device_key == normalize_device_key(device))
        if event_:
            q = q.where(t.audit.c.event == event_)
        if release_id is not None:
            q = q.where(t.audit.c.release_id == release_id)
        if before_id is not None:
            q = q.where(t.audit.c.id < before_id)
        with self.db.ro() as c:
            out = []
            for r in c.execute(q):
                d = _row(r)
                try:
                    d["detail"] = json.loads(d["detail"]) if d["detail"] else {}
                except ValueError:
                    pass
                out.append(d)
            return out

    def prune_audit(self, older_than_s: float, *, actor: str = "admin") -> int:
        """Delete audit rows older than ``older_than_s`` seconds; returns how many went."""
        cutoff = time.time() - older_than_s
        with self.db.tx() as c:
            n = c.execute(t.audit.delete().where(t.audit.c.ts < cutoff)).rowcount
            self._audit(c, "audit_pruned", actor=actor, rows=n, older_than_s=older_than_s)
        return int(n or 0)

    def prune_audit_rows(self, max_rows: int) -> int:
        """Keep only the newest ``max_rows`` audit rows (automatic retention by count)."""
        with self.db.ro() as c:
            top = c.execute(sa.select(sa.func.max(t.audit.c.id))).scalar()
        if not top or top <= max_rows:
            return 0
        with self.db.tx() as c:
            n = c.execute(t.audit.delete().where(t.audit.c.id <= int(top) - max_rows)).rowcount
        return int(n or 0)

    def recover_serve_audit(self, window_s: float = 300.0) -> int:
        """Re-create the audit rows of serves whose row went down with the process.

        Serve rows (``serves``) are committed before the package is sent; their audit rows go
        through the batched writer, so a kill -9 can lose the last flush interval of them. At
        start-up, every check-in serve (channels v1, v2) from shortly before the newest audit row
        on, whose ``fota_sn`` no audit row mentions, gets a ``serve`` row marked ``recovered``."""
        with self.db.ro() as c:
            last = c.execute(sa.select(sa.func.max(t.audit.c.ts))).scalar()
            since = (float(last) if last is not None else time.time()) - window_s
            rows = c.execute(sa.select(t.serves.c.fota_sn, t.serves.c.channel, t.serves.c.served_at,
                                       t.serves.c.release_id, t.serves.c.from_version, t.devices.c.device_key,
                                       t.releases.c.product_id)
                             .join(t.devices, t.devices.c.id == t.serves.c.device_id)
                             .join(t.releases, t.releases.c.id == t.serves.c.release_id)
                             .where(t.serves.c.served_at >= since, t.serves.c.channel.in_(("v1", "v2")))).fetchall()
            if not rows:
                return 0
            seen = set()
            for (detail,) in c.execute(sa.select(t.audit.c.detail).where(t.audit.c.ts >= since - 60,
                                                                          t.audit.c.event.in_(("serve", "v2_check")))):
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    sn = json.loads(detail or "{}").get("fota_sn")
                    if sn:
                        seen.add(sn)
        lost = [r for r in rows if r.fota_sn not in seen]
        if lost:
            with self.db.tx() as c:
                self.insert_audit(c, [AuditEvent(
                    "serve", r.device_key, r.product_id, r.release_id, code=VendorCode.OK, actor="recovery",
                    detail=detail_json({"fota_sn": r.fota_sn, "channel": r.channel, "version": r.from_version,
                                        "recovered": True}), ts=float(r.served_at)) for r in lost])
        return len(lost)

    def check(self, repair: bool = False) -> dict[str, Any]:
        """Verify the database against the blob store (``luatos-fota check``).

        Reports artifacts whose blob is missing or does not hash to its digest, blobs no
        artifact references, and writers' temp files. ``repair`` moves corrupt blobs to
        ``blobs/quarantine/`` (the release answers "temporarily unavailable" instead of serving
        a bad package), pauses releases whose package is missing or corrupt, and deletes
        unreferenced blobs and dead temp files."""
        with self.db.ro() as c:
            arts = [dict(r._mapping) for r in c.execute(sa.select(t.artifacts.c.id, t.artifacts.c.sha256,
                                                                   t.artifacts.c.size))]
            rels = [dict(r._mapping) for r in c.execute(sa.select(t.releases.c.id, t.releases.c.artifact_id,
                                                                   t.releases.c.enabled))]
        missing, corrupt = [], []
        for a in arts:
            path = self.blobs.path(a["sha256"])
            if not path.is_file():
                missing.append(a["sha256"])
                continue
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda f=f: f.read(1 << 20), b""):  # type: ignore[misc]
                    h.update(chunk)
            if h.hexdigest() != a["sha256"] or path.stat().st_size != int(a["size"]):
                corrupt.append(a["sha256"])
        used = {a["sha256"] for a in arts}
        orphans = [d for d in self.blobs.all_digests() if d not in used]
        tmp_dir = self.data_dir / "blobs" / "tmp"  # local writers' temp files (also an S3 store's cache)
        temps = sorted(p.name for p in tmp_dir.iterdir()) if tmp_dir.is_dir() else []
        bad_ids = {a["id"] for a in arts if a["sha256"] in set(missing) | set(corrupt)}
        bad_releases = [r["id"] for r in rels if r["artifact_id"] in bad_ids]
        report: dict[str, Any] = {"artifacts": len(arts), "missing_blobs": missing, "corrupt_blobs": corrupt,
                                  "orphan_blobs": orphans, "temp_files": temps,
                                  "releases_affected": bad_releases, "repaired": False}
        if repair:
            q = self.data_dir / "blobs" / "quarantine"
            for sha in corrupt:
                q.mkdir(mode=0o700, exist_ok=True)
                with contextlib.suppress(OSError):
                    os.replace(self.blobs.path(sha), q / sha)
            for rid in bad_releases:
                self.update_release(rid, enabled=False, actor="check")
            report["orphans_removed"] = self.blobs.gc(used, 600.0)  # not an upload in progress
            report["temp_removed"] = self.blobs.clean_tmp(600.0)
            report["repaired"] = True
        report["ok"] = not (missing or corrupt or orphans or temps)
        return report

    def release_stats(self, release_id: int | None = None) -> list[dict[str, Any]]:
        """Rollout progress: devices targeted, served (distinct), confirmed (distinct)."""
        self.db.drain()
        rels = [self.get_release(release_id)] if release_id is not None else self.list_releases()
        out = []
        with self.db.ro() as c:
            for rel in rels:
                served = c.execute(sa.select(sa.func.count(sa.distinct(t.serves.c.device_id))).where(
                    t.serves.c.release_id == rel["id"])).scalar_one()
                serves_total = c.execute(sa.select(sa.func.count()).select_from(t.serves).where(
                    t.serves.c.release_id == rel["id"])).scalar_one()
                confirmed = c.execute(sa.select(sa.func.count(sa.distinct(t.serves.c.device_id))).where(
                    t.serves.c.release_id == rel["id"], t.serves.c.confirmed_at.is_not(None))).scalar_one()
                failed = c.execute(sa.select(sa.func.count(sa.distinct(t.serves.c.device_id))).where(
                    t.serves.c.release_id == rel["id"], t.serves.c.result_code.is_not(None),
                    t.serves.c.result_code.not_in([0, 1]))).scalar_one()
                keys = [k for (k,) in c.execute(sa.select(t.devices.c.device_key).where(
                    t.devices.c.product_id == rel["product_id"]))]
                if rel["target_mode"] == "all":
                    targeted = len(keys)
                elif rel["target_mode"] == "devices":
                    targeted = len(rel["devices"])
                else:
                    limit = round(rel["percent"] * 100)
                    targeted = sum(1 for k in keys if rollout_bucket(k, rel["id"]) < limit)
                out.append({"release_id": rel["id"], "product_id": rel["product_id"],
                            "script_version": rel["script_version"], "core_version": rel["core_version"],
                            "kind": rel["kind"], "enabled": bool(rel["enabled"]),
                            "target_mode": rel["target_mode"], "percent": rel["percent"],
                            "known_devices": len(keys), "targeted": targeted, "served": served,
                            "serves": serves_total, "confirmed": confirmed, "failed": failed})
        return out
