"""A LuatOS project directory as the device sees it: one flat namespace of basenames.

Luatools and the device's ``/luadb`` store every file under its basename, so
``netdrv/netdrv_wifi.lua`` is found by ``require "netdrv_wifi"``. Two files with one basename
would silently shadow each other on the device; we refuse them and name both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Files that never go on the device (editor and VCS clutter).
_SKIP_DIRS = {".git", ".svn", "__pycache__", ".vscode", ".idea", "node_modules"}
# Documentation next to the scripts stays on the host (it would only take flash space).
_SKIP_SUFFIXES = (".swp", "~", ".bak", ".orig", ".md")

MAX_NAME_BYTES = 31  # LuaDB record name limit
MAX_FILES = 1024


class ProjectError(ValueError):
    """A project directory the device could not hold (duplicate names, bad names, too many)."""


@dataclass(frozen=True)
class ProjectFile:
    name: str  # the flat name on the device, e.g. "netdrv_wifi.lua"
    path: Path  # where it lives on the host

    def read(self) -> bytes:
        return self.path.read_bytes()


def scan_project(root: str | os.PathLike[str],
                 notes: list[str] | None = None) -> dict[str, ProjectFile]:
    """Every file below ``root`` by its flat device name, sorted by name.

    Two files with one name in different folders would be one ``/luadb`` file: refused when
    their contents differ, accepted when they are byte-identical (the vendor's demos ship such
    pairs), the first kept and a note naming both appended to ``notes``."""
    root_path = Path(root)
    if not root_path.is_dir():
        raise ProjectError(f"{root_path}: not a directory")
    found: dict[str, ProjectFile] = {}
    for dirpath, dirnames, filenames in os.walk(root_path):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith(".") or fn.endswith(_SKIP_SUFFIXES):
                continue
            p = Path(dirpath) / fn
            if fn in found:
                a = found[fn].path.relative_to(root_path)
                b = p.relative_to(root_path)
                if _same_bytes(found[fn].path, p):
                    if notes is not None:
                        notes.append(f"{a} and {b} are the same file (byte-identical); "
                                     f"/luadb/{fn} holds it once")
                    continue
                raise ProjectError(
                    f"duplicate file name {fn!r}: {a} and {b} would both be /luadb/{fn} "
                    "on the device; rename one")
            found[fn] = ProjectFile(fn, p)
    return dict(sorted(found.items()))


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def check_image_names(names: list[str]) -> None:
    """Refuse what a LuaDB image cannot hold, naming the offending file."""
    if len(names) > MAX_FILES:
        raise ProjectError(f"{len(names)} files; a LuaDB image holds at most {MAX_FILES}")
    for n in names:
        nb = n.encode("utf-8")
        if not nb:
            raise ProjectError("empty file name")
        if len(nb) > MAX_NAME_BYTES:
            raise ProjectError(
                f"file name {n!r} is {len(nb)} bytes; LuaDB names are at most "
                f"{MAX_NAME_BYTES} bytes")
