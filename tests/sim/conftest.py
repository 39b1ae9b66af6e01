"""Helpers for emulator tests: a project is a dict of file name -> Lua source."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from luatos_sim import Device, DeviceOptions


def missing_dependency(reason: str) -> None:
    """Skip locally, fail on CI (env CI set): CI must exercise every test."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def write_project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(src).lstrip("\n"), encoding="utf-8")
    return root


@pytest.fixture
def boot(tmp_path: Path) -> Iterator[Callable[..., Device]]:
    """boot(main_src, **other_files) -> a Device over a fresh project."""
    made: list[Device] = []

    def make(main: str, files: dict[str, str] | None = None, **kw: object) -> Device:
        proj = write_project(tmp_path / f"proj{len(made)}", {"main.lua": main, **(files or {})})
        opts = kw.pop("options", None) or DeviceOptions(epoch_at_power_on=1_700_000_000)
        dev = Device(proj, options=opts, **kw)  # type: ignore[arg-type]
        made.append(dev)
        return dev

    yield make
    for d in made:
        d.close()

