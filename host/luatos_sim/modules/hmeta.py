"""hmeta: what the module says it is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..vm import b

if TYPE_CHECKING:
    from ..vm import Boot


def install(boot: Boot) -> None:
    p = boot.profile
    boot.firmware_module("hmeta", {
        "model": lambda *_: b(p.model),
        "hwver": lambda *_: b(p.hwver),
        "chip": lambda *_: b(p.chip),
    })
