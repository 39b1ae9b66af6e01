"""mcu: identity and ticks on the virtual clock."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..vm import Boot


def install(boot: Boot) -> None:
    p = boot.profile

    boot.firmware_module("mcu", {
        "unique_id": lambda *_: p.uid,
        "ticks": lambda *_: boot.now,
        "hz": lambda *_: 1000,
        "ticks2": lambda *_: (boot.now * 1000 // 1_000_000, (boot.now * 1000) % 1_000_000),
        "getClk": lambda *_: 160,
        "setClk": lambda *_: True,
        "x32": lambda n=0, *_: f"0x{int(n) & 0xFFFFFFFF:08X}".encode(),
    })
