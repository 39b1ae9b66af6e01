"""Turn an uploaded file plus operator-given fields into a checked release description.

Everything a device will be told comes from here: the package is validated by
``luatos_common.packages`` (one definition of a good package for the emulator, the packer and
the server), and the version comes from the operator or from the Luatools file name, never from
a guess. Each refusal is an :class:`UploadError` whose ``field`` says which input was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from luatos_common import packages as pk
from luatos_common.version import ScriptVersion, VersionError, format_core, parse_core

KINDS = ("script", "full")
TARGET_MODES = ("all", "devices", "percent")


class UploadError(ValueError):
    """An upload refused; ``field`` names the offending input, ``details`` the package facts."""

    def __init__(self, field_: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.field = field_
        self.details = details or {}

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": 26, "field": self.field, "msg": str(self)}
        if self.details:
            out["details"] = self.details
        return out


@dataclass
class CheckedUpload:
    package: pk.Package
    script_version: ScriptVersion
    core_version: int | None
    kind: str
    version_source: str
    notes: list[str] = field(default_factory=list)


def _package_error_details(e: pk.PackageError) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("format", "field", "offset", "hint"):
        v = getattr(e, name, None)
        if v is not None:
            out[name] = v
    for name in ("expected", "got"):
        v = getattr(e, name, None)
        if v is not None:
            out[name] = v.hex() if isinstance(v, bytes | bytearray) else str(v)
    return out


def check_upload(data: bytes, *, filename: str | None = None, version: str | None = None,
                 core: str | int | None = None, kind: str | None = None,
                 firmware_name: str | None = None) -> CheckedUpload:
    """Validate package and version inputs; raise :class:`UploadError` naming the problem."""
    name = filename or "upload"
    if not data:
        raise UploadError("file", f"{name}: empty file (0 bytes); a package is never empty")
    try:
        pkg = pk.detect_and_validate(data)
    except pk.PackageError as e:
        raise UploadError("file", f"{name}: invalid package: {e}", _package_error_details(e)) from None
    if pkg.kind == pk.KIND_EC and not pkg.details.get("script_only", True):
        pkg_kind = "full"
    else:
        pkg_kind = "full" if pkg.kind == pk.KIND_FULL else "script"
    if kind is not None and kind not in KINDS:
        raise UploadError("kind", f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    notes: list[str] = []
    vendor = pk.parse_vendor_filename(filename) if filename else None

    # Core version: the option, else what the package carries, else the vendor file name.
    core_num: int | None = None
    if core not in (None, ""):
        try:
            core_num = parse_core(core)  # type: ignore[arg-type]
        except VersionError as e:
            raise UploadError("core", str(e)) from None
    if pkg.core_version:
        try:
            pkg_core = parse_core(pkg.core_version)
        except VersionError:
            raise UploadError("file", f"{name}: package names core {pkg.core_version!r}, which is not VNNNN") from None
        if core_num is not None and core_num != pkg_core:
            raise UploadError("core", f"core {format_core(core_num)} given, but the package carries {pkg.core_version}")
        core_num = pkg_core

    rkind = kind or pkg_kind
    if rkind == "script" and pkg_kind == "full":
        raise UploadError("kind", f"{name}: the package is a {pkg.kind} package carrying a core, "
                          "so the release kind must be 'full'")
    if rkind == "full" and pkg_kind == "script":
        raise UploadError("kind", f"{name}: a {pkg.kind} package holds only a script; kind 'full' "
                          "needs a package that carries a core (luatos-full or an EC package with an SDK part)")

    # Script version: the option, else the vendor file name; never guessed.
    source = "given"
    if version not in (None, ""):
        try:
            sv = ScriptVersion.parse(str(version))
        except VersionError as e:
            raise UploadError("version", str(e)) from None
        if vendor is not None:
            vx, vz = (int(p) for p in vendor.script.split("."))
            if (vx, vz) != (sv.x, sv.z):
                raise UploadError("version", f"version {sv} given, but the file name {filename!r} says "
                                  f"x.z = {vendor.script}; rename the file or fix --version")
    elif vendor is not None:
        x, z = vendor.script.split(".")
        sv = ScriptVersion(int(x), 0, int(z), f"{x}.000.{z}")
        source = "filename"
        notes.append(f"version taken from file name {filename!r} (x.z = {vendor.script}; "
                     "the middle group is not transmitted by devices and is recorded as 000)")
    else:
        raise UploadError("version", f"{name}: no version given and the file name does not follow "
                          "PROJECT_core.x.z_LuatOS-SoC_CHIP.bin; pass --version XXX.YYY.ZZZ "
                          "(the VERSION the script declares)")

    if vendor is not None:
        vcore = parse_core(vendor.core)
        if rkind == "full" and core_num is None:
            core_num = vcore
            notes.append(f"core {vendor.core} taken from the file name")
        elif rkind == "script" and core_num is None:
            core_num = vcore
            notes.append(f"built for core {vendor.core} (from the file name)")
        if firmware_name:
            # libfota2 cuts the bsp name at its first '-' (docs/behaviour.md §7.2)
            expected_fw = f"{vendor.project}_LuatOS-SoC_{vendor.chip.split('-', 1)[0]}"
            if expected_fw != firmware_name:
                raise UploadError("file", f"file name {filename!r} is for firmware {expected_fw!r}, "
                                  f"but the product's firmware_name is {firmware_name!r}")
    if rkind == "full" and core_num is None:
        raise UploadError("core", f"{name}: a full release needs the core version it carries (--core VNNNN)")
    return CheckedUpload(pkg, sv, core_num, rkind, source, notes)
