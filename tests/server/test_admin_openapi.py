"""The admin API's OpenAPI document is built from its route table: every admin route the app
serves is documented with its methods, and every documented path and method is served."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import requests
from starlette.routing import Match, Mount, Route

from luatos_fota.admin import openapi_doc
from luatos_fota.apidoc import AdminRoute, Op, openapi_document
from luatos_fota.app import create_app
from luatos_fota.testing import running_server

PREFIX = "/admin/api"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    a = create_app(tmp_path_factory.mktemp("d"), admin_token="t")
    yield a
    a.fota.close()
    a.state.store.close()


def admin_mount(app: Any) -> Mount:
    """The mounted admin app (the API is a sub-app at PREFIX)."""
    mounts = [r for r in app.router.routes if isinstance(r, Mount) and r.path == PREFIX]
    assert len(mounts) == 1, f"no admin app mounted at {PREFIX}"
    return mounts[0]


def served_admin_routes(app: Any) -> dict[str, set[str]]:
    """OpenAPI-spelled path -> methods (HEAD aside: Starlette adds it to every GET)."""
    out: dict[str, set[str]] = {}
    for r in admin_mount(app).routes:
        if isinstance(r, Route):
            path = PREFIX + re.sub(r"\{(\w+):\w+\}", r"{\1}", r.path)
            out.setdefault(path, set()).update(m.lower() for m in (r.methods or ()) if m != "HEAD")
    assert not any(isinstance(r, Route) and r.path.startswith(PREFIX) for r in app.router.routes), \
        "an admin route outside the admin app (it would bypass the token middleware)"
    return out


def test_every_admin_route_is_documented_with_its_methods(app: Any) -> None:
    doc = openapi_doc()
    served = served_admin_routes(app)
    assert len(served) >= 22  # the table, not an empty app
    documented = {p: set(ops) for p, ops in doc["paths"].items()}
    assert served == documented


def test_every_documented_operation_reaches_a_route(app: Any) -> None:
    for path, ops in openapi_doc()["paths"].items():
        concrete = path
        for op in ops.values():
            for prm in op.get("parameters", []):
                if prm["in"] == "path":
                    concrete = concrete.replace("{" + prm["name"] + "}", "7" if prm["schema"]["type"] == "integer"
                                                else "C8C2C68CD602")
        assert "{" not in concrete, f"{path}: a path parameter is not declared"
        for method in ops:
            scope = {"type": "http", "path": concrete, "method": method.upper(), "root_path": ""}
            mount = admin_mount(app)
            match, child = mount.matches(scope)
            assert match == Match.FULL, f"{path} is documented outside the admin app"
            scope.update(child)
            matches = [r.matches(scope)[0] for r in mount.routes]
            assert Match.FULL in matches, f"{method.upper()} {path} is documented but no route takes it"


def test_the_served_document_is_the_generated_one(tmp_path: Path) -> None:
    with running_server(tmp_path / "d", admin_token="t") as srv:
        r = requests.get(srv.base_url + PREFIX + "/openapi.json", timeout=10)
    assert r.status_code == 200
    doc = r.json()
    assert doc == openapi_doc()
    upload = doc["paths"][PREFIX + "/releases"]["post"]
    assert upload["responses"].keys() == {"201", "401"}
    assert {"file", "baseline", "skip_preflight"} <= upload["requestBody"]["content"]["multipart/form-data"][
        "schema"]["properties"].keys()
    assert doc["paths"][PREFIX + "/releases/{rid}"]["get"]["parameters"] == [
        {"name": "rid", "in": "path", "required": True, "schema": {"type": "integer"}}]


async def _nothing(request: Any) -> Any:
    return None


def test_a_route_without_documentation_is_refused() -> None:
    with pytest.raises(TypeError, match="/admin/api/x carries no documentation"):
        openapi_document([Route("/admin/api/x", _nothing)], "t")
    doc = openapi_document([AdminRoute("/a/{n:int}", _nothing, {"get": Op("A"), "put": Op("B", params=("q",))})],
                           "t")
    assert doc["paths"]["/a/{n}"]["get"]["summary"] == "A"
    assert [p["name"] for p in doc["paths"]["/a/{n}"]["put"]["parameters"]] == ["n", "q"]
