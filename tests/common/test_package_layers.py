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


# Import circles inside a package, lazy imports included. The one left is a factory:
# blobs.open_blobs imports the S3 store only when an s3:// URL asks for it (boto3 stays optional).
KNOWN_CIRCLES = {frozenset({"blobs", "objectstore"})}


def module_imports(root: Path) -> dict[str, set[str]]:
    """Each module of the flat package ``root`` -> the sibling modules it imports."""
    names = {f.stem for f in root.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for f in sorted(root.glob("*.py")):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), filename=str(f))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                parts = node.module.split(".")
                if parts[0] == root.name and len(parts) > 1:
                    deps.add(parts[1])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names
                            if a.name.startswith(root.name + "."))
        graph[f.stem] = deps & names - {f.stem}
    return graph


def circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The modules of each circle (strongly connected set of more than one module)."""
    reach: dict[str, set[str]] = {}
    for start in graph:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        reach[start] = seen
    return {frozenset({m, *(o for o in reach[m] if m in reach[o])}) for m in graph if m in reach[m]}


def test_the_server_modules_import_no_circle() -> None:
    # app.py (the edge) and admin.py (the admin API) both need the admin token check; it lives in
    # admintoken.py so that neither imports the other.
    graph = module_imports(HOST / "luatos_fota")
    assert "app" not in graph["admin"] and "admin" not in graph["admintoken"]
    found = circles(graph) - KNOWN_CIRCLES
    assert not found, "import circles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)


def test_the_server_edge_layers() -> None:
    # The device handlers share one DeviceEdge (edge.py) and one package answer; app.py puts them
    # in front of Starlette routing and mounts the admin app. Nothing below app.py imports it,
    # the edge knows no handler, and the release-push rule needs no service or database.
    graph = module_imports(HOST / "luatos_fota")
    handlers = {"checkin", "v2", "downloads"}
    assert handlers | {"edge", "packageanswer", "releasepush"} <= graph.keys()
    for m in (*handlers, "edge", "packageanswer", "admin", "service", "releasepush"):
        assert "app" not in graph[m], f"{m} imports app"
    for m in (*handlers, "edge", "packageanswer"):
        assert "admin" not in graph[m], f"{m} imports admin"
    assert not graph["edge"] & (handlers | {"packageanswer"})
    assert not graph["packageanswer"] & handlers
    assert not graph["admin"] & handlers
    assert not graph["releasepush"] & {"service", "admin", "edge", *handlers}
    assert "admintoken" in graph["admin"] and "admintoken" in graph["edge"]  # the token check, shared


def test_the_circle_check_sees_a_lazy_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from .a import y\n")
    (pkg / "c.py").write_text("from pkg.a import z\n")
    graph = module_imports(pkg)
    assert graph == {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert circles(graph) == {frozenset({"a", "b"})}


# The server's storage layers, bottom up: errors/records (no SQL at all), db (engines and
# transactions), the repositories (repo_*.py, SQL against schema.py), the store that composes
# them; the edge, the service and the push relay sit on top and write no SQL of their own.
STORAGE_ABOVE = {"store", "app", "admin", "service", "pushrelay", "cli", "writer", "maintenance", "preflight",
                 "server", "push", "remote", "ops", "edge", "checkin", "v2", "downloads", "packageanswer",
                 "releasepush"}


def _sql_imports(path: Path) -> set[str]:
    found = {mod for mod, _line in imported_packages(path) if mod == "sqlalchemy"}
    graph = module_imports(path.parent)
    return found | ({"schema"} & graph[path.stem])


def test_repositories_records_and_db_stay_below_the_store() -> None:
    graph = module_imports(HOST / "luatos_fota")
    storage = sorted(m for m in graph if m.startswith("repo_") or m in ("db", "records", "errors"))
    assert {"db", "records", "errors", "repo_push"} <= set(storage)
    bad = [f"{m} imports {d}" for m in storage for d in sorted(graph[m] & STORAGE_ABOVE)]
    assert not bad, "\n".join(bad)
    assert not graph["records"] & {m for m in graph if m.startswith("repo_") or m == "db"}
    assert not graph["db"] & {m for m in graph if m.startswith("repo_")}


def test_no_sql_outside_the_storage_layer() -> None:
    root = HOST / "luatos_fota"
    for name in ("records", "errors", "pushrelay", "service", "admin", "app", "edge", "checkin", "v2", "downloads",
                 "packageanswer", "releasepush", "store", "ops", "cli", "maintenance", "preflight", "remote"):
        assert not _sql_imports(root / f"{name}.py"), f"{name}.py writes SQL; it belongs in a repository"


def test_the_storage_check_sees_a_repository_reaching_up(tmp_path: Path) -> None:
    pkg = tmp_path / "luatos_fota"
    pkg.mkdir()
    (pkg / "repo_x.py").write_text("def f():\n    from .service import FotaService\n")
    (pkg / "service.py").write_text("import sqlalchemy\nfrom . import schema\n")
    (pkg / "schema.py").write_text("")
    assert module_imports(pkg)["repo_x"] & STORAGE_ABOVE == {"service"}
    assert _sql_imports(pkg / "service.py") == {"sqlalchemy", "schema"}
