"""The durable state of a FOTA server: a database (SQLite or PostgreSQL, db.py) and
content-addressed blobs, with one repository per kind of thing kept, composed here.

Why one composition root for the HTTP app, the admin API and the CLI: ``luatos-fota release
add`` must work whether or not a server is running on the same data directory, so the CLI
writes through exactly the same repositories, and SQLite in WAL mode with ``busy_timeout`` lets
the two processes share the file safely.

The repositories (repo_*.py) each take the :class:`~luatos_fota.db.Database` and hand out
frozen records (records.py), never rows or dicts:

- ``store.products``: products and device credentials (repo_products.py)
- ``store.releases``: releases, their artifacts, targeting, preflight, the check-in
  catalogue and rollout stats (repo_releases.py)
- ``store.devices``: devices, bans, pins, version changes (repo_devices.py)
- ``store.serves``: serves, the loop-guard count, upgrade results (repo_serves.py)
- ``store.audit``: the audit log, one writer (repo_audit.py)
- ``store.push_sessions``: the push channel across instances (repo_push.py)
- ``store.rates``: shared token buckets (repo_rates.py)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

from .blobs import BLOBS_ENV, Blobs, open_blobs
from .db import Database, sqlite_url
from .errors import Conflict, NotFound, RateLimited, StoreBusy
from .repo_audit import AuditRepo
from .repo_devices import DevicesRepo, normalize_device_key, version_oscillation
from .repo_products import ProductsRepo
from .repo_push import PushSessionsRepo
from .repo_rates import RatesRepo, SharedRate
from .repo_releases import PREFLIGHT_BLOCKS, PREFLIGHT_REQUESTS, ReleasesRepo
from .repo_serves import ServesRepo, serves_worth

__all__ = ["PREFLIGHT_BLOCKS", "PREFLIGHT_REQUESTS", "Conflict", "NotFound", "RateLimited", "SharedRate", "Store",
           "StoreBusy", "normalize_device_key", "serves_worth", "version_oscillation"]


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
        # Packages: DATA/blobs, or an object store (blob_url, else $LUATOS_FOTA_BLOBS) cached there.
        self.blobs: Blobs = open_blobs(self.data_dir / "blobs", blob_url or os.environ.get(BLOBS_ENV))
        self.blobs.clean_tmp()
        self.audit = AuditRepo(self.db)
        self.products = ProductsRepo(self.db)
        self.releases = ReleasesRepo(self.db, self.blobs, self.products)
        self.devices = DevicesRepo(self.db, self.products, self.releases)
        self.serves = ServesRepo(self.db)
        self.rates = RatesRepo(self.db)
        self.push_sessions = PushSessionsRepo(self.db)

    def close(self) -> None:
        self.db.close()

    def check(self, repair: bool = False) -> dict[str, Any]:
        """Verify the database against the blob store (``luatos-fota check``).

        Reports artifacts whose blob is missing or does not hash to its digest, blobs no
        artifact references, and writers' temp files. ``repair`` moves corrupt blobs to
        ``blobs/quarantine/`` (the release answers "temporarily unavailable" instead of serving
        a bad package), pauses releases whose package is missing or corrupt, and deletes
        unreferenced blobs and dead temp files."""
        arts, rels = self.releases.artifact_refs()
        missing, corrupt = [], []
        for _aid, sha, size in arts:
            path = self.blobs.path(sha)
            if not path.is_file():
                missing.append(sha)
                continue
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda f=f: f.read(1 << 20), b""):  # type: ignore[misc]
                    h.update(chunk)
            if h.hexdigest() != sha or path.stat().st_size != size:
                corrupt.append(sha)
        used = {sha for _aid, sha, _size in arts}
        orphans = [d for d in self.blobs.all_digests() if d not in used]
        tmp_dir = self.data_dir / "blobs" / "tmp"  # local writers' temp files (also an S3 store's cache)
        temps = sorted(p.name for p in tmp_dir.iterdir()) if tmp_dir.is_dir() else []
        bad_ids = {aid for aid, sha, _size in arts if sha in set(missing) | set(corrupt)}
        bad_releases = [rid for rid, aid in rels if aid in bad_ids]
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
                self.releases.update(rid, enabled=False, actor="check")
            report["orphans_removed"] = self.blobs.gc(used, 600.0)  # not an upload in progress
            report["temp_removed"] = self.blobs.clean_tmp(600.0)
            report["repaired"] = True
        report["ok"] = not (missing or corrupt or orphans or temps)
        return report
