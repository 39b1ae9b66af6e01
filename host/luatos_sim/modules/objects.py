"""Firmware objects (a soft I2C bus, an SPI device, an LCD font ...) as the script meets them.

On the device these are userdata with a metatable named like ``EI2C*`` and methods reached
through ``obj:method()``. Every peripheral module makes its objects through
:func:`object_factory`, so moving to the shared firmware-object API is a change here alone.
Until then an object is a table whose metatable carries the firmware's ``__name`` and a
``tostring`` in the device's form (``SPI*: 0x...``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..vm import Boot

_FACTORY_SRC = b"""
local name, methods = ...
local mt = {__name = name, __metatable = name}
mt.__index = methods
mt.__newindex = function() end
mt.__tostring = function(t)
  return name .. ": " .. string.sub(tostring(rawget(t, "_a")), 8)
end
return function(h) return setmetatable({_h = h, _a = {}}, mt) end
"""


def object_factory(boot: Boot, type_name: str, methods: dict[str, Callable[..., Any]]
                   ) -> Callable[[Any], Any]:
    """A function making a Lua object of ``type_name`` around a Python handle; each method is
    called as ``fn(handle, *args)`` (``obj:m(a)`` passes the object first, as in C)."""
    table = boot.lua.table()
    for key, fn in methods.items():
        table[key.encode()] = boot.lua_function(_on_handle(fn), key)
    make = boot.lua.execute(_FACTORY_SRC, type_name.encode(), table)
    return make  # type: ignore[no-any-return]


def _on_handle(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(obj: Any = None, *args: Any) -> Any:
        return fn(handle_of(obj), *args)
    call.__name__ = getattr(fn, "__name__", "method")
    return call


def handle_of(value: Any, kind: type | None = None) -> Any:
    """The Python handle inside a firmware object made here, or None for anything else."""
    if value is None or isinstance(value, bool | int | float | bytes | str):
        return None
    try:
        h = value[b"_h"]
    except Exception:  # noqa: BLE001 - a Lua value that is not indexable
        return None
    if kind is not None and not isinstance(h, kind):
        return None
    return h
