"""rtos: the Python half (identity, memory, reboot). The event core is Lua (lua/rt.lua)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..lifecycle import BootOutcome, ResetDetail
from ..lua_text import lua_str

if TYPE_CHECKING:
    from ..vm import Boot


def install(boot: Boot) -> None:
    p = boot.profile
    lua = boot.lua
    max_used = [0]

    def version(full: Any = None) -> Any:
        if full:
            return lua_str(p.core), p.type_number, p.bits
        return lua_str(p.core)

    def meminfo(kind: bytes = b"lua") -> tuple[int, int, int]:
        k = kind.decode() if isinstance(kind, bytes) else "lua"
        if k == "sys":
            return p.sys_heap, p.sys_heap // 7, p.sys_heap // 7
        if k == "psram":
            return p.psram, p.psram // 120, p.psram // 90
        used = lua.get_memory_used() or 0
        max_used[0] = max(max_used[0], used)
        total = boot.options.lua_heap or p.lua_heap
        return total, used, max_used[0]

    def set_paths(*templates: bytes | None) -> None:
        boot.image.set_paths(*(t.decode() if isinstance(t, bytes) else None for t in templates))

    def reboot_request(*_: Any) -> None:
        boot.trace("reboot_request")
        boot.halt(BootOutcome.REBOOT, ResetDetail.SOFTWARE)

    boot.firmware_module("rtos", {
        "version": version,
        "bsp": lambda: lua_str(p.bsp),
        "firmware": lambda: lua_str(p.firmware),
        "meminfo": meminfo,
        "_reboot": reboot_request,
        "buildDate": lambda: lua_str(p.rom_build),
        "standby": lambda *_: None,
        # Automatic GC thresholds: the host's Lua collects on its own schedule (docs/defaults.md).
        "autoCollectMem": lambda *_: None,
    })
    # rtos.setPaths validates like the device and raises a Lua error on a bad template.
    boot.G.rtos[b"_setPaths"] = set_paths
    boot.execute(b"""
      local H = ...
      local set = rtos._setPaths
      rtos._setPaths = nil
      function rtos.setPaths(...)
        local ok, err = pcall(set, ...)
        if not ok then error(tostring(err):match("search path must contain exactly one %%s") or tostring(err), 2) end
      end
      local req = rtos._reboot
      rtos._reboot = nil
      -- reboot is immediate: nothing after it runs, whatever pcall surrounds it.
      function rtos.reboot(...)
        req(...)
        error(H.halted_error, 0)
      end
    """, boot.H)
