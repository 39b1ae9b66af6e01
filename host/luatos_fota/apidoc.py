"""Admin routes that carry their own documentation, and the OpenAPI document built from them.

A route and its OpenAPI entry used to be two hand-kept lists that drifted (a route nobody
documented, a path documented with another spelling). Here an :class:`AdminRoute` is declared
once with an :class:`Op` per method, and :func:`openapi_document` walks the route list: what
is served is what is documented.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.routing import Route

JSON_BODY: dict[str, Any] = {"content": {"application/json": {"schema": {"type": "object"}}}}


def multipart_body(required: Iterable[str], fields: Iterable[str], files: Iterable[str] = ()) -> dict[str, Any]:
    """A ``multipart/form-data`` request body: text ``fields`` and file parts ``files``."""
    props: dict[str, Any] = {k: {"type": "string"} for k in fields}
    props.update({k: {"type": "string", "format": "binary"} for k in files})
    return {"content": {"multipart/form-data": {"schema": {"type": "object", "required": list(required),
                                                           "properties": props}}}}


@dataclass(frozen=True)
class Op:
    """One method of one admin route, as the OpenAPI document shows it."""

    summary: str
    body: Mapping[str, Any] | None = None  # an OpenAPI requestBody (JSON_BODY, multipart_body(...))
    params: tuple[str, ...] = ()  # optional query parameters
    status: int = 200  # the status of a success

    def operation(self, path_params: Mapping[str, str]) -> dict[str, Any]:
        op: dict[str, Any] = {"summary": self.summary, "security": [{"bearer": []}],
                              "responses": {str(self.status): {"description": "OK (JSON)"},
                                            "401": {"description": "missing or wrong token"}}}
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": t}}
                  for n, t in path_params.items()]
        params += [{"name": p, "in": "query", "required": False, "schema": {"type": "string"}}
                   for p in self.params]
        if params:
            op["parameters"] = params
        if self.body is not None:
            op["requestBody"] = dict(self.body)
        return op


class AdminRoute(Route):
    """A Starlette route whose methods are the keys of ``ops`` (each documented by its Op)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], ops: Mapping[str, Op], *,
                 public: bool = False) -> None:
        super().__init__(path, endpoint, methods=[m.upper() for m in ops])
        self.ops = {m.lower(): op for m, op in ops.items()}
        self.public = public  # served without the admin token (admintoken.RequireAdminToken)

    @property
    def openapi_path(self) -> str:
        """The path with its converters dropped: ``/releases/{rid:int}`` -> ``/releases/{rid}``."""
        return re.sub(r"\{(\w+):\w+\}", r"{\1}", self.path)

    def path_param_types(self) -> dict[str, str]:
        return {name: ("integer" if isinstance(conv, IntegerConvertor)
                       else "number" if isinstance(conv, FloatConvertor) else "string")
                for name, conv in self.param_convertors.items()}


def openapi_document(routes: Iterable[Route], title: str, version: str = "1", prefix: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (every one must be an :class:`AdminRoute`), served
    under ``prefix`` (where they are mounted)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, AdminRoute):
            raise TypeError(f"route {prefix}{route.path} carries no documentation: declare it as an AdminRoute")
        types = route.path_param_types()
        entry = paths.setdefault(prefix + route.openapi_path, {})
        for method, op in route.ops.items():
            entry[method] = op.operation(types)
    return {"openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "paths": paths}
