"""Upgrade checks: warnings about FOTA code that works on the bench and fails in the field.

Never a failure: each finding is printed as an emulator diagnostic (``lint [code]: ...``) and
kept on the device (``dev.upgrade_checks.warnings``), so a test can assert on it. Findings:

* ``url-glue``: libfota2 builds its query by appending ``mac=...&project_key=...`` to the URL
  without a separator, so a URL that ends in neither ``?`` nor ``&`` sends a broken path;
* ``opts-reuse``: after a first request, ``opts.url_done`` is set on the caller's table and
  later URLs are sent verbatim - a table reused with a *different* URL sends it without the
  device parameters (and skipped the PRODUCT_KEY check);
* ``sleep-during-download``: deep sleep entered while a FOTA download is in flight;
* ``version-format``: ``VERSION`` not ``xxx.yyy.zzz`` (libfota2 raises, or the server cannot
  compare versions).

The built-in libfota2/libfota stand-ins report through a host table in the Lua registry
(``debug.getregistry().luatos_sim``); a user's own copy of upstream libfota2 simply does not,
and then only the sleep check runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .device import Device
    from .vm import Boot

VERSION_RE = re.compile(r"^\d{3}\.\d{3}\.\d{3}$")
LOOSE_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass
class UpgradeWarning:
    code: str
    message: str
    ms: int
    boot: int


@dataclass
class UpgradeChecks:
    """``dev.upgrade_checks``: the findings of every boot so far, each reported once."""

    device: Device
    warnings: list[UpgradeWarning] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _pending: dict[int, int] = field(default_factory=dict)  # boot number -> open requests

    def warn(self, code: str, message: str, *, once_key: str | None = None) -> None:
        key = once_key or f"{code}:{message}"
        if key in self._seen:
            return
        self._seen.add(key)
        dev = self.device
        boot_no = dev.boots[-1].number if dev.boots else 0
        self.warnings.append(UpgradeWarning(code, message, dev.current_ms(), boot_no))
        dev.emit_sim(f"lint [{code}]: {message}")

    def pending(self, boot: Boot) -> int:
        """libfota2 requests of ``boot`` that have not called back yet."""
        return self._pending.get(boot.number, 0)

    def request_started(self, boot: Boot) -> None:
        self._pending = {boot.number: self.pending(boot) + 1}

    def request_done(self, boot: Boot) -> None:
        self._pending = {boot.number: max(0, self.pending(boot) - 1)}


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def download_in_flight(boot: Boot) -> str | None:
    """Why a download is in flight right now (None if none is)."""
    area = boot.platform.fota
    if area.in_progress:
        return f"the FOTA area has {area.bytes_written} bytes of an unfinished package"
    if boot.platform.upgrade_checks.pending(boot) > 0:
        return "a libfota2 request has not called back yet"
    return None


def check_sleep(boot: Boot) -> None:
    why = download_in_flight(boot)
    if why:
        boot.platform.upgrade_checks.warn("sleep-during-download",
             f"deep sleep entered while a download is in flight ({why}); the download is "
             "abandoned and the package is lost (wait for the callback before sleeping)",
             once_key=f"sleep:{boot.number}")


def check_version(checks: UpgradeChecks, version: str | None) -> None:
    if version is None:
        checks.warn("version-format", "VERSION is not set; libfota2 needs "
             "VERSION = \"xxx.yyy.zzz\" (e.g. \"001.000.000\") to build its query")
    elif not VERSION_RE.match(version):
        extra = "libfota2 raises on it" if not LOOSE_VERSION_RE.match(version) else \
            "the server compares xxx.yyy.zzz with leading zeros kept"
        checks.warn("version-format", f"VERSION {version!r} is not xxx.yyy.zzz ({extra})")


def install(boot: Boot) -> None:
    """Put the hooks the built-in libfota2/libfota call into the Lua registry."""
    checks = boot.platform.upgrade_checks

    def request(url: Any, url_done: Any, prev_url: Any, version: Any, builds: Any) -> None:
        u = _text(url) or ""
        if builds:
            check_version(checks, _text(version))
            if not u.startswith("###") and not u.endswith(("?", "&")):
                checks.warn("url-glue",
                     f"libfota2 URL {u!r} ends in neither '?' nor '&': the device appends "
                     "'mac=...&project_key=...' directly, so the server gets a broken path "
                     "(add '?' to the URL, or start it with '###' to send it verbatim)")
        prev = _text(prev_url)
        if url_done and prev is not None and prev != u and not u.startswith("###"):
            checks.warn("opts-reuse",
                 f"libfota2 opts table reused with a new URL {u!r} after url_done was set by "
                 f"a request to {prev!r}: the new URL is sent verbatim, without device "
                 "parameters, and the PRODUCT_KEY check is skipped (use a fresh opts table "
                 "or clear opts.url_done)")

    def started(*_: Any) -> None:
        checks.request_started(boot)
        boot.trace("libfota2_request", url=_text(_[0]) if _ else None)

    def result(ret: Any = None, *_: Any) -> None:
        checks.request_done(boot)
        boot.trace("libfota2_cb", ret=ret)

    hooks = boot.lua.table()
    hooks[b"request"] = request
    hooks[b"started"] = started
    hooks[b"result"] = result
    hooks[b"callback"] = lambda ret=None, *_: boot.trace("libfota2_cb", ret=ret)
    boot.execute(b"debug.getregistry().luatos_sim = ...", hooks)
