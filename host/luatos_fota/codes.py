"""The ``code`` a device-facing answer carries, and the HTTP status it goes out with.

The device endpoints answer ``{"code": N, "msg": "..."}`` with the vendor platform's codes
(docs/behaviour.md §11.3), so that a libfota2 device and the vendor's tooling read them as they
would read the vendor's own server. Each code has one fixed HTTP status on the libfota2 endpoint
(§11.4) and one outcome label for ``/metrics``; keeping the three together is why this is one
enum rather than constants in the service and numbers in the handlers.

``ERROR`` and ``UNAUTHENTICATED`` are this server's own (not vendor codes): ``ERROR`` for a
request the server cannot use outside the check-in (a bad v2 result, a download by POST), whose
status depends on what was wrong; ``UNAUTHENTICATED`` when a product requires a device credential
(deviceauth.py) and the request carried none or a wrong one (libfota2 treats it like any refusal,
result 4).

The admin API is not device-facing: its ``code`` is the HTTP status (admin.py).
"""

from __future__ import annotations

from enum import IntEnum


class VendorCode(IntEnum):
    """A device-facing answer code; ``status`` is its HTTP status where that is fixed."""

    status: int | None
    label: str

    def __new__(cls, value: int, status: int | None, label: str) -> VendorCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.label = label
        return member

    OK = 0, 200, "upgrade"  # a check-in answered with the package; any request that succeeded
    ERROR = 1, None, "error"
    INVALID_DEVICE = 3, 400, "invalid_device"
    NO_PERMISSION = 17, 403, "not_permitted"
    NOT_ALLOWED = 21, 403, "banned"
    INVALID_PROJECT = 25, 404, "unknown_project"
    INVALID_FIRMWARE = 26, 404, "unknown_firmware"
    LATEST = 27, 304, "up_to_date"
    LOOP = 40, 403, "loop_banned"
    WAIT = 43, 503, "retry_later"
    # Labelled by the number, as /metrics has always done (dashboards may query it).
    UNAUTHENTICATED = 401, 401, "401"


# Plain dicts: these run on every check-in, and calling the enum costs ~0.5 µs a lookup.
_STATUS = {c.value: c.status for c in VendorCode if c.status is not None}
_LABEL = {c.value: c.label for c in VendorCode}


def status_for(code: int) -> int:
    """The HTTP status of a check-in answered with ``code`` (400 for a code with none fixed)."""
    return _STATUS.get(code, 400)


def outcome_label(code: int | None) -> str:
    """The ``outcome`` label of a check-in answered with ``code`` in ``/metrics``."""
    if code is None:
        return "none"
    return _LABEL.get(code) or str(code)
