"""A LuatOS project directory as the device sees it: one flat namespace of basenames.

Luatools and the device's ``/luadb`` store every file under its basename, so
``netdrv/netdrv_wifi.lua`` is found by ``require "netdrv_wifi"``. Two files with one basename
would silently shadow each other on the device; we refuse them and name both.

Only device files belong in the image: a project directory also holds the host side of the
work (tests, docs, Python helpers, editor and VCS files), which would take flash space and, in
the worst case, shadow a device file of the same basename. What stays out, in this order:
dotfiles and dot-directories, the directories in :data:`HOST_DIRS`, the suffixes in
:data:`HOST_SUFFIXES`, and every pattern of the project's ``.luatosignore`` (see
:func:`read_ignore_file`). ``luatos-pack --list`` shows the decision for each file; the
emulator boots the same set, so a test sees exactly what a device would get.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILE = ".luatosignore"
# Directories that hold the host side of a project, never device files.
HOST_DIRS = frozenset({"__pycache__", "node_modules", "tests", "test", "docs", "doc"})
# Documentation, Python and editor leftovers stay on the host.
HOST_SUFFIXES = (".swp", "~", ".bak", ".orig", ".md", ".rst", ".py", ".pyc")

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


@dataclass(frozen=True)
class Excluded:
    """A file (or directory) of the project that is not packed, and why."""

    relpath: str  # posix path relative to the project root; directories end in "/"
    reason: str


def read_ignore_file(root: Path) -> list[str]:
    """The patterns of ``root/.luatosignore``: one glob a line, ``#`` starts a comment.

    A pattern without ``/`` matches a file or directory name anywhere (``*.csv``, ``build``);
    one with ``/`` matches the path from the project root (``assets/raw/*``); a trailing
    ``/`` matches directories only."""
    path = root / IGNORE_FILE
    if not path.is_file():
        return []
    out = []
    for line in path.read_text("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _ignored(rel: str, name: str, is_dir: bool, patterns: list[str]) -> str | None:
    for pat in patterns:
        dir_only = pat.endswith("/")
        p = pat.rstrip("/")
        if dir_only and not is_dir:
            continue
        if "/" in p:
            hit = fnmatch.fnmatchcase(rel, p.lstrip("/"))
        else:
            hit = fnmatch.fnmatchcase(name, p)
        if hit:
            return f"{IGNORE_FILE}: {pat}"
    return None


def _host_reason(name: str, is_dir: bool) -> str | None:
    if name.startswith("."):
        return "dotfile"
    if is_dir and name in HOST_DIRS:
        return "host-side directory"
    if not is_dir and name.endswith(HOST_SUFFIXES):
        return "host-side file"
    return None


def classify_project(root: str | os.PathLike[str], notes: list[str] | None = None,
                     ) -> tuple[dict[str, ProjectFile], list[Excluded]]:
    """Every device file below ``root`` by its flat device name (sorted), and what was left
    out with the reason (a left-out directory is listed once, not file by file).

    Two files with one name in different folders would be one ``/luadb`` file: refused when
    their contents differ, accepted when they are byte-identical (the vendor's demos ship such
    pairs), the first kept and a note naming both appended to ``notes``."""
    root_path = Path(root)
    if not root_path.is_dir():
        raise ProjectError(f"{root_path}: not a directory")
    patterns = read_ignore_file(root_path)
    found: dict[str, ProjectFile] = {}
    excluded: list[Excluded] = []
    for dirpath, dirnames, filenames in os.walk(root_path):
        here = Path(dirpath)
        base = here.relative_to(root_path).as_posix()
        prefix = "" if base == "." else base + "/"
        keep = []
        for d in sorted(dirnames):
            why = _host_reason(d, True) or _ignored(prefix + d, d, True, patterns)
            if why:
                excluded.append(Excluded(prefix + d + "/", why))
            else:
                keep.append(d)
        dirnames[:] = keep
        for fn in sorted(filenames):
            why = _host_reason(fn, False) or _ignored(prefix + fn, fn, False, patterns)
            if why:
                excluded.append(Excluded(prefix + fn, why))
                continue
            p = here / fn
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
    return dict(sorted(found.items())), sorted(excluded, key=lambda e: e.relpath)


def scan_project(root: str | os.PathLike[str],
                 notes: list[str] | None = None) -> dict[str, ProjectFile]:
    """Every device file below ``root`` by its flat device name, sorted by name."""
    return classify_project(root, notes)[0]


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
