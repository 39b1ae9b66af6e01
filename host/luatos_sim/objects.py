"""Firmware objects: the userdata a firmware module hands to Lua (a zbuff, a socket ctrl, ...).

On the device such an object is a C userdata with its module's metatable: ``type(x)`` is
``"userdata"``, ``x:method()`` works where the module defines methods, and ``tostring(x)`` is
what ``luaL_tolstring`` makes of that metatable (the module's ``__tostring``, else
``"<metatable name>: 0x<address>"``). Vendor libraries branch on ``type(x) == "userdata"``, so a
Lua table standing in for one is visibly wrong.

A binding gets the same by registering the Python class that holds the object's state, once
per boot::

    boot.objects.define(ZBuff, "ZBUFF*", methods={"read": m_read, ...}, length=m_len)

From then on every instance of that class that reaches Lua *is* the firmware object, and a
binding receiving it back gets the Python instance itself (no handle to look up). The methods
are firmware functions like any other (``c_function`` rules: extra arguments dropped, argument
errors worded like ``luaL_check*``), called with the object as their first argument.

How: lupa shows every Python object as a full userdata sharing one metatable; ``objects.lua``
puts a dispatcher in front of that metatable's metamethods which looks up the object's
registered type (cached per userdata in a weak table, one Python call per object). Objects of
unregistered classes keep lupa's behaviour. Cost: an ``obj:method()`` call is one Lua table
lookup more than a plain firmware function call (see ``bench/bench_sim_core.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .vm import Boot

_OBJECTS_SRC = (Path(__file__).parent / "lua" / "objects.lua").read_bytes()


class _Probe:
    """Any Python object: its Lua userdata leads to lupa's shared metatable."""


class FirmwareObjects:
    """The per-boot registry of firmware object types (``boot.objects``)."""

    def __init__(self, boot: Boot) -> None:
        self._boot = boot
        self._kinds: dict[type, Any] = {}
        H = boot.lua.table()
        H[b"object_kind"] = self._kind_of
        self._enable_gc = boot.execute(_OBJECTS_SRC, H, _Probe())
        self._closed = False

    def close(self) -> None:
        """No gc hook runs after this (the boot has ended; closing the Lua state finalizes
        every object, and calling into Python then is unsafe)."""
        self._closed = True
        self._enable_gc(False)

    def _kind_of(self, obj: Any) -> Any:
        return self._kinds.get(type(obj))

    def define(self, cls: type, name: str | None, *,
               methods: dict[str, Callable[..., Any]] | None = None,
               index: Callable[[Any, Any], Any] | None = None,
               newindex: Callable[[Any, Any, Any], Any] | None = None,
               length: Callable[[Any], Any] | None = None,
               tostring: Callable[[Any], bytes | str] | None = None,
               gc: Callable[[Any], None] | None = None) -> None:
        """Make instances of ``cls`` behave as the firmware userdata ``name`` (the metatable's
        name in the firmware source, e.g. ``"ZBUFF*"``; None: a plain ``userdata: 0x...``).

        ``methods``: ``obj:name(...)`` for string keys. ``index``/``newindex``: other keys
        (zbuff's ``buff[i]``); without either, indexing a method-less object fails as indexing
        a userdata does. ``length``: ``#obj``. ``tostring``: the module's ``__tostring``.
        ``gc``: run when Lua collects the object during the boot (its ``__gc``); errors there
        are ignored, as a finalizer's are. Not run when the boot ends: a binding releases what
        is still open through ``boot.closers``.
        """
        boot = self._boot
        k = boot.lua.table()
        if name is not None:
            k[b"name"] = name.encode()
        if methods is not None:
            k[b"methods"] = boot.lua.table_from(
                {m.encode(): boot.lua_function(fn, m) for m, fn in methods.items()})
        for key, fn in ((b"index", index), (b"newindex", newindex), (b"len", length),
                        (b"gc", gc)):
            if fn is not None:
                k[key] = boot.lua_function(fn)
        if tostring is not None:
            def text(obj: Any) -> bytes:
                v = tostring(obj)
                return v.encode() if isinstance(v, str) else v
            k[b"tostring"] = boot.lua_function(text)
        if gc is not None and not self._closed:
            self._enable_gc(True)
        self._kinds[cls] = k
