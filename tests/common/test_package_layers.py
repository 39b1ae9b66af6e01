"""The package layering the README promises: the emulator stands alone.

``luatos_sim`` may be installed and imported without the server or the hardware tools; the
harness (``luatos_testing``) is where the three meet. Every import statement is checked,
including the lazy ones inside functions, so a fixture that slips back into the emulator fails
here rather than in a user's minimal install.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HOST = Path(__file__).resolve().parents[2] / "host"
TOOLS = Path(__file__).resolve().parents[2] / "tools"

# package -> first-party packages it must never import
FORBIDDEN = {
    "luatos_sim": {"luatos_fota", "luatos_tools", "luatos_testing"},
    "luatos_common": {"luatos_sim", "luatos_fota", "luatos_tools", "luatos_testing"},
    "luatos_fota": {"luatos_sim", "luatos_tools", "luatos_testing"},
    "luatos_tools": {"luatos_sim", "luatos_fota", "luatos_testing"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((a.name.split(".")[0], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def package_dir(name: str) -> Path:
    return HOST / name if (HOST / name).is_dir() else TOOLS / name


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    root = package_dir(package)
    files = sorted(root.rglob("*.py"))
    assert files, f"no Python files under {root}"
    bad = [f"{f.relative_to(root.parent)}:{line} imports {mod}"
           for f in files for mod, line in sorted(imported_packages(f))
           if mod in FORBIDDEN[package]]
    assert not bad, "\n".join(bad)


def test_the_scan_sees_lazy_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from luatos_fota.store import Store\n    import luatos_tools.soc\n")
    assert imported_packages(src) == {("luatos_fota", 2), ("luatos_tools", 3)}
