"""io extras (exists, fileSize, readFile, writeFile, mkdir, lsdir, ...) on the device's folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .zbuff import ZBuff

if TYPE_CHECKING:
    from ..vm import Boot

# The firmware adds ``fill`` to file handles: ``ok, n = fd:fill(buff[, offset[, len]])`` reads up
# to ``len`` bytes (default: to the end of the zbuff) into the zbuff at ``offset`` (default 0)
# without moving its pointer; vendor libraries (httpplus, exftp, xmodem) stream uploads with it.
# The read itself stays in Lua: a file handle is Lua state Python must not touch mid-coroutine.
_FILE_FILL = b"""
local room, put = ...
local methods = debug.getregistry()["FILE*"].__index
methods.fill = function(f, buff, offset, len)
  local free = room(buff)
  if free == nil then
    error("bad argument #1 to 'fill' (ZBUFF* expected, got " .. type(buff) .. ")", 2)
  end
  offset = math.tointeger(offset) or 0
  if offset < 0 or offset > free then offset = free end
  local n = math.tointeger(len) or (free - offset)
  if n > free - offset then n = free - offset end
  if n <= 0 then return true, 0 end
  local data = f:read(n)
  if data == nil then return true, 0 end
  return true, put(buff, offset, data)
end
"""


def install(boot: Boot) -> None:
    fs = boot.platform.fs

    def host(path: Any, write: bool = False) -> str | None:
        if not isinstance(path, bytes):
            return None
        h, _ = fs.host_path(path, write)
        return h

    def exists(path: Any = None, *_: Any) -> bool:
        h = host(path)
        return bool(h) and os.path.exists(h)  # type: ignore[arg-type]

    def file_size(path: Any = None, *_: Any) -> int | None:
        h = host(path)
        return os.path.getsize(h) if h and os.path.isfile(h) else None

    def read_file(path: Any = None, mode: Any = b"rb", offset: Any = 0, length: Any = None) -> Any:
        h = host(path)
        if not h or not os.path.isfile(h):
            return None
        with open(h, "rb") as f:
            f.seek(int(offset or 0))
            return f.read() if length is None else f.read(int(length))

    def write_file(path: Any = None, data: Any = None, mode: Any = b"wb", *_: Any) -> bool:
        h = host(path, write=True)
        if not h or not isinstance(data, bytes):
            return False
        os.makedirs(os.path.dirname(h), exist_ok=True)
        with open(h, "ab" if mode and b"a" in mode else "wb") as f:
            f.write(data)
        return True

    def mkdir(path: Any = None, *_: Any) -> tuple[bool, int]:
        h = host(path, write=True)
        if not h:
            return False, -1
        try:
            os.makedirs(h, exist_ok=False)
            return True, 0
        except OSError:
            return False, -1

    def rmdir(path: Any = None, *_: Any) -> tuple[bool, int]:
        h = host(path, write=True)
        if not h or not os.path.isdir(h):
            return False, -1
        shutil.rmtree(h)
        return True, 0

    def lsdir(path: Any = None, count: Any = 10, offset: Any = 0) -> Any:
        h = host(path)
        if not h or not os.path.isdir(h):
            return False, -1
        names = sorted(os.listdir(h))[int(offset or 0):int(offset or 0) + int(count or 10)]
        t = boot.lua.table()
        for i, n in enumerate(names, 1):
            p = os.path.join(h, n)
            entry = boot.table(name=n, type=1 if os.path.isdir(p) else 0,
                               size=0 if os.path.isdir(p) else os.path.getsize(p))
            t[i] = entry
        return True, t

    def fsstat(*_: Any) -> tuple[bool, int, int, int, bytes]:
        total = 1024 * 1024
        used = sum(f.stat().st_size for f in fs.root.rglob("*") if f.is_file())
        return True, total // 4096, (used + 4095) // 4096, 4096, b"lfs"

    def dexist(path: Any = None, *_: Any) -> bool:
        h = host(path)
        return bool(h) and os.path.isdir(h)  # type: ignore[arg-type]

    def lsmount(*_: Any) -> Any:
        """The mounted file systems: the flash file system at the root and the script area."""
        return boot.table(boot.table(fs=b"lfs", path=b""), boot.table(fs=b"luadb", path=b"/luadb"))

    def zb_room(zb: Any = None, *_: Any) -> int | None:
        return zb.capacity if isinstance(zb, ZBuff) else None

    def zb_put(zb: Any, offset: int, data: bytes) -> int:
        zb.buf[offset:offset + len(data)] = data
        return len(data)

    boot.execute(_FILE_FILL, boot.lua_function(zb_room), boot.lua_function(zb_put))

    io = boot.G.io
    extras: dict[str, Callable[..., Any]] = {"exists": exists, "fileSize": file_size, "readFile": read_file,
                     "writeFile": write_file, "mkdir": mkdir, "rmdir": rmdir,
                     "lsdir": lsdir, "fsstat": fsstat, "dexist": dexist, "lsmount": lsmount}
    for name, fn in extras.items():
        io[name.encode()] = boot.lua_function(fn)
