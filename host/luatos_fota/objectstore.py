"""Packages in an S3-compatible bucket (MinIO, Alibaba Cloud OSS, AWS S3, ...), cached locally.

Why: instances that share only the database (and no disk) must all be able to serve every
package. The bucket is the source of truth; each instance keeps a read-through copy in its own
``DATA/blobs`` directory (the same content-addressed layout as the local store), so a device
download, and every Range request that resumes it, is answered from local disk after the first
fetch, and keeps working while the bucket is unreachable.

Objects are named ``<prefix>/<aa>/<sha256>`` and are immutable: a put of content that is
already there is a no-op, a fetched object is checked against its digest before it is cached.

URL: ``s3://BUCKET[/PREFIX][?endpoint=URL&region=R&addressing=path|virtual|auto]``.
Credentials come from the standard AWS chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
``~/.aws/credentials``, instance roles), never from the URL, so the URL can be logged. Without
``endpoint=`` the endpoint comes from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (botocore
reads them) or is AWS itself. ``addressing`` defaults to ``path`` when an endpoint is given
(MinIO and most self-hosted stores); Alibaba Cloud OSS needs ``virtual``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import metrics
from .blobs import STALE_AFTER_S, BlobStore, BlobStoreUnavailable

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 30.0
ATTEMPTS = 2
_ADDRESSING = ("path", "virtual", "auto")
_URL_KEYS = ("endpoint", "region", "addressing")


def _not_found(e: Exception) -> bool:
    code = str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class S3BlobStore:
    """Content-addressed packages in a bucket, with ``cache`` (a :class:`BlobStore`) in front."""

    def __init__(self, client: Any, bucket: str, prefix: str, cache: BlobStore, *, label: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cache = cache
        self.label = label
        self._fetching: dict[str, threading.Lock] = {}
        self._fetching_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, cache_dir: Path) -> S3BlobStore:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"blob store {url!r}: expected s3://BUCKET[/PREFIX]")
        opts = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(opts) - set(_URL_KEYS))
        if unknown:
            raise ValueError(f"blob store {url!r}: unknown option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(_URL_KEYS)}")
        endpoint = opts.get("endpoint") or None
        addressing = opts.get("addressing") or ("path" if endpoint else "auto")
        if addressing not in _ADDRESSING:
            raise ValueError(f"blob store {url!r}: addressing={addressing!r}, expected one of "
                             f"{', '.join(_ADDRESSING)}")
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ValueError(f"blob store {url!r} needs boto3: pip install 'luatos-fota-kit[s3]'") from None

        config = Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                        retries={"max_attempts": ATTEMPTS, "mode": "standard"},
                        s3={"addressing_style": addressing},
                        # Many S3-compatible stores reject the CRC headers newer botocore adds by
                        # default; content is verified against its sha256 on every fetch anyway.
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
        session = boto3.session.Session()
        client = session.client("s3", endpoint_url=endpoint, config=config,
                                region_name=opts.get("region") or session.region_name or "us-east-1")
        label = f"s3://{parts.netloc}{parts.path}" + (f" at {endpoint}" if endpoint else "")
        return cls(client, parts.netloc, parts.path, BlobStore(cache_dir), label=label)

    def key(self, sha256: str) -> str:
        sha = self.cache.path(sha256).name  # validates the digest
        return f"{self.prefix}/{sha[:2]}/{sha}" if self.prefix else f"{sha[:2]}/{sha}"

    def _unavailable(self, doing: str, e: Exception) -> BlobStoreUnavailable:
        return BlobStoreUnavailable(f"object store {self.label}: {doing} failed: {e}")

    def _call(self, doing: str, fn: Any, **kw: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kw)
        except ClientError as e:
            if _not_found(e):
                raise FileNotFoundError(f"{self.label}: no object {kw.get('Key', '')}") from None
            raise self._unavailable(doing, e) from None
        except BotoCoreError as e:
            raise self._unavailable(doing, e) from None

    # ------------------------------------------------------------------ Blobs

    def path(self, sha256: str) -> Path:
        """Where the local copy is (or would be) kept."""
        return self.cache.path(sha256)

    def put(self, data: bytes) -> str:
        """Store ``data`` in the bucket (then in the local cache); returns its sha256. Raises
        :class:`BlobStoreUnavailable` if the bucket cannot take it: a release is recorded only
        after this returned, so no instance is ever told about a package it cannot fetch."""
        sha = hashlib.sha256(data).hexdigest()
        key = self.key(sha)
        try:
            head = self._call("checking " + key, self.client.head_object, Bucket=self.bucket, Key=key)
            present = int(head.get("ContentLength", -1)) == len(data)
        except FileNotFoundError:
            present = False
        if not present:
            self._call("uploading " + key, self.client.put_object, Bucket=self.bucket, Key=key, Body=data,
                       ContentType="application/octet-stream")
        self.cache.put(data)
        return sha

    def read(self, sha256: str) -> bytes:
        """The package from the local cache, fetched from the bucket on first use. Raises
        FileNotFoundError (no such object), ValueError (digest mismatch) or
        :class:`BlobStoreUnavailable`."""
        local = self.cache.path(sha256)
        try:
            return local.read_bytes()
        except FileNotFoundError:
            pass
        with self._lock_for(local.name):
            try:  # another thread may have fetched it while this one waited
                return local.read_bytes()
            except FileNotFoundError:
                pass
            key = self.key(sha256)
            with metrics.blob_fetch():
                obj = self._call("fetching " + key, self.client.get_object, Bucket=self.bucket, Key=key)
                try:
                    data = obj["Body"].read()
                except Exception as e:  # connection dropped mid-body
                    raise self._unavailable("reading " + key, e) from None
            got = hashlib.sha256(data).hexdigest()
            if got != local.name:
                raise ValueError(f"object store {self.label}: {key} holds content with sha256 {got}")
            self.cache.put(data)
            return data

    def exists(self, sha256: str) -> bool:
        if self.cache.exists(sha256):
            return True
        try:
            self._call("checking", self.client.head_object, Bucket=self.bucket, Key=self.key(sha256))
        except FileNotFoundError:
            return False
        return True

    def clean_tmp(self, stale_after_s: float = STALE_AFTER_S) -> int:
        return self.cache.clean_tmp(stale_after_s)

    def _objects(self) -> Iterable[tuple[str, float]]:
        """(sha256, last-modified epoch) of every package object in the bucket."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else "")
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"].rsplit("/", 1)[-1]
                    if len(name) == 64:
                        yield name, obj["LastModified"].timestamp()
        except (BotoCoreError, ClientError) as e:
            raise self._unavailable("listing", e) from None

    def all_digests(self) -> list[str]:
        return sorted(sha for sha, _ in self._objects())

    def gc(self, referenced: Iterable[str], min_age_s: float = STALE_AFTER_S) -> list[str]:
        """Delete unreferenced objects older than ``min_age_s`` from the bucket, and unreferenced
        copies from this instance's cache (other instances drop theirs on their own gc)."""
        keep = {r.lower() for r in referenced}
        now = time.time()
        removed = [sha for sha, mtime in self._objects() if sha not in keep and now - mtime >= min_age_s]
        for sha in removed:
            self._call("deleting", self.client.delete_object, Bucket=self.bucket, Key=self.key(sha))
        self.cache.gc(keep, min_age_s)
        return removed

    def check(self) -> None:
        self._call("checking the bucket", self.client.head_bucket, Bucket=self.bucket)

    def describe(self) -> str:
        return f"{self.label} (cache {self.cache.root})"

    def _lock_for(self, sha: str) -> threading.Lock:
        with self._fetching_lock:
            if len(self._fetching) > 1024:
                self._fetching = {k: v for k, v in self._fetching.items() if v.locked()}
            return self._fetching.setdefault(sha, threading.Lock())

