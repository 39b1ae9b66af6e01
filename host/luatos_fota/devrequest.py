"""Read a libfota2 check-in from the raw request target, the way the device actually sends it.

libfota2 appends ``mac=…&project_key=…&firmware_name=…&version=…`` to the user's base URL
without adding ``?`` and without encoding anything (behaviour.md §7.2). So ``/upgrade?mac=…`` and
``/api/site/firmware_upgrademac=…`` are the same request, values may be raw UTF-8, and the
device id may be the literal ``nil``. URL routers see the glued form as an unknown path, so the
app hands every request to :func:`looks_like_device_request` first and parses the raw bytes here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from starlette.types import Scope

DEVICE_KEY_NAMES = ("mac", "imei", "uid")
KNOWN_PARAMS = (*DEVICE_KEY_NAMES, "project_key", "firmware_name", "version")
# Where the glued parameters start when the base URL had no "?".
_GLUE_RE = re.compile(rb"(mac|imei|uid|project_key|firmware_name|version)=")
# Longest value accepted per field (longer -> code 3 naming the field), so nothing a device sends
# can exceed a column (PostgreSQL refuses what SQLite would silently keep).
FIELD_LIMITS = {"mac": 64, "imei": 64, "uid": 64, "project_key": 200, "firmware_name": 300, "version": 40}
# Paths the server owns: never treated as a device check-in even if they carry parameters.
RESERVED_PREFIXES = ("/admin", "/dl/", "/dashboard", "/static", "/api/site/turnkey_fota", "/healthz", "/readyz",
                     "/metrics")


@dataclass
class DeviceRequest:
    """The fields of one check-in; ``None`` means the parameter was absent."""

    base_path: str
    glued: bool  # True when the query was glued to the path without "?"
    params: dict[str, str] = field(default_factory=dict)
    key_type: str | None = None
    device_key: str | None = None  # the value of mac=, imei= or uid=
    project_key: str | None = None
    firmware_name: str | None = None
    version: str | None = None
    problems: list[str] = field(default_factory=list)
    too_long: list[str] = field(default_factory=list)  # refused with code 3

    def alt(self, name: str) -> str | None:
        """The percent-decoded variant of a value, for clients that did encode (curl, browsers)."""
        v = self.params.get(name)
        if v is None or "%" not in v:
            return None
        d = unquote(v)
        return d if d != v else None


def raw_target(scope: Scope) -> bytes:
    """The request target as sent: our protocol subclass keeps it; otherwise rebuild it."""
    t = scope.get("luatos.raw_target")
    if t:
        return t
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    qs = scope.get("query_string") or b""
    return raw + b"?" + qs if qs else raw


def split_target(target: bytes) -> tuple[bytes, bytes, bool]:
    """(path, query, glued): split at the first ``?``, else where the first known parameter starts."""
    if b"?" in target:
        path, _, query = target.partition(b"?")
        return path, query, False
    m = _GLUE_RE.search(target)
    if m is None:
        return target, b"", False
    return target[:m.start()], target[m.start():], True


def _text(b: bytes, problems: list[str], what: str) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.append(f"{what} is not UTF-8 (byte 0x{b[e.start]:02X} at {e.start})")
        return b.decode("utf-8", "replace")


def _unglue_inner(query: bytes) -> bytes:
    """``token=abcmac=…&project_key=…`` (user base URL ``…?token=abc``) -> ``token=abc&mac=…``."""
    m = re.search(rb"(?<=[^&])(mac|imei|uid)=", query)
    if m is None or m.start() == 0:
        return query
    return query[:m.start()] + b"&" + query[m.start():]


def parse_device_request(target: bytes) -> DeviceRequest:
    path, query, glued = split_target(target)
    if not any(query.startswith(k + b"=") or b"&" + k + b"=" in query for k in (b"mac", b"imei", b"uid")):
        query = _unglue_inner(query)
    problems: list[str] = []
    req = DeviceRequest(base_path=_text(path, problems, "path"), glued=glued, problems=problems)
    for part in query.split(b"&"):
        if not part:
            continue
        k, _, v = part.partition(b"=")
        key = _text(k, problems, "parameter name").strip().lower()
        if key in req.params:
            continue  # first occurrence wins, like the vendor server
        req.params[key] = _text(v, problems, f"parameter {key!r}")
    for name in DEVICE_KEY_NAMES:
        if name in req.params:
            req.key_type = name
            req.device_key = req.params[name].strip()
            break
    req.project_key = req.params.get("project_key")
    req.firmware_name = req.params.get("firmware_name")
    req.version = req.params.get("version")
    for name, limit in FIELD_LIMITS.items():
        n = len(req.params.get(name, ""))
        if n > limit:
            req.too_long.append(f"parameter {name} is {n} characters (at most {limit})")
    return req


def is_reserved(path: str) -> bool:
    return any(path == p.rstrip("/") or path.startswith(p) for p in RESERVED_PREFIXES)


def looks_like_device_request(target: bytes) -> bool:
    """A check-in is any non-reserved path carrying ``project_key`` or a device key parameter."""
    path, query, _ = split_target(target)
    if not query:
        return False
    try:
        p = path.decode("utf-8")
    except UnicodeDecodeError:
        p = path.decode("latin-1")
    if is_reserved(p):
        return False
    q = b"&" + query.lower()
    return any(b"&" + k.encode() + b"=" in q for k in ("project_key", *DEVICE_KEY_NAMES))
