"""Content-addressed package storage under ``DATA/blobs/``.

A blob is written to ``blobs/tmp/<host>-<pid>-<random>``, fsynced, renamed to ``blobs/<aa>/<sha256>``
and the directory fsynced, so after a kill -9 a blob path either does not exist or holds the
complete content. The database references a blob only after :meth:`BlobStore.put` returned, so
no release can point at a partial file; leftovers in ``tmp/`` from dead writers are removed by
:meth:`BlobStore.clean_tmp` (the host name is in the temp name because several instances may
share one data directory over a network volume: a pid says nothing about another host's
processes). Blobs no artifact references (a crash between the rename and the commit) are
removed by :meth:`BlobStore.gc` (``luatos-fota blobs gc``).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from luatos_common.fsutil import fsync_dir

CHUNK = 1 << 20
# A temp file or unreferenced blob younger than this may belong to a write still in progress.
STALE_AFTER_S = 3600.0
HOST_TAG = socket.gethostname().replace("-", "_") or "host"
_CRASH_ENV = "LUATOS_FOTA_CRASH_AT"
BLOBS_ENV = "LUATOS_FOTA_BLOBS"


def crashpoint(name: str) -> None:
    """Die by SIGKILL at a named step when ``LUATOS_FOTA_CRASH_AT`` names it (crash-safety tests)."""
    if os.environ.get(_CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BlobStoreUnavailable(OSError):
    """The package store cannot be reached (object store down, credentials refused); the
    message names the store and the cause. Uploads fail with it; nothing references a blob
    that was not stored."""


class Blobs(Protocol):
    """What the server needs from a package store; :class:`BlobStore` (a local directory, the
    default) and :class:`luatos_fota.objectstore.S3BlobStore` (S3-compatible, with a local
    read-through cache) both provide it."""

    def put(self, data: bytes) -> str: ...
    def read(self, sha256: str) -> bytes: ...
    def exists(self, sha256: str) -> bool: ...
    def path(self, sha256: str) -> Path: ...
    def clean_tmp(self, stale_after_s: float = STALE_AFTER_S) -> int: ...
    def gc(self, referenced: Iterable[str], min_age_s: float = STALE_AFTER_S) -> list[str]: ...
    def all_digests(self) -> list[str]: ...
    def check(self) -> None: ...
    def describe(self) -> str: ...


class BlobStore:
    """Packages in a local directory (one host, or several sharing a network volume)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        sha = sha256.lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha[:2] / sha

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; returns its sha256. Idempotent for identical content."""
        sha = hashlib.sha256(data).hexdigest()
        final = self.path(sha)
        if final.is_file() and final.stat().st_size == len(data):
            return sha
        tmp = self.tmp / f"{HOST_TAG}-{os.getpid()}-{secrets.token_hex(6)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            for off in range(0, len(data), CHUNK):
                os.write(fd, view[off:off + CHUNK])
                if off == 0:
                    crashpoint("blob_partial")
            crashpoint("blob_written")
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        crashpoint("blob_fsynced")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        crashpoint("blob_renamed")
        return sha

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def check(self) -> None:
        """Raise :class:`BlobStoreUnavailable` unless the directory can take new blobs."""
        if not os.access(self.tmp, os.W_OK | os.X_OK):
            raise BlobStoreUnavailable(f"blob directory {self.tmp} is not writable")

    def describe(self) -> str:
        return str(self.root)

    def clean_tmp(self, stale_after_s: float = STALE_AFTER_S) -> int:
        """Remove temp files whose writer is gone: on this host when its pid is dead, anywhere
        when older than ``stale_after_s``; returns how many were removed."""
        removed = 0
        now = time.time()
        for p in self.tmp.iterdir():
            parts = p.name.split("-")
            same_host = len(parts) >= 3 and parts[0] == HOST_TAG and parts[1].isdigit()
            try:
                age = now - p.stat().st_mtime
            except FileNotFoundError:
                continue
            if same_host:
                pid = int(parts[1])
                gone = pid != os.getpid() and not _pid_alive(pid)
            else:
                gone = False
            if gone or age > stale_after_s:
                p.unlink(missing_ok=True)
                removed += 1
        return removed

    def gc(self, referenced: Iterable[str], min_age_s: float = STALE_AFTER_S) -> list[str]:
        """Delete blobs not in ``referenced`` and older than ``min_age_s``; returns their digests."""
        keep = {r.lower() for r in referenced}
        now = time.time()
        removed = []
        for sha in self.all_digests():
            p = self.path(sha)
            try:
                if sha in keep or now - p.stat().st_mtime < min_age_s:
                    continue
            except FileNotFoundError:
                continue
            p.unlink(missing_ok=True)
            removed.append(sha)
        return removed

    def all_digests(self) -> list[str]:
        out: list[str] = []
        for d in self.root.iterdir():
            if d.is_dir() and len(d.name) == 2:
                out.extend(p.name for p in d.iterdir() if len(p.name) == 64)
        return sorted(out)


def open_blobs(root: Path, url: str | None) -> Blobs:
    """The package store for ``url``: None or ``file:`` -> the directory ``root``;
    ``s3://bucket/prefix?...`` -> an S3-compatible bucket cached in ``root``."""
    if not url or url.startswith("file:"):
        return BlobStore(Path(url[len("file:"):].removeprefix("//")) if url and len(url) > 5 else root)
    if url.startswith("s3://"):
        from .objectstore import S3BlobStore

        return S3BlobStore.from_url(url, root)
    raise ValueError(f"blob store {url!r}: expected s3://BUCKET[/PREFIX][?endpoint=URL] or file:DIR")
