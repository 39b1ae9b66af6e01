"""The admin API of a running server, behind the method names of :class:`luatos_fota.store.Store`.

Why the same names: every ``luatos-fota`` admin command is written once, against "a store";
given ``--data`` it gets the local :class:`Store`, given ``--server`` (or a profile) it gets a
:class:`RemoteStore`, so the local and the remote command can never drift apart (a CI job
publishes with ``luatos-fota release add --server URL --token T pkg.bin``). Answers the server
refuses come back as the store's own exceptions (404 -> NotFound, 409 -> Conflict, 422 ->
UploadError, 400 -> ValueError), so the CLI maps them to the same exit codes; anything else is a
:class:`RemoteError` naming the server and what it said.

Where the server and token come from (first that gives one): ``--server``/``--token``,
``$LUATOS_FOTA_SERVER``/``$LUATOS_FOTA_TOKEN``, a profile (``--profile NAME`` or
``$LUATOS_FOTA_PROFILE``) in ``$LUATOS_FOTA_CONFIG`` or ``~/.config/luatos-fota/config.toml``::

    [profile.prod]
    server = "https://fota.example.com"
    token_file = "/etc/luatos-fota/admin_token"   # or: token = "..."
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from .errors import Conflict, NotFound
from .records import AuditRecord, Device, Product, Release, ReleaseStats
from .uploads import UploadError

CONFIG_ENV = "LUATOS_FOTA_CONFIG"
API = "/admin/api"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0  # an upload of a large package is validated and stored before the answer
CHUNK = 64 << 10


class RemoteError(RuntimeError):
    """The server could not be reached, refused the token, or failed; the message says which."""


@dataclass(frozen=True)
class Target:
    server: str
    token: str


def config_path() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "luatos-fota" / "config.toml"


def load_profile(name: str, path: Path | None = None) -> dict[str, str]:
    """The ``[profile.NAME]`` table; ValueError naming the file and what is wrong."""
    p = path or config_path()
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"profile {name!r}: no config file {p} (set ${CONFIG_ENV} or create it)") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p}: not valid TOML: {e}") from None
    prof = doc.get("profile", {}).get(name)
    if not isinstance(prof, dict):
        known = ", ".join(sorted(doc.get("profile", {}))) or "none"
        raise ValueError(f"{p}: no [profile.{name}] (profiles: {known})")
    unknown = sorted(set(prof) - {"server", "token", "token_file"})
    if unknown:
        raise ValueError(f"{p}: [profile.{name}] has unknown key(s) {', '.join(unknown)}; "
                         "known: server, token, token_file")
    out = {k: str(v) for k, v in prof.items()}
    if "token_file" in out and "token" not in out:
        tf = Path(out["token_file"]).expanduser()
        try:
            out["token"] = tf.read_text().strip()
        except OSError as e:
            raise ValueError(f"{p}: [profile.{name}] token_file {tf}: {e.strerror or e}") from None
    return out


def resolve_target(server: str | None, token: str | None, profile: str | None) -> Target | None:
    """The server to talk to, or None when neither a server nor a profile was given."""
    prof = load_profile(profile) if profile else {}
    url = server or prof.get("server")
    if not url:
        if profile:
            raise ValueError(f"profile {profile!r} names no server")
        return None
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"server {url!r}: expected http://HOST:PORT or https://HOST")
    tok = token or prof.get("token")
    if not tok:
        raise ValueError(f"no admin token for {url}: give --token, $LUATOS_FOTA_TOKEN or a profile "
                         "with token/token_file")
    return Target(url.rstrip("/"), tok)


class _UploadBody:
    """A multipart body read in chunks, so the progress callback sees bytes as they leave."""

    def __init__(self, head: bytes, data: bytes, tail: bytes, progress: Callable[[int, int], None] | None):
        self._parts = [memoryview(head), memoryview(data), memoryview(tail)]
        self._total = len(head) + len(data) + len(tail)
        self._sent = 0
        self._progress = progress

    def __len__(self) -> int:
        return self._total

    def read(self, n: int = -1) -> bytes:
        n = CHUNK if n is None or n < 0 else min(n, CHUNK)
        out = bytearray()
        while self._parts and len(out) < n:
            part = self._parts[0]
            take = part[:n - len(out)]
            out += take
            if len(take) == len(part):
                self._parts.pop(0)
            else:
                self._parts[0] = part[len(take):]
        self._sent += len(out)
        if self._progress is not None and out:
            self._progress(self._sent, self._total)
        return bytes(out)


def _multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[bytes, bytes, str]:
    boundary = "luatos-fota-" + os.urandom(12).hex()
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items())
    safe = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
    head += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe}"\r\n'
             "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head, f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class RemoteStore:
    """The :class:`Store` methods the CLI uses, carried out by a server's admin API."""

    def __init__(self, target: Target, *, progress: Callable[[int, int], None] | None = None,
                 session: requests.Session | None = None) -> None:
        self.target = target
        self.progress = progress
        self.http = session or requests.Session()
        self.http.headers["Authorization"] = f"Bearer {target.token}"
        self.db_url = target.server  # what the CLI prints as "where"

    def _request(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
                 data: Any = None, headers: dict[str, str] | None = None) -> Any:
        url = f"{self.target.server}{API}{path}"
        q = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = self.http.request(method, url, params=q, data=data, headers=headers,
                                  json=body if data is None else None,
                                  timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
        except requests.RequestException as e:
            raise RemoteError(f"cannot reach {self.target.server}: {e}") from None
        try:
            obj = r.json() if r.content else {}
        except ValueError:
            obj = None
        if r.status_code < 400:
            if obj is None:
                raise RemoteError(f"{self.target.server} answered {method} {path} with non-JSON "
                                  f"({r.headers.get('content-type', '?')}); is this a luatos-fota server?")
            return obj
        msg = obj.get("msg") if isinstance(obj, dict) else (r.text[:200] or r.reason)
        if r.status_code == 404 and isinstance(obj, dict) and "msg" in obj:
            raise NotFound(msg)
        if r.status_code == 409:
            raise Conflict(msg)
        if r.status_code == 422 and isinstance(obj, dict):
            raise UploadError(str(obj.get("field", "file")), str(msg), obj.get("details"))
        if r.status_code == 400:
            raise ValueError(msg)
        if r.status_code == 401:
            raise RemoteError(f"{self.target.server} refused the admin token (401): {msg}")
        raise RemoteError(f"{self.target.server} answered {method} {path} with {r.status_code}: {msg}")

    # The repositories the CLI uses, with the local store's names (store.products, ...).

    @property
    def products(self) -> RemoteProducts:
        return RemoteProducts(self)

    @property
    def releases(self) -> RemoteReleases:
        return RemoteReleases(self)

    @property
    def devices(self) -> RemoteDevices:
        return RemoteDevices(self)

    @property
    def audit(self) -> RemoteAudit:
        return RemoteAudit(self)


class RemoteProducts:
    def __init__(self, remote: RemoteStore) -> None:
        self._request = remote._request

    def add(self, project_key: str, firmware_name: str, name: str = "", auto_register: bool = True,
            *, actor: str = "cli") -> Product:
        return Product.from_json(self._request("POST", "/products", body={
            "project_key": project_key, "firmware_name": firmware_name, "name": name,
            "auto_register": auto_register}))

    def all(self) -> list[Product]:
        return [Product.from_json(p) for p in self._request("GET", "/products")["products"]]

    def get(self, product_id: int) -> Product:
        return Product.from_json(self._request("GET", f"/products/{int(product_id)}"))

    def find(self, project_key: str, firmware_name: str | None = None) -> Product:
        found = [p for p in self.all() if p.project_key == project_key
                 and (firmware_name is None or p.firmware_name == firmware_name)]
        if len(found) == 1:
            return found[0]
        if not found:
            raise NotFound(f"no product with project_key {project_key!r}"
                           + (f" and firmware_name {firmware_name!r}" if firmware_name else ""))
        raise ValueError(f"project_key {project_key!r} has {len(found)} products; give --firmware-name")


class RemoteReleases:
    def __init__(self, remote: RemoteStore) -> None:
        self._request = remote._request
        self.progress = remote.progress

    def add(self, data: bytes, *, product_id: int, version: str | None = None,
            core: str | int | None = None, kind: str | None = None, filename: str | None = None,
            notes: str = "", enabled: bool = True, forced: bool = False,
            percent: float | None = None, device_keys: Iterable[str] | None = None,
            allow_downgrade: bool = False, preflight: str = "pending",
            actor: str = "cli") -> Release:
        """Upload through the admin API; the server runs the preflight (``preflight`` is
        "pending" or "skipped": a server always preflights unless told to skip)."""
        fields = {"product_id": str(product_id), "notes": notes, "enabled": str(enabled).lower(),
                  "forced": str(forced).lower(), "downgrade": str(allow_downgrade).lower(),
                  "skip_preflight": str(preflight == "skipped").lower()}
        for k, v in (("version", version), ("core", core), ("kind", kind), ("percent", percent)):
            if v is not None:
                fields[k] = str(v)
        if device_keys:
            fields["devices"] = ",".join(device_keys)
        head, tail, ctype = _multipart(fields, filename or "package.bin", data)
        body = _UploadBody(head, data, tail, self.progress)
        return Release.from_json(self._request("POST", "/releases", data=body, headers={"Content-Type": ctype}))

    def all(self, product_id: int | None = None) -> list[Release]:
        return [Release.from_json(r) for r in
                self._request("GET", "/releases", params={"product_id": product_id})["releases"]]

    def get(self, release_id: int) -> Release:
        return Release.from_json(self._request("GET", f"/releases/{int(release_id)}"))

    def update(self, release_id: int, *, enabled: bool | None = None, forced: bool | None = None,
               notes: str | None = None, actor: str = "cli") -> Release:
        body = {k: v for k, v in (("enabled", enabled), ("forced", forced), ("notes", notes)) if v is not None}
        return Release.from_json(self._request("PATCH", f"/releases/{int(release_id)}", body=body))

    def archive(self, release_id: int, *, actor: str = "cli") -> Release:
        return Release.from_json(self._request("POST", f"/releases/{int(release_id)}/archive"))

    def set_target(self, release_id: int, mode: str, *, percent: float | None = None,
                   device_keys: Iterable[str] | None = None, actor: str = "cli") -> Release:
        body: dict[str, Any] = {"mode": mode}
        if percent is not None:
            body["percent"] = percent
        if device_keys is not None:
            body["devices"] = list(device_keys)
        return Release.from_json(self._request("POST", f"/releases/{int(release_id)}/target", body=body))

    def stats(self, release_id: int | None = None) -> list[ReleaseStats]:
        return [ReleaseStats.from_json(s) for s in
                self._request("GET", "/stats", params={"release_id": release_id})["releases"]]

    def gc_blobs(self, min_age_s: float = 3600.0) -> list[str]:
        return list(self._request("POST", "/blobs/gc", body={"min_age_s": min_age_s})["removed"])


class RemoteDevices:
    def __init__(self, remote: RemoteStore) -> None:
        self._request = remote._request

    def all(self, *, product_id: int | None = None, banned: bool | None = None,
            limit: int = 1000, offset: int = 0) -> list[Device]:
        params = {"product_id": product_id, "banned": None if banned is None else str(banned).lower(),
                  "limit": limit, "offset": offset}
        return [Device.from_json(d) for d in self._request("GET", "/devices", params=params)["devices"]]

    @staticmethod
    def _path(device_key: str, action: str = "") -> str:
        return f"/devices/{quote(device_key, safe='')}" + (f"/{action}" if action else "")

    def require(self, device_key: str) -> Device:
        return Device.from_json(self._request("GET", self._path(device_key)))

    def ban(self, device_key: str, reason: str = "", *, actor: str = "cli") -> Device:
        return Device.from_json(self._request("POST", self._path(device_key, "ban"), body={"reason": reason}))

    def unban(self, device_key: str, *, actor: str = "cli") -> Device:
        return Device.from_json(self._request("POST", self._path(device_key, "unban"), body={}))

    def pin(self, device_key: str, release_id: int | None, *, actor: str = "cli") -> Device:
        return Device.from_json(self._request("POST", self._path(device_key, "pin"),
                                              body={"release_id": release_id}))


class RemoteAudit:
    def __init__(self, remote: RemoteStore) -> None:
        self._request = remote._request

    def query(self, *, device_key: str | None = None, event_: str | None = None,
              release_id: int | None = None, limit: int = 200) -> list[AuditRecord]:
        rows = self._request("GET", "/audit", params={"device": device_key, "event": event_,
                                                      "release_id": release_id, "limit": limit})["audit"]
        for a in rows:  # the API sends detail as stored (JSON text) or already decoded
            if isinstance(a.get("detail"), str):
                try:
                    a["detail"] = json.loads(a["detail"])
                except ValueError:
                    pass
        return [AuditRecord.from_json(a) for a in rows]

    def prune(self, older_than_s: float, *, actor: str = "cli") -> int:
        return int(self._request("POST", "/audit/prune", body={"older_than_s": older_than_s})["deleted"])


class ProgressBar:
    """A rich progress bar for an upload, shown once it is worth watching (``min_bytes``)."""

    def __init__(self, label: str, min_bytes: int = 1 << 20) -> None:
        self.label = label
        self.min_bytes = min_bytes
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, sent: int, total: int) -> None:
        if total < self.min_bytes:
            return
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                 transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=total)
        self._bar.update(self._task, completed=sent)
        if sent >= total:
            self._bar.stop()
            self._bar = None
