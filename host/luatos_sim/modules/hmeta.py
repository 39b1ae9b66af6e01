"""hmeta: what the module says it is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lua_text import lua_str

if TYPE_CHECKING:
    from ..vm import Boot


def install(boot: Boot) -> None:
    p = boot.profile
    boot.firmware_module("hmeta", {
        "model": lambda *_: lua_str(p.model),
        "hwver": lambda *_: lua_str(p.hwver),
        "chip": lambda *_: lua_str(p.chip),
    })
