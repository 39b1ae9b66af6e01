"""The device's filesystem: a folder of its own on the host, and nothing outside it.

Device paths are absolute (``/update.bin``); a relative path is taken from ``/``. ``/luadb/``
is the read-only script image. A path that would leave the device's folder is refused rather
than resolved, so a script can never touch the host's files.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path


class DeviceFS:
    def __init__(self, root: Path, image_dir: Path) -> None:
        self.root = root
        self.image_dir = image_dir
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def normalize(path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return posixpath.normpath(path).replace("//", "/")

    def host_path(self, path: str | bytes, write: bool = False) -> tuple[str | None, str | None]:
        """(host path, None) or (None, device-style error text)."""
        p = path.decode("utf-8", "replace") if isinstance(path, bytes) else str(path)
        if not p:
            return None, f"{p}: No such file or directory"
        dev = self.normalize(p)
        if dev == "/luadb" or dev.startswith("/luadb/"):
            if write:
                return None, f"{dev}: Read-only file system"
            name = dev[len("/luadb/"):]
            if "/" in name:
                return None, f"{dev}: No such file or directory"
            return str(self.image_dir / name), None
        host = (self.root / dev.lstrip("/")).resolve()
        root = self.root.resolve()
        if host != root and root not in host.parents:
            return None, f"{dev}: Permission denied"
        return str(host), None

    def map_path(self, path: bytes, mode: bytes | None = b"r") -> tuple[bytes | None, bytes | None]:
        """Bridge for the Lua side's io.open / os.remove wrappers."""
        m = (mode or b"r").decode("ascii", "replace")
        write = any(c in m for c in "wa+")
        host, err = self.host_path(path, write)
        if host is None:
            return None, (err or "").encode()
        if write:
            os.makedirs(os.path.dirname(host), exist_ok=True)
        return host.encode(), None
