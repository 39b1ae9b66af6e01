"""mobile: the Cat.1 modem (Air780E, Air8000). Absent on the Air8101 (its profile omits it).

``flymode(i, on)`` returns the *previous* state; ``status()`` is 0-8 (1: registered, home
network; 0 while in flight mode). Flight mode survives nothing: every boot starts with the
radio on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..lua_text import lua_str

if TYPE_CHECKING:
    from ..vm import Boot

STATUS_REGISTERED = 1
STATUS_NOT_REGISTERED = 0


def install(boot: Boot) -> None:
    p = boot.profile
    imei = p.imei or "000000000000000"
    state = {"fly": False}

    def flymode(index: Any = 0, on: Any = None, *_: Any) -> bool:
        prev = state["fly"]
        if on is not None:
            state["fly"] = bool(on)
            boot.trace("flymode", on=state["fly"], previous=prev)
        return prev

    def status(*_: Any) -> int:
        return STATUS_NOT_REGISTERED if state["fly"] else STATUS_REGISTERED

    boot.firmware_module("mobile", {
        "imei": lambda *_: lua_str(imei),
        "imsi": lambda *_: lua_str("46000" + imei[-10:]),
        "iccid": lambda *_: lua_str("8986" + imei[-15:].rjust(16, "0")),
        "flymode": flymode,
        "status": status,
        "csq": lambda *_: 0 if state["fly"] else 24,
        "rssi": lambda *_: -113 if state["fly"] else -65,
    })
