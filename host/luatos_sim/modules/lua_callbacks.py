"""A Lua-side table of script callbacks, keyed by a client's key.

The firmware keeps a script's callback as a registry reference and calls it from its message
loop. Keeping it in a Lua table (rather than holding the Lua function in Python) does the
same: Python only ever calls the two functions made here at install time, on the main state,
and an error in the callback is a plain Lua error of the script.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..vm import Boot

_SLOTS = b"""
local cbs = {}
local function set(key, cb) cbs[key] = (type(cb) == "function") and cb or nil end
local function invoke(key, ud, event, ...)
  local cb = cbs[key]
  if cb then cb(ud, event, ...) end
end
return set, invoke
"""


def callback_slots(boot: Boot) -> tuple[Any, Any]:
    """``(set(key, cb), invoke(key, ud, event, ...))`` for one module of one boot."""
    set_cb, invoke = boot.execute(_SLOTS)
    return set_cb, invoke
