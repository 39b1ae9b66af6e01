"""Upgrade lint: warnings about FOTA code that works on the bench and fails in the field.

Never a failure: each finding is printed as an emulator diagnostic (``dev.emit_sim``) and kept
in a list on the device (``warnings(dev)``), so a test can assert on it. Findings:

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .device import Device
    from .vm import Boot

VERSION_RE = re.compile(r"^\d{3}\.\d{3}\.\d{3}$")
LOOSE_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass
class LintWarning:
    code: str
    message: str
    ms: int
    boot: int


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def warnings(device: Device) -> list[LintWarning]:
    """Every lint finding of this device so far (all boots)."""
    found: list[LintWarning] = device.extensions.setdefault("lint", [])
    return found


def warn(device: Device, code: str, message: str, *, once_key: str | None = None) -> None:
    seen: set[str] = device.extensions.setdefault("lint_seen", set())
    key = once_key or f"{code}:{message}"
    if key in seen:
        return
    seen.add(key)
    ms = device.current_ms()
    boot_no = device.boots[-1].number if device.boots else 0
    warnings(device).append(LintWarning(code, message, ms, boot_no))
    device.emit_sim(f"lint [{code}]: {message}")


def _state(boot: Boot) -> dict[str, Any]:
    st: dict[str, Any] = boot.device.extensions.setdefault("lint_boot", {})
    if st.get("boot") != boot.number:
        st.clear()
        st.update(boot=boot.number, pending=0)
    return st


def download_in_flight(boot: Boot) -> str | None:
    """Why a download is in flight right now (None if none is)."""
    area = boot.device.extensions.get("fota")
    if area is not None and area.in_progress:
        return f"the FOTA area has {area.bytes_written} bytes of an unfinished package"
    if _state(boot)["pending"] > 0:
        return "a libfota2 request has not called back yet"
    return None


def check_sleep(boot: Boot) -> None:
    why = download_in_flight(boot)
    if why:
        warn(boot.device, "sleep-during-download",
             f"deep sleep entered while a download is in flight ({why}); the download is "
             "abandoned and the package is lost (wait for the callback before sleeping)",
             once_key=f"sleep:{boot.number}")


def check_version(device: Device, version: str | None) -> None:
    if version is None:
        warn(device, "version-format", "VERSION is not set; libfota2 needs "
             "VERSION = \"xxx.yyy.zzz\" (e.g. \"001.000.000\") to build its query")
    elif not VERSION_RE.match(version):
        extra = "libfota2 raises on it" if not LOOSE_VERSION_RE.match(version) else \
            "the server compares xxx.yyy.zzz with leading zeros kept"
        warn(device, "version-format", f"VERSION {version!r} is not xxx.yyy.zzz ({extra})")


def install(boot: Boot) -> None:
    """Put the hooks the built-in libfota2/libfota call into the Lua registry."""
    dev = boot.device

    def request(url: Any, url_done: Any, prev_url: Any, version: Any, builds: Any) -> None:
        u = _text(url) or ""
        if builds:
            check_version(dev, _text(version))
            if not u.startswith("###") and not u.endswith(("?", "&")):
                warn(dev, "url-glue",
                     f"libfota2 URL {u!r} ends in neither '?' nor '&': the device appends "
                     "'mac=...&project_key=...' directly, so the server gets a broken path "
                     "(add '?' to the URL, or start it with '###' to send it verbatim)")
        prev = _text(prev_url)
        if url_done and prev is not None and prev != u and not u.startswith("###"):
            warn(dev, "opts-reuse",
                 f"libfota2 opts table reused with a new URL {u!r} after url_done was set by "
                 f"a request to {prev!r}: the new URL is sent verbatim, without device "
                 "parameters, and the PRODUCT_KEY check is skipped (use a fresh opts table "
                 "or clear opts.url_done)")

    def started(*_: Any) -> None:
        _state(boot)["pending"] += 1
        dev.trace_event("libfota2_request", url=_text(_[0]) if _ else None)

    def result(ret: Any = None, *_: Any) -> None:
        st = _state(boot)
        st["pending"] = max(0, st["pending"] - 1)
        dev.trace_event("libfota2_cb", ret=ret)

    hooks = boot.lua.table()
    hooks[b"request"] = request
    hooks[b"started"] = started
    hooks[b"result"] = result
    hooks[b"callback"] = lambda ret=None, *_: dev.trace_event("libfota2_cb", ret=ret)
    boot.lua.execute(b"debug.getregistry().luatos_sim = ...", hooks)
