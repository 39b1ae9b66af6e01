"""fskv: persistent key/value storage (survives reboots and deep sleep)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..fskv_store import MAX_VALUE_BYTES, TOTAL_BYTES

if TYPE_CHECKING:
    from ..vm import Boot


def _to_py(boot: Boot, v: Any, depth: int = 0) -> Any:
    if isinstance(v, bytes):
        return {"s": v.decode("latin-1")}
    if isinstance(v, bool) or v is None:
        return {"b": v}
    if isinstance(v, int):
        return {"i": v}
    if isinstance(v, float):
        return {"f": v}
    if boot.lua_type(v) == b"table" and depth < 32:
        items = [[_to_py(boot, k, depth + 1), _to_py(boot, val, depth + 1)] for k, val in v.items()]
        return {"t": items}
    return None


def _to_lua(boot: Boot, v: Any) -> Any:
    if not isinstance(v, dict) or len(v) != 1:
        return None
    (tag, val), = v.items()
    if tag == "s":
        return val.encode("latin-1")
    if tag in ("b", "i", "f"):
        return val
    if tag == "t":
        t = boot.lua.table()
        for k, item in val:
            t[_to_lua(boot, k)] = _to_lua(boot, item)
        return t
    return None


def install(boot: Boot) -> None:
    store = boot.platform.fskv
    ready = [False]
    iters: dict[int, list[str]] = {}

    def init(*_: Any) -> bool:
        ready[0] = True
        return True

    def set_(key: Any = None, value: Any = None, *_: Any) -> Any:
        if not ready[0]:
            boot.log_c("E", "fskv", "fskv not init, call fskv.init() first")
            return None
        if not isinstance(key, bytes) or value is None:
            return False
        py = _to_py(boot, value)
        if py is None or len(repr(py)) > MAX_VALUE_BYTES + 16:
            return False
        if isinstance(value, bytes) and len(value) > MAX_VALUE_BYTES:
            return False
        store.set(key.decode("latin-1"), py)
        return True

    def get(key: Any = None, *_: Any) -> Any:
        if not ready[0] or not isinstance(key, bytes):
            return None
        v = store.get(key.decode("latin-1"))
        return None if v is None else _to_lua(boot, v)

    def delete(key: Any = None, *_: Any) -> bool:
        if not ready[0] or not isinstance(key, bytes):
            return False
        store.delete(key.decode("latin-1"))
        return True

    def clear(*_: Any) -> bool:
        if not ready[0]:
            return False
        store.clear()
        return True

    def status(*_: Any) -> tuple[int, int, int]:
        return store.used_bytes(), TOTAL_BYTES, len(store.data)

    def iter_(*_: Any) -> Any:
        handle = len(iters) + 1
        iters[handle] = list(store.data)
        return handle

    def next_(handle: Any = None, *_: Any) -> Any:
        keys = iters.get(handle)
        if not keys:
            return None
        return keys.pop(0).encode("latin-1")

    boot.firmware_module("fskv", {
        "init": init, "set": set_, "get": get, "del": delete, "clear": clear,
        "status": status, "iter": iter_, "next": next_, "clr": clear,
    })
