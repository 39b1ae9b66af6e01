"""io extras (exists, fileSize, readFile, writeFile, mkdir, lsdir, ...) on the device's folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..vm import Boot


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

    io = boot.G.io
    extras: dict[str, Callable[..., Any]] = {"exists": exists, "fileSize": file_size, "readFile": read_file,
                     "writeFile": write_file, "mkdir": mkdir, "rmdir": rmdir,
                     "lsdir": lsdir, "fsstat": fsstat}
    for name, fn in extras.items():
        io[name.encode()] = boot.lua_function(fn)
