"""The release-push rule: which online devices a release push goes to, and why not the others.

A release push goes through the check-in decision for each device (review finding 5): up to
date, banned, pinned elsewhere, downgrade refused and the loop guard all apply, and each push is
a counted serve whose ``fota_sn`` rides in the URL. Before that, two things need no database: a
wanted device with no push session is ``offline``, and a session that logged in for another
product's ``project_key`` is skipped. :func:`plan_release_push` is that rule, with the per-device
decision passed in (``FotaService.plan_release_push`` passes ``push_decision``), so it can be
tested without a server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from luatos_common.version import VersionError, reported_version

from .store import normalize_device_key

Session = Mapping[str, Any]  # one online push session: its login ("device", "project_key", "version", ...)
# (device_key, session) -> (the counted serve's fota_sn, "") or (None, why it is skipped)
DecideOne = Callable[[str, Session], tuple[str | None, str]]


@dataclass(frozen=True)
class PushSend:
    """One device the release goes to."""

    device_key: str  # normalised (what results are keyed by)
    session_device: str  # the id as its session logged in (what the hub pushes to)
    fota_sn: str  # the serve counted for this push


@dataclass(frozen=True)
class PushPlan:
    """The per-device plan of a release push, in the order the devices were wanted."""

    product_id: int
    sends: dict[str, PushSend] = field(default_factory=dict)  # device_key -> the send
    skipped: dict[str, str] = field(default_factory=dict)  # device_key -> why not
    offline: list[str] = field(default_factory=list)  # device_keys with no push session


def login_version(login: Session) -> str | None:
    """A push login states VERSION and the core separately (device/ sends "001.000.001" and
    "V2001"); decisions compare what libfota2 would report ("2001.001.001")."""
    version = login.get("version")
    if not version:
        return None
    try:
        return str(reported_version(str(version), login.get("core")))
    except VersionError:
        return str(version)


def session_ip(login: Session) -> str:
    """The client address of a push session (its ``peer`` without the port)."""
    return str(login.get("peer") or "").rsplit(":", 1)[0]


def plan_release_push(product_id: int, project_key: str, sessions: Iterable[Session],
                      wanted: Iterable[str] | None, decide: DecideOne) -> PushPlan:
    """The plan for pushing a release of product ``project_key`` to ``wanted`` devices (None:
    every online device). ``decide`` is called only for devices that are online and logged in
    for this product (or for no product), in order; it counts the serve when it says yes."""
    online = {normalize_device_key(str(s["device"])): s for s in sessions}
    keys = [normalize_device_key(d) for d in wanted] if wanted is not None else list(online)
    plan = PushPlan(product_id)
    for device_key in keys:
        login = online.get(device_key)
        if login is None:
            plan.offline.append(device_key)
            continue
        if login.get("project_key") and login["project_key"] != project_key:
            plan.skipped[device_key] = (f"logged in for project_key {login['project_key']!r}, "
                                        "not this release's product")
            continue
        fota_sn, why = decide(device_key, login)
        if fota_sn is None:
            plan.skipped[device_key] = why
            continue
        plan.sends[device_key] = PushSend(device_key, str(login["device"]), fota_sn)
    return plan
