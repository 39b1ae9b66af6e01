"""fastlz: FastLZ blocks (fastlz_format), with the firmware's buffers and failure answers.

``compress(data, level=1)`` and ``uncompress(data, maxout=4096)`` answer nothing (no value, no
log) when the block cannot be made or read. The firmware takes its output buffer from the Lua
heap first (1.05 times the input, at least 1024 bytes, for compress; ``maxout`` for uncompress),
so a buffer the heap cannot hold fails with Lua's memory error, as on the device."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lupa.lua53 as lua53

from ..cfunc import check_integer
from ..fastlz_format import compress, decompress

if TYPE_CHECKING:
    from ..vm import Boot


def install(boot: Boot) -> None:
    heap_cap = boot.options.lua_heap if boot.options.lua_heap is not None \
        else boot.profile.lua_heap

    def reserve(size: int) -> None:
        """luaL_buffinitsize: the buffer comes from the Lua heap before any work is done."""
        if size < 0 or (heap_cap and size > heap_cap - (boot.lua.get_memory_used() or 0)):
            raise lua53.LuaError("not enough memory")

    def lua_compress(data: bytes, level: int = 1, *_: Any) -> bytes | tuple[()]:
        if not isinstance(data, bytes):  # a table has a length too: refuse it as luaL_checklstring does
            raise TypeError("string expected")
        level = 1 if level is None else check_integer(level)
        reserve(int(len(data) * 1.05) if len(data) > 512 else 1024)
        out = compress(data, level)
        return out if out else ()

    def lua_uncompress(data: bytes, maxout: int = 4096, *_: Any) -> bytes | tuple[()]:
        maxout = 4096 if maxout is None else check_integer(maxout)
        reserve(maxout)
        out = decompress(data, maxout)
        return () if out is None else out

    boot.firmware_module("fastlz", {"compress": lua_compress, "uncompress": lua_uncompress})
