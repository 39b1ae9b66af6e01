"""What the repositories hand out: frozen records, one per thing the server keeps.

Why records and not rows or dicts: a caller reads ``release.sha256`` and the type checker knows
it is there and what it is; nobody can change a cached copy behind the database's back
(frozen); and the JSON an operator sees (admin API, ``--json`` of the CLI) is decided in one
place per record, :meth:`to_json`, whose keys and order are those the API has always answered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, Self

from luatos_common.version import ScriptVersion, format_core


def _fields_json(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _from_fields(cls: Any, d: dict[str, Any], **override: Any) -> Any:
    return cls(**{f.name: override[f.name] if f.name in override else d[f.name] for f in fields(cls)})


class Record:
    """What every record shares: its JSON is its fields in order, and it can be read back from
    that JSON (the remote CLI reads the admin API). A record whose JSON differs overrides both."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        return _fields_json(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Self:
        return _from_fields(cls, d)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Product(Record):
    """A product: what a device's project_key + firmware_name select, and its device auth."""

    id: int
    project_key: str
    firmware_name: str
    name: str
    auto_register: bool
    created_at: float
    auth_mode: str
    auth_secret: str

    @classmethod
    def from_row(cls, r: Any) -> Product:
        return cls(int(r.id), r.project_key, r.firmware_name, r.name, bool(r.auto_register), float(r.created_at),
                   r.auth_mode, r.auth_secret)


@dataclass(frozen=True, slots=True)
class Artifact(Record):
    """A stored package (content-addressed by ``sha256``); releases point at one."""

    id: int
    sha256: str
    size: int
    kind: str
    core_version: int | None
    details: str  # JSON text: what the package check found
    filename: str
    created_at: float

    @classmethod
    def from_row(cls, r: Any) -> Artifact:
        return cls(int(r.id), r.sha256, int(r.size), r.kind, r.core_version, r.details, r.filename,
                   float(r.created_at))


@dataclass(frozen=True, slots=True)
class Release(Record):
    """A published package of a product, with its targeting, preflight state and package facts."""

    id: int
    product_id: int
    artifact_id: int
    script_version: str
    core_version: str | None  # as devices write it (format_core); ``core_num`` is the number
    kind: str  # script | full
    notes: str
    enabled: bool
    forced: bool
    target_mode: str  # all | devices | percent
    percent: float
    created_at: float
    archived: bool
    preflight_status: str
    preflight: str  # the stored result as JSON text ("" before any); parsed in preflight_result
    enable_on_pass: bool
    sha256: str
    size: int
    package_kind: str
    project_key: str
    firmware_name: str
    script_x: int
    script_z: int
    core_num: int | None
    device_keys: tuple[str, ...]  # the release's device list (target_mode "devices")
    preflight_result: dict[str, Any] | None

    @property
    def download_path(self) -> str:
        return f"/dl/{self.sha256}.bin"

    @classmethod
    def from_row(cls, r: Any, device_keys: tuple[str, ...]) -> Release:
        sv = ScriptVersion.parse(r.script_version)
        result: dict[str, Any] | None = None
        if r.preflight:
            try:
                result = json.loads(r.preflight)
            except ValueError:
                result = None
        return cls(int(r.id), int(r.product_id), int(r.artifact_id), r.script_version,
                   format_core(r.core_version) if r.core_version is not None else None, r.kind, r.notes,
                   bool(r.enabled), bool(r.forced), r.target_mode, float(r.percent), float(r.created_at),
                   bool(r.archived), r.preflight_status, r.preflight or "", bool(r.enable_on_pass), r.sha256,
                   int(r.size), r.package_kind, r.project_key, r.firmware_name, sv.x, sv.z, r.core_version,
                   device_keys, result)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id, "product_id": self.product_id, "artifact_id": self.artifact_id,
            "script_version": self.script_version, "core_version": self.core_version, "kind": self.kind,
            "notes": self.notes, "enabled": self.enabled, "forced": self.forced,
            "target_mode": self.target_mode, "percent": self.percent, "created_at": self.created_at,
            "archived": self.archived, "preflight_status": self.preflight_status}
        if not self.preflight:  # the API has always shown the empty column, never a stored result
            d["preflight"] = self.preflight
        d.update({
            "enable_on_pass": self.enable_on_pass, "sha256": self.sha256, "size": self.size,
            "package_kind": self.package_kind, "project_key": self.project_key,
            "firmware_name": self.firmware_name, "script_x": self.script_x, "script_z": self.script_z,
            "core_num": self.core_num, "devices": list(self.device_keys), "download_path": self.download_path,
            "preflight_result": self.preflight_result})
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Release:
        """The record again from what :meth:`to_json` made (the remote CLI reads the API); a
        stored preflight result is not in the JSON as text, only parsed."""
        stored = d.get("preflight", json.dumps(d.get("preflight_result")))
        return _from_fields(cls, d, device_keys=tuple(d["devices"]), preflight=stored)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Device(Record):
    """A device the server knows. ``id`` is the row id; ``device_key`` what the device calls
    itself (its MAC, IMEI or unique id, normalised)."""

    id: int
    device_key: str
    key_type: str
    product_id: int | None
    reported_version: str
    version_changed_at: float
    first_seen: float
    last_seen: float
    last_ip: str
    check_ins: int
    ban_code: int
    ban_reason: str
    banned_at: float | None
    pinned_release_id: int | None
    registered: bool

    @classmethod
    def from_row(cls, r: Any) -> Device:
        # The devices table's columns are this record's fields, in order (checked here, so a
        # schema change cannot shift them): a device read on the check-in path costs a tuple.
        if r._fields == _DEVICE_FIELDS:
            return cls(*r)
        return cls(*(getattr(r, name) for name in _DEVICE_FIELDS))


_DEVICE_FIELDS = tuple(f.name for f in fields(Device))


@dataclass(frozen=True, slots=True)
class Serve(Record):
    """One serve of a package to a device (``fota_sn``), with the device and package it names."""

    id: int
    fota_sn: str
    device_id: int
    release_id: int
    channel: str
    from_version: str
    served_at: float
    result_code: int | None
    reported_at: float | None
    confirmed_at: float | None
    bytes: int | None
    device_key: str
    ban_code: int
    sha256: str

    @classmethod
    def from_row(cls, r: Any) -> Serve:
        return cls(int(r.id), r.fota_sn, int(r.device_id), int(r.release_id), r.channel, r.from_version,
                   float(r.served_at), r.result_code, r.reported_at, r.confirmed_at, r.bytes, r.device_key,
                   int(r.ban_code), r.sha256)


@dataclass(frozen=True, slots=True)
class FotaResult(Record):
    """A device's report of how an upgrade went (the result of one serve)."""

    fota_sn: str
    release_id: int
    device_key: str
    success: bool


@dataclass(frozen=True, slots=True)
class AuditRecord(Record):
    """An audit-log row as read back (``detail`` parsed from its JSON; kept as text if it is not)."""

    id: int
    ts: float
    event: str
    device_key: str | None
    product_id: int | None
    release_id: int | None
    status: int | None
    code: int | None
    ip: str | None
    actor: str | None
    detail: Any

    @classmethod
    def from_row(cls, r: Any) -> AuditRecord:
        detail: Any = r.detail
        try:
            detail = json.loads(r.detail) if r.detail else {}
        except ValueError:
            pass
        return cls(int(r.id), float(r.ts), r.event, r.device_key, r.product_id, r.release_id, r.status, r.code,
                   r.ip, r.actor, detail)


@dataclass(frozen=True, slots=True)
class ReleaseStats(Record):
    """Rollout progress of one release (``luatos-fota release stats``, ``/admin/api/stats``)."""

    release_id: int
    product_id: int
    script_version: str
    core_version: str | None
    kind: str
    enabled: bool
    target_mode: str
    percent: float
    known_devices: int
    targeted: int
    served: int
    serves: int
    confirmed: int
    failed: int


@dataclass(frozen=True, slots=True)
class PushSession(Record):
    """A device's push-channel login as the database knows it (any instance's)."""

    device_key: str
    instance_id: str
    peer: str
    info: dict[str, Any]
    connected_at: float
    last_answer: Any  # the device's last answer (parsed JSON), or None
    last_answer_at: float | None

    @classmethod
    def from_row(cls, r: Any) -> PushSession:
        return cls(r.device_key, r.instance_id, r.peer, json.loads(r.info or "{}"), float(r.connected_at),
                   json.loads(r.last_answer) if r.last_answer else None, r.last_answer_at)


@dataclass(frozen=True, slots=True)
class OutboxItem(Record):
    """A push waiting in the outbox for the instance that holds the device's socket."""

    id: int
    device_key: str
    message: str  # the command as JSON text


def to_json(obj: Any) -> Any:
    """``json.dumps`` default: a record as its API JSON, anything else as its str (as before)."""
    fn = getattr(obj, "to_json", None)
    return fn() if callable(fn) else str(obj)
