"""What a script image must be for a device to run it and for libfota2 to report it right.

Two checks shared by ``luatos-pack`` (before it packs) and the FOTA server (before it publishes):

* every ``.lua`` compiles under Lua 5.3, the device's VM (the check only compiles: ``load`` in a
  fresh runtime with nothing run), so a syntax error is caught on the host and named
  ``file:line`` instead of reboot-looping a device in the field;
* ``main.lua`` sets ``PROJECT`` and ``VERSION = "xxx.yyy.zzz"`` at top level: libfota2 builds
  its query from them, and a package whose ``VERSION`` differs from what the server believes
  makes the device download the same package again and again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import lupa.lua53 as lua53

VERSION_FORM = re.compile(r"^\d{3}\.\d{3}\.\d{3}$")
_ASSIGN = r"""^[ \t]*{name}[ \t]*=[ \t]*(?P<q>["'])(?P<v>[^"'\r\n]*)(?P=q)"""
_STAMP = re.compile(r"""^(?P<head>[ \t]*VERSION[ \t]*=[ \t]*)(?P<q>["'])[^"'\r\n]*(?P=q)""", re.M)
_LUA_ERR = re.compile(r"^\[?(?:string )?\"?(?P<name>[^:\]\"]+)\"?\]?:(?P<line>\d+): (?P<msg>.*)$", re.S)


class ScriptCheckError(ValueError):
    """A script that cannot run or cannot be reported right; ``where`` is ``file:line``."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.detail = message


@dataclass(frozen=True)
class Identity:
    """``PROJECT`` and ``VERSION`` as main.lua sets them, with the lines they are on."""

    project: str
    version: str
    project_line: int
    version_line: int


def syntax_errors(files: Mapping[str, bytes], paths: Mapping[str, str] | None = None,
                  ) -> list[ScriptCheckError]:
    """Every ``.lua`` of ``files`` that Lua 5.3 refuses to compile, as ``path:line: message``.

    ``paths`` maps a flat device name to what to call it (the path in the project)."""
    rt = lua53.LuaRuntime(register_eval=False, register_builtins=False)
    compile_ = rt.eval("function(src, name) local f, e = load(src, name, 't') "
                       "if f then return nil end return e end")
    out = []
    for name, data in files.items():
        if not name.endswith(".lua") or data.startswith(b"\x1bLua"):
            continue
        shown = (paths or {}).get(name, name)
        err = compile_(data, "=" + shown)
        if err is None:
            continue
        text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
        m = _LUA_ERR.match(text)
        if m:
            out.append(ScriptCheckError(f"{shown}:{m['line']}", f"syntax error: {m['msg']}"))
        else:
            out.append(ScriptCheckError(shown, f"syntax error: {text}"))
    return out


def read_identity(main_lua: bytes, where: str = "main.lua") -> Identity:
    """``PROJECT`` and ``VERSION`` from main.lua (a text search for top-level assignments of a
    string literal, which is how Luatools and libfota2 users write them)."""
    text = main_lua.decode("utf-8", "replace")
    found: dict[str, tuple[str, int]] = {}
    for key in ("PROJECT", "VERSION"):
        m = re.search(_ASSIGN.format(name=key), text, re.M)
        if not m or not m["v"].strip():
            raise ScriptCheckError(where, f"no {key} = \"...\" assignment; libfota2 needs "
                                   "PROJECT and VERSION = \"xxx.yyy.zzz\" as globals in main.lua")
        found[key] = (m["v"].strip(), text.count("\n", 0, m.start()) + 1)
    project, pline = found["PROJECT"]
    version, vline = found["VERSION"]
    if not VERSION_FORM.match(version):
        raise ScriptCheckError(f"{where}:{vline}", f"VERSION {version!r} is not xxx.yyy.zzz "
                               "(three groups of three digits, e.g. \"001.000.002\")")
    return Identity(project, version, pline, vline)


def stamp_version(main_lua: bytes, version: str, where: str = "main.lua") -> bytes:
    """main.lua with its ``VERSION`` literal replaced by ``version`` (what Luatools does when
    it builds a release); the rest of the file is kept byte for byte."""
    if not VERSION_FORM.match(version):
        raise ScriptCheckError("--version", f"{version!r} is not xxx.yyy.zzz "
                               "(three groups of three digits, e.g. 001.000.002)")
    text = main_lua.decode("utf-8", "surrogateescape")
    m = _STAMP.search(text)
    if m is None:
        raise ScriptCheckError(where, "no VERSION = \"...\" line to stamp")
    q = m["q"]
    new = text[:m.start()] + f"{m['head']}{q}{version}{q}" + text[m.end():]
    return new.encode("utf-8", "surrogateescape")
