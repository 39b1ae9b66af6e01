"""One audit-event type for every entry of the audit log, and the table row it becomes.

Entries come from three places with different timing: the store writes state changes (bans,
releases, version changes) inside their own transaction; the device path hands check-ins,
downloads and refusals to the buffered writer (writer.py); the push channel's logins and answers
go through the service to that same writer. All of them build an :class:`AuditEvent`, and the
store inserts every one through ``repo_audit.insert_audit``, so the columns, their defaults and the
JSON of ``detail`` are decided once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def detail_json(fields: Mapping[str, Any] | None) -> str:
    """The ``detail`` column: the fields as JSON text (non-JSON values as their str), "" for None."""
    if fields is None:
        return ""
    return json.dumps(fields, ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit-log entry (the audit table's columns; ``detail`` is JSON text, see detail_json)."""

    event: str
    device_key: str | None = None
    product_id: int | None = None
    release_id: int | None = None
    status: int | None = None  # the HTTP status answered, when the entry is about a request
    code: int | None = None  # a codes.VendorCode, or a device's own result code (fota_result)
    ip: str | None = None
    actor: str | None = None  # who made a change: admin, api, cli, retention, ...; None for devices
    detail: str = ""
    ts: float = field(default_factory=time.time)

    def row(self) -> dict[str, Any]:
        return {"ts": self.ts, "event": self.event, "device_key": self.device_key, "product_id": self.product_id,
                "release_id": self.release_id, "status": self.status, "code": self.code, "ip": self.ip,
                "actor": self.actor, "detail": self.detail}
