"""Versions as LuatOS scripts write them and as libfota2 reports them.

A script declares ``VERSION = "xxx.yyy.zzz"``. libfota2 reports ``<core>.<xxx>.<zzz>`` where
``core`` is ``rtos.version()`` without its leading ``V`` and the middle group ``yyy`` is dropped
(the vendor platform ignores it). Comparison is numeric part by part; the raw text is kept so
that leading zeros survive a round trip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SCRIPT_RE = re.compile(r"^([0-9]+)\.([0-9]+)\.([0-9]+)$")
_CORE_RE = re.compile(r"^[Vv]?([0-9]+)$")


class VersionError(ValueError):
    """A version string that does not have the shape LuatOS requires."""


@dataclass(frozen=True, order=True)
class ScriptVersion:
    """A script ``VERSION`` (``xxx.yyy.zzz``); ordering ignores the raw text."""

    x: int
    y: int
    z: int
    raw: str = field(compare=False, default="")

    @classmethod
    def parse(cls, text: str) -> ScriptVersion:
        m = _SCRIPT_RE.match(text.strip()) if isinstance(text, str) else None
        if not m:
            raise VersionError(f"script version {text!r} is not in the form xxx.yyy.zzz")
        return cls(int(m[1]), int(m[2]), int(m[3]), text.strip())

    def __str__(self) -> str:
        return self.raw or f"{self.x:03d}.{self.y:03d}.{self.z:03d}"

    @property
    def groups(self) -> tuple[str, str, str]:
        """The three digit groups as written (leading zeros kept)."""
        a, b, c = str(self).split(".")
        return a, b, c

    def fota_version(self, core: str | int) -> FotaVersion:
        """What libfota2 sends for this script running on ``core`` (e.g. ``V2001``)."""
        core_num = parse_core(core)
        x, _, z = self.groups
        return FotaVersion(core_num, int(x), int(z), f"{core_num}.{x}.{z}")


@dataclass(frozen=True, order=True)
class FotaVersion:
    """The ``version=core.x.z`` value of a libfota2 request."""

    core: int
    x: int
    z: int
    raw: str = field(compare=False, default="")

    @classmethod
    def parse(cls, text: str) -> FotaVersion:
        m = _SCRIPT_RE.match(text.strip()) if isinstance(text, str) else None
        if not m:
            raise VersionError(f"fota version {text!r} is not in the form core.x.z")
        return cls(int(m[1]), int(m[2]), int(m[3]), text.strip())

    @property
    def script_key(self) -> tuple[int, int]:
        """The (x, z) pair that identifies the script; y is not transmitted."""
        return (self.x, self.z)

    def __str__(self) -> str:
        return self.raw or f"{self.core}.{self.x:03d}.{self.z:03d}"


def parse_core(core: str | int) -> int:
    """``"V2001"``, ``"2001"`` or ``2001`` -> ``2001``."""
    if isinstance(core, int):
        return core
    m = _CORE_RE.match(str(core).strip())
    if not m:
        raise VersionError(f"core version {core!r} is not in the form VNNNN")
    return int(m[1])


def format_core(core: str | int) -> str:
    return f"V{parse_core(core)}"


def reported_version(version: str, core: str | int | None = None) -> FotaVersion:
    """The libfota2 form (``core.x.z``) of a version a device states elsewhere, e.g. in a push
    login: either already ``core.x.z``, or the script ``VERSION`` (``xxx.yyy.zzz``) plus the
    core it runs (``V2001``)."""
    if core is not None:
        core_num = parse_core(core)
        fv = FotaVersion.parse(version)
        if fv.core == core_num:
            return fv
        return ScriptVersion.parse(version).fota_version(core_num)
    return FotaVersion.parse(version)
