"""The admin API is a mounted app whose token check is one middleware: every route but the
OpenAPI document needs the token, the refusal is the same 401 everywhere, a path or method no
route takes is still 404/405, and store errors are JSON answers from the app's handlers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from luatos_fota.admin import admin_routes
from luatos_fota.testing import RunningServer, running_server

API = "/admin/api"
TOKEN = "s3cret"
REFUSAL = {"code": 401, "msg": "missing or wrong admin token: send 'Authorization: Bearer <token>' "
                               "(see DATA/admin_token)"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("d"), admin_token=TOKEN) as s:
        yield s


def call(srv: RunningServer, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
    headers = kw.pop("headers", {}) | ({"Authorization": f"Bearer {token}"} if token else {})
    return requests.request(method, srv.base_url + API + path, headers=headers, timeout=10, **kw)


def concrete(path: str) -> str:
    return path.replace("{pid:int}", "1").replace("{rid:int}", "1").replace("{key}", "C8C2C68CD602")


@pytest.mark.parametrize("token", [None, "nope", TOKEN + "x"])
def test_every_route_but_the_document_refuses_without_the_token(srv: RunningServer, token: str | None) -> None:
    checked = 0
    for route in admin_routes():
        for method in route.ops:
            r = call(srv, method.upper(), concrete(route.path), token)
            if route.path == "/openapi.json":
                assert r.status_code == 200 and r.json()["openapi"].startswith("3.")
                continue
            assert r.status_code == 401, f"{method.upper()} {route.path}: {r.status_code}"
            assert r.json() == REFUSAL
            assert r.headers["www-authenticate"] == 'Bearer realm="luatos-fota"'
            assert r.headers["content-security-policy"]  # the app's security headers still apply
            checked += 1
    assert checked >= 25


def test_the_refusal_runs_nothing(srv: RunningServer) -> None:
    r = call(srv, "POST", "/products", "wrong", json={"project_key": "K", "firmware_name": "F_LuatOS-SoC_X"})
    assert r.status_code == 401
    assert call(srv, "GET", "/products", TOKEN).json() == {"products": []}


def test_unknown_paths_and_methods_answer_as_the_router_does(srv: RunningServer) -> None:
    assert call(srv, "GET", "/nothing-here").status_code == 404
    assert call(srv, "DELETE", "/products").status_code == 405
    assert call(srv, "DELETE", "/products", TOKEN).status_code == 405


def test_store_errors_are_json_answers(srv: RunningServer) -> None:
    r = call(srv, "GET", "/releases/987", TOKEN)
    assert r.status_code == 404 and r.json()["code"] == 404 and "987" in r.json()["msg"]
    r = call(srv, "POST", "/products", TOKEN, data=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json() == {"code": 400, "msg": "request body must be a JSON object"}
    r = call(srv, "GET", "/devices?limit=many", TOKEN)
    assert r.status_code == 400 and "limit" in r.json()["msg"]
    body = {"project_key": "K", "firmware_name": "F_LuatOS-SoC_X"}
    assert call(srv, "POST", "/products", TOKEN, json=body).status_code == 201
    r = call(srv, "POST", "/products", TOKEN, json=body)
    assert r.status_code == 409 and r.json()["code"] == 409


def test_a_good_token_reaches_every_read_route(tmp_path: Path) -> None:
    with running_server(tmp_path / "d", admin_token=TOKEN) as s:
        for path in ("/products", "/releases", "/artifacts", "/devices", "/audit", "/stats"):
            assert call(s, "GET", path, TOKEN).status_code == 200, path
