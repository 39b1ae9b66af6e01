"""The admin token: where a server gets it, and how a request shows it holds it.

Its own module because three places need it that must not need each other: the app (operator
downloads of private packages), the admin API (every route) and the CLI (``init``, ``token``).
Kept here, the app and the admin API do not import each other.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from starlette.requests import Request

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


def check_token(request: Request) -> bool:
    """The request carries this server's admin token."""
    return bearer_matches(request.headers.get("authorization"), request.app.state.admin_token)
