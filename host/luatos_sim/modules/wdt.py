"""wdt: a watchdog that resets the device (reset detail 8) when it is not fed in time.

Whether the Air8101 has wdt and what a timeout reports is UNCONFIRMED; the reference's
default is to provide it and reboot with detail 8. One pending check at a time: a feed only
moves the deadline, so feeding every 3 s costs no queue traffic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..lifecycle import BootOutcome, ResetDetail

if TYPE_CHECKING:
    from ..vm import Boot


def install(boot: Boot) -> None:
    state: dict[str, Any] = {"timeout": 0, "deadline": None, "armed": False}

    def check() -> None:
        state["armed"] = False
        deadline = state["deadline"]
        if deadline is None:
            return
        if boot.now >= deadline:
            boot.note(f"watchdog: not fed for {state['timeout']} ms, the device resets")
            boot.trace("watchdog", timeout_ms=state["timeout"])
            boot.halt(BootOutcome.WATCHDOG, ResetDetail.WATCHDOG)
        else:
            arm(deadline)

    def arm(due: int) -> None:
        if not state["armed"]:
            state["armed"] = True
            boot.post_at(due, check)

    def init(ms: Any = 9000, *_: Any) -> bool:
        state["timeout"] = int(ms)
        state["deadline"] = boot.now + int(ms)
        arm(state["deadline"])
        return True

    def feed(*_: Any) -> bool:
        if state["deadline"] is None:
            return False
        state["deadline"] = boot.now + state["timeout"]
        return True

    def set_timeout(ms: Any = 9000, *_: Any) -> bool:
        state["timeout"] = int(ms)
        if state["deadline"] is not None:
            state["deadline"] = boot.now + int(ms)
        return True

    def close(*_: Any) -> bool:
        state["deadline"] = None
        return True

    boot.firmware_module("wdt", {"init": init, "feed": feed, "setTimeout": set_timeout,
                                 "close": close})
