"""Where a boot's Lua comes from: the flashed script image, library dirs and built-in stand-ins.

The device resolves ``require "x"`` by trying path templates in order (``rtos.setPaths`` first,
then ``/%s.luac``, ``/%s.lua``, ``/luadb/%s.luac``, ``/luadb/%s.lua``, ``/lua/%s.luac``,
``/lua/%s.lua``). ``/luadb/`` is the read-only script image. In the emulator that image is the
flashed project (or the last applied FOTA package), backed by ``--lib-dir`` directories and
then by the built-in stand-ins for ``sys``, ``libfota2``, ``libnet`` and ``exnetif``, in that
order of precedence.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from luatos_common.project import ProjectError, scan_project

from .bytecode import host_loadable

BUILTIN_LIB_DIR = Path(__file__).parent / "lua" / "lib"

DEFAULT_TEMPLATES = ("/%s.luac", "/%s.lua", "/luadb/%s.luac", "/luadb/%s.lua",
                     "/lua/%s.luac", "/lua/%s.lua")
MAX_TEMPLATE_BYTES = 23

LUA_SIGNATURE = b"\x1bLua"


class ScriptError(ValueError):
    """A script source the emulator cannot use (named, with the reason)."""


def load_project_files(root: str | os.PathLike[str],
                       notes: list[str] | None = None) -> dict[str, bytes]:
    """Read a project directory — or a script image / upgrade package file — into the flat
    ``/luadb`` namespace (``notes``: what the reader accepted but a user should know)."""
    if Path(root).is_file():
        return load_image_file(Path(root))
    try:
        files = scan_project(root, notes)
    except ProjectError as e:
        raise ScriptError(str(e)) from None
    return {name: f.read() for name, f in files.items()}


def load_image_file(path: Path) -> dict[str, bytes]:
    """A LuaDB script image (bare or with the Air8101 BK CRC framing, as ``luatos-pack image``
    writes it) or an upgrade package (TAUL, LFTA, full): what the device would hold in /luadb."""
    from luatos_common.bkcrc import PackageError, unframe
    from luatos_common.luadb import looks_like_luadb, parse_luadb
    from luatos_common.packages import detect_and_validate, inspect_image, is_framed_image

    data = path.read_bytes()
    image = inspect_image(data)
    if image.ok:
        payload = unframe(data) if is_framed_image(data) else data
        return {e.name: e.data for e in parse_luadb(payload)}
    try:
        pkg = detect_and_validate(data)
    except PackageError as e:
        if looks_like_luadb(data):
            raise ScriptError(f"{path}: not a valid script image: "
                              f"{'; '.join(map(str, image.failures)) or e}") from None
        raise ScriptError(f"{path}: neither a script image nor an upgrade package: {e}") from None
    if not pkg.files:
        raise ScriptError(f"{path}: a {pkg.kind} package without script files")
    return dict(pkg.files)


def load_lib_dir(root: str | os.PathLike[str]) -> dict[str, bytes]:
    """A library directory (e.g. a LuatOS checkout's ``script/libs``): top-level .lua files,
    or the whole tree when it has no subfolders of its own (flattened like a project)."""
    path = Path(root)
    if not path.is_dir():
        raise ScriptError(f"--lib-dir {path}: not a directory")
    try:
        return {name: f.read() for name, f in scan_project(path).items()
                if name.endswith((".lua", ".luac"))}
    except ProjectError:
        # Library trees (e.g. script/ with corelib/ and libs/) may repeat names across
        # subfolders; take the top level only, where the user pointed.
        return {p.name: p.read_bytes() for p in sorted(path.iterdir())
                if p.is_file() and p.suffix in (".lua", ".luac")}


@dataclass
class Resolved:
    source: bytes
    chunkname: str  # "@main.lua", as Luatools compiles it
    path: str  # the device path it was found at


class ScriptImage:
    """The script namespace of one boot."""

    def __init__(self, image: Mapping[str, bytes], lib_dirs: Iterable[Mapping[str, bytes]] = (),
                 fs_root: Path | None = None, builtins: bool = True) -> None:
        self.layers: list[Mapping[str, bytes]] = [image, *lib_dirs]
        if builtins:
            self.layers.append(_builtin_libs())
        self.fs_root = fs_root
        self.templates: list[str] = []

    def luadb_file(self, name: str) -> bytes | None:
        for layer in self.layers:
            data = layer.get(name)
            if data is not None:
                return data
        return None

    def set_paths(self, *templates: str | None) -> None:
        chosen: list[str] = []
        for t in templates[:4]:
            if t is None:
                continue
            if len(t.encode()) > MAX_TEMPLATE_BYTES or t.replace("%%", "").count("%s") != 1 \
                    or "%" in t.replace("%%", "").replace("%s", ""):
                raise ScriptError("search path must contain exactly one %s")
            chosen.append(t)
        self.templates = chosen

    def _read_device_path(self, path: str) -> bytes | None:
        if path.startswith("/luadb/"):
            return self.luadb_file(path[len("/luadb/"):])
        if self.fs_root is None:
            return None
        host = self.fs_root / path.lstrip("/")
        try:
            return host.read_bytes() if host.is_file() else None
        except OSError:
            return None

    def find(self, name: str) -> Resolved | None:
        for tpl in (*self.templates, *DEFAULT_TEMPLATES):
            path = tpl.replace("%%", "\0").replace("%s", name).replace("\0", "%")
            data = self._read_device_path(path)
            if data is None:
                continue
            if data.startswith(LUA_SIGNATURE):
                data = host_loadable(data)  # device bytecode (size_t=4) -> the host's layout
            base = path.rsplit("/", 1)[-1]
            if base.endswith(".luac"):
                base = base[:-1]
            return Resolved(data, "@" + base, path)
        return None


def check_bytecode(data: bytes, path: str) -> str | None:
    """None when ``data`` is source or host-loadable bytecode; otherwise why it cannot run."""
    if not data.startswith(LUA_SIGNATURE):
        return None
    if len(data) < 17 or data[4] != 0x53:
        return (f"{path}: bytecode for Lua {data[4] >> 4}.{data[4] & 15 if len(data) > 4 else 0}; "
                "this device runs Lua 5.3")
    int_size, size_t_size, instr_size, int_t, num_t = data[12:17]
    if (int_size, size_t_size, instr_size, int_t, num_t) != (4, 8, 4, 8, 8):
        return (f"{path}: device bytecode (int={int_size}, size_t={size_t_size}, "
                f"Instruction={instr_size}, integer={int_t}, number={num_t}) cannot run on this "
                "host, whose Lua uses size_t=8. Build the package from sources instead (for "
                "example `luatos-pack ota PROJECT`), which the device loads just as well")
    return None


_BUILTINS: dict[str, bytes] | None = None


def _builtin_libs() -> dict[str, bytes]:
    global _BUILTINS
    if _BUILTINS is None:
        _BUILTINS = {p.name: p.read_bytes() for p in sorted(BUILTIN_LIB_DIR.glob("*.lua"))}
    return _BUILTINS
