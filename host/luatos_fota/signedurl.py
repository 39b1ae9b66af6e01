"""Short-lived download links: ``/dl/<sha256>.bin?...&exp=<unix time>&sig=<hex>``.

The server hands these out in v2 check answers and push commands, so a device can fetch the
package it was decided for without a credential of its own, and nobody else can fetch it after
``exp``. ``sig`` is HMAC-SHA256 over the path and the expiry with a key derived from the admin
token (every instance sharing a deployment shares it; rotating the token revokes the links).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIG_HEX = 32  # 128 bits of the MAC are plenty for a link that lives an hour


def signing_key(admin_token: str) -> bytes:
    return hashlib.sha256(b"luatos-fota download links\n" + admin_token.encode()).digest()


def signature(key: bytes, path: str, exp: int) -> str:
    return hmac.new(key, f"{path}\n{exp}".encode(), hashlib.sha256).hexdigest()[:SIG_HEX]


def sign_query(key: bytes, path: str, ttl_s: float, now: float | None = None) -> str:
    """``exp=…&sig=…`` for ``path`` valid ``ttl_s`` seconds from now."""
    exp = int((time.time() if now is None else now) + ttl_s)
    return f"exp={exp}&sig={signature(key, path, exp)}"


def verify(key: bytes, path: str, exp: str | None, sig: str | None, max_ttl_s: float,
           now: float | None = None) -> bool:
    """A link is good when its signature matches and its expiry is in the future but no further
    ahead than the server would ever issue (a leaked key cannot mint forever-links unnoticed)."""
    if not exp or not sig or not exp.isdigit() or len(exp) > 12 or len(sig) != SIG_HEX:
        return False
    t = time.time() if now is None else now
    e = int(exp)
    if e < t or e > t + max_ttl_s + 60:
        return False
    return hmac.compare_digest(sig.lower(), signature(key, path, e))
