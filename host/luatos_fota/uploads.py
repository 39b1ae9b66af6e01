"""Turn an uploaded file plus operator-given fields into a checked release description.

Everything a device will be told comes from here: the package is validated by
``luatos_common.packages`` (one definition of a good package for the emulator, the packer and
the server), and the version comes from the operator or from the Luatools file name, never from
a guess. Each refusal is an :class:`UploadError` whose ``field`` says which input was wrong.

The package is also checked against what it claims (luatos_common.scriptcheck): its scripts
compile, and the ``PROJECT`` and ``VERSION`` its main.lua sets are what the product, the
declared version and the file name say. A device reports the ``VERSION`` it runs, not the one
the server was told; when they differ it downloads the same package again and again.
:func:`check_rises` refuses a version that is not above what the product's devices may run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from luatos_common import packages as pk
from luatos_common.scriptcheck import ScriptCheckError, read_identity, syntax_errors
from luatos_common.version import FotaVersion, ScriptVersion, VersionError, format_core, parse_core

from .codes import VendorCode

KINDS = ("script", "full")
TARGET_MODES = ("all", "devices", "percent")


class UploadError(ValueError):
    """An upload refused; ``field`` names the offending input, ``details`` the package facts."""

    def __init__(self, field_: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.field = field_
        self.details = details or {}

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": VendorCode.INVALID_FIRMWARE, "field": self.field, "msg": str(self)}
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
    project: str = ""  # PROJECT from the package's main.lua

    @property
    def fota_key(self) -> tuple[int, ...]:
        """What devices compare: (x, z) for a script, (core, x, z) for a full package."""
        sv = self.script_version
        if self.kind == "full" and self.core_version is not None:
            return (self.core_version, sv.x, sv.z)
        return (sv.x, sv.z)


def firmware_project(firmware_name: str) -> str | None:
    """The PROJECT a product's firmware name carries (libfota2 sends
    ``<PROJECT>_LuatOS-SoC_<bsp>``), or None for a name not in that form."""
    head, sep, _ = firmware_name.rpartition("_LuatOS-SoC_")
    return head if sep and head else None


def _package_identity(pkg: pk.Package, name: str) -> tuple[str, ScriptVersion, str]:
    """PROJECT, VERSION and where VERSION is set, read from the package's own main.lua."""
    files = pkg.files or {}
    main = files.get("main.lua")
    if main is None:
        what = "only main.luac (bytecode)" if "main.luac" in files else "no main.lua"
        raise UploadError("file", f"{name}: the package holds {what}; the server reads PROJECT "
                          "and VERSION from main.lua source to check them (build it with "
                          "luatos-pack, which stores sources)")
    problems = syntax_errors(files)
    if problems:
        raise UploadError("file", f"{name}: " + "; ".join(str(p) for p in problems)
                          + " (the device would fail to load it)")
    try:
        ident = read_identity(main, "main.lua")
    except ScriptCheckError as e:
        fld = "PROJECT" if e.detail.startswith("no PROJECT") else "VERSION"
        raise UploadError(fld, f"{name}: {e}") from None
    return ident.project, ScriptVersion.parse(ident.version), f"main.lua:{ident.version_line}"


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

    project, pkg_sv, vwhere = _package_identity(pkg, name)
    if firmware_name:
        want = firmware_project(firmware_name)
        if want is not None and want != project:
            raise UploadError("PROJECT", f"{name}: the package's main.lua sets PROJECT = "
                              f"{project!r}, but the product's firmware_name {firmware_name!r} "
                              f"is for PROJECT {want!r}; devices running it would ask for "
                              "another product")
    if vendor is not None and vendor.project != project:
        raise UploadError("filename", f"file name {filename!r} says PROJECT {vendor.project!r}, "
                          f"but the package's main.lua sets PROJECT = {project!r}")
    if vendor is not None:
        vx, vz = (int(p) for p in vendor.script.split("."))
        if (vx, vz) != (pkg_sv.x, pkg_sv.z):
            raise UploadError("filename", f"file name {filename!r} says x.z = {vendor.script}, "
                              f"but the package's {vwhere} sets VERSION = {str(pkg_sv)!r}")
    if version not in (None, ""):
        try:
            declared = ScriptVersion.parse(str(version))
        except VersionError as e:
            raise UploadError("version", str(e)) from None
        if declared != pkg_sv:
            raise UploadError("version", f"version {declared} given, but the package's {vwhere} "
                              f"sets VERSION = {str(pkg_sv)!r}; a device running it would report "
                              f"{pkg_sv.x}.{pkg_sv.z}, not {declared.x}.{declared.z}, and download it "
                              "again and again")

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
        sv = pkg_sv
        source = "package"
        notes.append(f"version {pkg_sv} read from the package's {vwhere}")
    if source == "filename":  # the package says the middle group too
        sv = pkg_sv

    if vendor is not None:
        vcore = parse_core(vendor.core)
        if rkind == "full" and pkg.core_version and vcore != core_num:
            raise UploadError("filename", f"file name {filename!r} says core {vendor.core}, but "
                              f"the package carries core {pkg.core_version}")
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
    return CheckedUpload(pkg, sv, core_num, rkind, source, notes, project)


def check_rises(up: CheckedUpload, releases: list[tuple[int, str, str, int | None]],
                device_versions: list[str], *, allow_downgrade: bool = False) -> list[str]:
    """Refuse (UploadError, field ``version``) a release that is not above every version the
    product's devices may be running: each existing release (id, script_version, kind,
    core) and each version a device of the product has reported (``core.x.z``). Devices
    compare (x, z) of a script, and (core, x, z) of a full package. With ``allow_downgrade``
    the same findings come back as notes to record instead."""
    mine = up.fota_key
    above: list[str] = []
    for rid, sv_text, kind, core in releases:
        try:
            sv = ScriptVersion.parse(sv_text)
        except VersionError:
            continue
        if up.kind == "full" and kind == "full" and core is not None:
            theirs: tuple[int, ...] = (core, sv.x, sv.z)
            label = f"release {rid} ({format_core(core)} {sv_text}, full)"
        else:
            theirs = (sv.x, sv.z)
            label = f"release {rid} ({sv_text}, {kind})"
        if _compare(mine, theirs) <= 0:
            above.append(label)
    for text in device_versions:
        try:
            fv = FotaVersion.parse(text)
        except VersionError:
            continue
        theirs = (fv.core, fv.x, fv.z) if len(mine) == 3 else (fv.x, fv.z)
        if _compare(mine, theirs) <= 0:
            above.append(f"devices reporting {text}")
    if not above:
        return []
    shown = up.script_version if up.kind != "full" else \
        f"{format_core(up.core_version or 0)} {up.script_version}"
    msg = (f"version {shown} is not above what the product's devices may be running: "
           + ", ".join(above[:5]) + (f" and {len(above) - 5} more" if len(above) > 5 else ""))
    if not allow_downgrade:
        raise UploadError("version", msg + "; bump VERSION (or pass the downgrade flag to "
                          "publish it anyway, which is recorded)")
    return [f"published as a downgrade: {msg}"]


def _compare(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Compare a (x, z) or (core, x, z) key with another of either length: a full package's
    key against a script's compares (x, z) only."""
    if len(a) != len(b):
        a, b = a[-2:], b[-2:]
    return (a > b) - (a < b)
