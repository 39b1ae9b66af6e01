"""Did the device crash? One answer for ``luatos-sim run``, the pytest plugin and the preflight.

A crash is what a device in the field cannot recover from by itself: a Lua error that ends
the VM (``error``), ``main`` returning (``exit``: the VM exits and the module reboots), a
watchdog reset, or a reboot loop (``DeviceOptions.reboot_loop_boots`` failing boots in a
row). A deliberate ``rtos.reboot()`` or deep sleep is not one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from luatos_common.logline import SIM

from .duration import format_ms

if TYPE_CHECKING:
    from .device import Device

CRASH_OUTCOMES = {"error": "Lua error", "exit": "Lua VM exit (main returned)",
                  "watchdog": "watchdog reset"}
EXCERPT_LINES = 15


@dataclass(frozen=True)
class Crash:
    kind: str  # error | exit | watchdog | reboot_loop
    boot: int
    message: str
    excerpt: str  # the log lines that led there, with virtual times

    def __str__(self) -> str:
        return self.message


def _excerpt(dev: Device, boot: int, lines: int = EXCERPT_LINES) -> str:
    """The last ``lines`` records up to the end of ``boot`` (emulator notes included)."""
    recs = [r for r in dev.log if r.boot is not None and r.boot <= boot]
    return "\n".join(f"  {format_ms(r.device_ms or 0):>12} "
                     f"{('[luatos-sim] ' + r.text) if r.source == SIM else r.line}"
                     for r in recs[-lines:])


def crashes(dev: Device, *, since_boot: int = 0) -> list[Crash]:
    """Every crash of the device so far (boots after ``since_boot``), oldest first; a reboot
    loop is one more entry, at the boot where it was detected."""
    out: list[Crash] = []
    for b in dev.boots:
        if b.number <= since_boot or b.outcome not in CRASH_OUTCOMES:
            continue
        what = CRASH_OUTCOMES[b.outcome]
        msg = f"boot {b.number}: {what}" + (f": {b.error}" if b.error else "")
        out.append(Crash(b.outcome, b.number, msg, _excerpt(dev, b.number)))
    loop = next((e for e in dev.trace if e.kind == "reboot_loop" and e.boot > since_boot), None)
    if loop is not None:
        msg = (f"reboot loop: {loop.detail.get('boots')} boots in a row failed; last error: "
               f"{loop.detail.get('error')}")
        out.append(Crash("reboot_loop", loop.boot, msg, _excerpt(dev, loop.boot)))
    return out
