"""The admin token: where a server gets it, and how a request shows it holds it.

Its own module because three places need it that must not need each other: the app (operator
downloads of private packages), the admin API (its auth middleware) and the CLI (``init``,
``token``). Kept here, the app and the admin API do not import each other.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_ENV = "LUATOS_FOTA_TOKEN"
TOKEN_FILE = "admin_token"


def resolve_admin_token(data_dir: Path, given: str | None) -> str:
    """``--admin-token``, else ``$LUATOS_FOTA_TOKEN``, else DATA/admin_token (created 0600 once)."""
    if given:
        return given
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env
    path = Path(data_dir) / TOKEN_FILE
    if path.is_file():
        tok = path.read_text().strip()
        if tok:
            return tok
    tok = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(tok + "\n")
    return tok


def bearer_matches(authorization: bytes | str | None, token: str) -> bool:
    """``Authorization: Bearer <token>`` carries ``token`` (compared in constant time)."""
    if not authorization:
        return False
    text = authorization.decode("latin-1") if isinstance(authorization, bytes) else authorization
    scheme, _, tok = text.strip().partition(" ")
    tok = tok.strip()
    if scheme.lower() != "bearer" or not tok:
        return False
    return hmac.compare_digest(tok.encode(), token.encode())


UNAUTHORIZED = 401  # an HTTP status: the admin API's "code" is the status, not a vendor code
UNAUTHORIZED_MSG = "missing or wrong admin token: send 'Authorization: Bearer <token>' (see DATA/admin_token)"


class RequireAdminToken:
    """ASGI middleware of the admin API: a request for one of ``routes`` must carry the admin
    token, else 401 JSON with ``WWW-Authenticate`` (nothing else runs). A route whose ``public``
    attribute is true (the OpenAPI document) needs none. A path or method no route takes passes
    through, so the router answers 404/405 as it would without the middleware."""

    def __init__(self, app: ASGIApp, token: str, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self._token = token
        self._routes = routes

    def _guarded(self, scope: Scope) -> bool:
        for route in self._routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return not getattr(route, "public", False)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._guarded(scope):
            auth = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            if not bearer_matches(auth, self._token):
                response = JSONResponse({"code": UNAUTHORIZED, "msg": UNAUTHORIZED_MSG}, UNAUTHORIZED,
                                        headers={"WWW-Authenticate": 'Bearer realm="luatos-fota"'})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
