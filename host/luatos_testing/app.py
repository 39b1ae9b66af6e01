"""The project under test as a buildable application (pytest-embedded's ``app``, for LuatOS).

A FOTA test needs two builds of one project: the one the device boots and the one it upgrades
to. Both come from the same directory; only ``VERSION`` in main.lua differs, stamped into the
package the way a release build does it, so the working copy is never edited:

    def test_upgrade(luatos_app, fota_server, luatos_device, dut):
        fota_server.publish_project(luatos_app, version="001.000.001")
        ...

``package(version)`` builds the model's native script OTA package (Air8101: the TAUL package
``luatos-pack ota`` writes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from luatos_common.packages import build_air8101_ota, build_ec_script, build_lfta
from luatos_common.scriptcheck import stamp_version
from luatos_sim.profiles import ModelProfile, get_profile
from luatos_sim.scripts import load_project_files

_GLOBAL_RE = r"""^[ \t]*{name}[ \t]*=[ \t]*(["'])([^"'\r\n]*)\1"""


def main_lua_global(main_lua: bytes, name: str) -> str | None:
    """The string a top-level ``NAME = "..."`` assignment in main.lua gives (a text search, as
    Luatools does), or None."""
    m = re.search(_GLOBAL_RE.format(name=name).encode(), main_lua, re.MULTILINE)
    return m[2].decode("utf-8", "replace").strip() if m else None


class ProjectError(ValueError):
    """The project cannot be built into a package (no main.lua, no PROJECT, ...)."""


@dataclass
class LuatosApp:
    """A LuatOS project directory and what a FOTA server needs to know about it."""

    project: Path
    model: str = "Air8101"
    files: dict[str, bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.project = Path(self.project)
        self.files = load_project_files(self.project)
        if "main.lua" not in self.files:
            raise ProjectError(f"{self.project}: no main.lua (source) to build packages from")

    @property
    def profile(self) -> ModelProfile:
        return get_profile(self.model)

    @property
    def name(self) -> str:
        """``PROJECT`` from main.lua."""
        name = main_lua_global(self.files["main.lua"], "PROJECT")
        if not name:
            raise ProjectError(f"{self.project}/main.lua: no PROJECT = \"...\" line")
        return name

    @property
    def version(self) -> str:
        """``VERSION`` from main.lua: what the device boots with."""
        version = main_lua_global(self.files["main.lua"], "VERSION")
        if not version:
            raise ProjectError(f"{self.project}/main.lua: no VERSION = \"...\" line")
        return version

    @property
    def product_key(self) -> str | None:
        """``PRODUCT_KEY`` from main.lua (libfota2's default project_key), if the project sets
        it there; projects that pass ``opts.project_key`` give it to the server themselves."""
        return main_lua_global(self.files["main.lua"], "PRODUCT_KEY") or None

    @property
    def firmware_name(self) -> str:
        """What libfota2 sends as ``firmware_name``: ``<PROJECT>_LuatOS-SoC_<bsp>``."""
        return f"{self.name}_LuatOS-SoC_{self.profile.bsp.split('-')[0]}"

    def files_at(self, version: str) -> dict[str, bytes]:
        """The project's files with main.lua's VERSION set to ``version``."""
        where = f"{self.project}/main.lua"
        return {**self.files, "main.lua": stamp_version(self.files["main.lua"], version, where)}

    def package(self, version: str) -> bytes:
        """The upgrade package declaring ``version``, in the model's native format."""
        files = self.files_at(version)
        fmt = self.profile.fota_formats[0]
        if fmt == "air8101-script":
            return build_air8101_ota(files)
        if fmt == "lfta":
            return build_lfta(files)
        if fmt == "ec":
            return build_ec_script(files, chip="EC618" if self.profile.chip == "EC618" else "EC7XX")
        raise ProjectError(f"model {self.model}: no script package builder for {fmt!r}")
