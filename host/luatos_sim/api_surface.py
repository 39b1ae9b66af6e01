"""The firmware API a model's core offers, and a lint for calls into what it lacks.

``luatos-pack`` warns when a project calls a firmware function the target model's core does not
have ("needs a newer core"), and the server's preflight names a module the emulator does not
cover instead of failing the package. Both ask an :class:`ApiSurface`; today's surface is what
the emulator installs for the model (its firmware tables, read from a booted VM once per model
and process). Per-model API lists in the profiles can replace :func:`surface_for` without
touching the callers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from .profiles import get_profile

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


class ApiSurface(Protocol):
    """What firmware a model's core offers to scripts."""

    @property
    def model(self) -> str: ...

    @property
    def core(self) -> str: ...

    def has_module(self, module: str) -> bool: ...

    def has_function(self, module: str, function: str) -> bool: ...


@dataclass(frozen=True)
class EmulatedSurface:
    """The firmware tables the emulator installs for a model profile."""

    model: str
    core: str
    functions: Mapping[str, frozenset[str]]

    def has_module(self, module: str) -> bool:
        return module in self.functions

    def has_function(self, module: str, function: str) -> bool:
        return function in self.functions.get(module, frozenset())


@functools.lru_cache(maxsize=8)
def surface_for(model: str) -> ApiSurface:
    """The API surface of ``model`` (raises ValueError for a model without a profile)."""
    from .device import Device

    profile = get_profile(model)
    names = ",".join(f'"{m}"' for m in sorted(FIRMWARE_MODULES | profile.modules))
    probe = (
        "local out = {}\n"
        f"for _, m in ipairs({{{names}}}) do\n"
        "  local t = rawget(_G, m)\n"
        "  if type(t) == 'table' then\n"
        "    out[#out + 1] = m .. '.'\n"
        "    for k, v in pairs(t) do\n"
        "      if type(k) == 'string' and type(v) == 'function' then out[#out + 1] = m .. '.' .. k end\n"
        "    end\n"
        "  end\n"
        "end\n"
        "log.info('api', table.concat(out, ' '))\n")
    functions: dict[str, set[str]] = {}
    with Device(files={"main.lua": probe.encode()}, model=profile) as dev:
        rec = dev.run_until(r"^I/user\.api ", within="5s")
    for item in rec.line.split()[1:]:
        mod, _, fn = item.partition(".")
        functions.setdefault(mod, set())
        if fn:
            functions[mod].add(fn)
    return EmulatedSurface(profile.model, profile.core,
                           {m: frozenset(f) for m, f in functions.items()})


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
            if mod not in FIRMWARE_MODULES or mod in shadowed or mod in ("io", "os"):
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
