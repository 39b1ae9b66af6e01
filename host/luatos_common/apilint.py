"""Calls into firmware a model's core lacks: the "needs a newer core" lint of ``luatos-pack``.

The lint reads the sources only; what a model's firmware offers comes from an
:class:`ApiSurface`. The emulator provides one per model from its profiles (entry point group
``luatos.api_surface``, see :func:`load_surface`), so this module needs no emulator import and
another source of API lists can be plugged in the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol

# Firmware (C) modules of LuatOS builds, by the global name a script uses. A name here that a
# model's surface lacks is firmware that model (or the emulator) does not have; any other nil
# global is the script's own bug.
FIRMWARE_MODULES = frozenset({
    "adc", "audio", "ble", "bluetooth", "camera", "can", "cc", "codec", "crypto", "disp",
    "eink", "errDump", "fatfs", "fdb", "fota", "fskv", "ftp", "gmssl", "gpio", "hmeta", "http",
    "httpsrv", "i2c", "i2s", "iconv", "iotauth", "ir", "json", "lcd", "lora", "lvgl", "mcu",
    "miniz", "mobile", "mqtt", "netdrv", "onewire", "otp", "pack", "pm", "protobuf", "pwm",
    "rsa", "rtc", "rtos", "sdio", "sfd", "sms", "sntp", "socket", "spi", "tp", "u8g2", "uart",
    "websocket", "wdt", "wlan", "xxtea", "zbuff",
})


# Modules whose tables mix Lua's standard library with firmware functions: not linted.
LUA_SIDE = frozenset({"io", "os", "log"})


class ApiSurface(Protocol):
    """What firmware a model's core offers to scripts."""

    @property
    def model(self) -> str: ...

    @property
    def core(self) -> str: ...

    def has_module(self, module: str) -> bool: ...

    def has_function(self, module: str, function: str) -> bool: ...


@dataclass(frozen=True)
class ApiFinding:
    where: str  # path:line
    module: str
    function: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


GUARD_LINES = 3  # a guard this many lines above a call (or on its line) covers it
_CALL = re.compile(r"(?<![\w.:])([A-Za-z_]\w*)\s*[.:]\s*([A-Za-z_]\w*)\s*[(\"'{]")
_LONG_BRACKET = re.compile(r"--\[(=*)\[.*?\]\1\]|\[(=*)\[.*?\]\2\]", re.S)
_LINE_COMMENT = re.compile(r"--[^\n]*")
_STRING = re.compile(r"\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'")


def _code_only(src: str) -> str:
    """The source with comments and string literals blanked, newlines kept (so line numbers
    stay right and nothing inside a string looks like a call)."""
    def blank(m: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", m[0])

    out = _LONG_BRACKET.sub(blank, src)
    out = _STRING.sub(blank, out)
    return _LINE_COMMENT.sub(blank, out)


def _guarded(src: str, mod: str, fn: str) -> bool:
    """Whether ``src`` (the call's line and the few before it) tests ``mod`` or ``mod.fn``
    (``if mobile then``, ``if mobile and mobile.imei then``): code written for models
    without it."""
    target = rf"{re.escape(mod)}(?:\s*\.\s*{re.escape(fn)})?"
    return re.search(rf"\b(?:if|and|or|not|elseif)\s+{target}\s*(?:then|and|or|\)|$)", src,
                     re.M) is not None


def lint_calls(files: Mapping[str, bytes], surface: ApiSurface,
               paths: Mapping[str, str] | None = None) -> list[ApiFinding]:
    """Calls into firmware the surface lacks, one finding per distinct call site."""
    out: list[ApiFinding] = []
    for name, data in sorted(files.items()):
        if not name.endswith(".lua") or data.startswith(b"\x1bLua"):
            continue
        src = _code_only(data.decode("utf-8", "replace"))
        shadowed = set(re.findall(r"\blocal\s+([A-Za-z_]\w*)\s*=", src))
        shown = (paths or {}).get(name, name)
        lines = src.split("\n")
        for m in _CALL.finditer(src):
            mod, fn = m[1], m[2]
            if mod not in FIRMWARE_MODULES or mod in shadowed or mod in LUA_SIDE:
                continue
            line = src.count("\n", 0, m.start()) + 1
            if _guarded("\n".join(lines[max(0, line - 1 - GUARD_LINES):line]), mod, fn):
                continue
            where = f"{shown}:{line}"
            if not surface.has_module(mod):
                msg = (f"{mod}.{fn}: the {surface.model} firmware (core {surface.core}) has no "
                       f"'{mod}' module, so '{mod}' is nil there")
            elif not surface.has_function(mod, fn):
                msg = (f"{mod}.{fn} needs a newer core: {surface.model} core {surface.core} has "
                       f"no {mod}.{fn} (a nil call at run time)")
            else:
                continue
            out.append(ApiFinding(where, mod, fn, msg))
    return out


SURFACE_GROUP = "luatos.api_surface"


def load_surface(model: str) -> ApiSurface | None:
    """The API surface of ``model`` from the installed provider (the emulator's profiles), or
    None when no provider is installed or it does not know the model."""
    for ep in entry_points(group=SURFACE_GROUP):
        provider: Callable[[str], ApiSurface] = ep.load()
        try:
            return provider(model)
        except ValueError:
            return None
    return None
