"""Device credentials: what proves that a check-in, a push login or a download comes from the
device it names.

Per product (``products.auth_mode``), as hawkBit's target tokens and Mender's device keys do:

* ``none``: any client may speak for any device id (the vendor protocol has no credential).
* ``token``: each device has its own secret, imported by the operator (CSV or admin API); the
  database keeps only its SHA-256.
* ``hmac``: the device derives its token as hex(HMAC-SHA256(product secret, device id)), with the
  device id as the server normalises it (12-hex-digit MACs upper-case without separators), so
  nothing is provisioned per device; LuatOS computes it with ``crypto.hmac_sha256``.

The device sends ``Authorization: Bearer <token>`` (libfota2 ``opts.headers``) and
``"token":"<token>"`` in its push login. Hex tokens are compared case-insensitively, because
``crypto.hmac_sha256`` answers upper-case hex.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

AUTH_MODES = ("none", "token", "hmac")
MAX_TOKEN_LEN = 200


def hmac_token(secret: str, device_key: str) -> str:
    """The token a device of an ``hmac`` product sends (lower-case hex)."""
    return hmac.new(secret.encode(), device_key.encode(), hashlib.sha256).hexdigest()


def token_hash(token: str) -> str:
    """What the database keeps of a per-device token (hex tokens case-folded first)."""
    t = token.strip()
    if all(c in "0123456789abcdefABCDEF" for c in t):
        t = t.lower()
    return hashlib.sha256(t.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_hex(32)


def credential_from_header(value: bytes | str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None when absent or malformed)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    scheme, _, tok = text.strip().partition(" ")
    tok = tok.strip()
    if scheme.lower() != "bearer" or not tok or len(tok) > MAX_TOKEN_LEN:
        return None
    return tok


def same_secret(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two optional credentials (hex compared case-insensitively)."""
    return hmac.compare_digest(_fold(a or ""), _fold(b or ""))


def _fold(t: str) -> bytes:
    t = t.strip()
    if all(c in "0123456789abcdefABCDEF" for c in t):
        t = t.lower()
    return t.encode("utf-8", "replace")


def check(mode: str, secret: str, device_key: str, credential: str | None,
          stored_hash: str | None = None) -> bool:
    """Whether ``credential`` proves ``device_key`` under a product's ``mode``.

    ``stored_hash`` is the device's token hash (``token`` mode; None: no token imported)."""
    if mode == "none":
        return True
    if not credential:
        return False
    if mode == "hmac":
        return bool(secret) and same_secret(credential, hmac_token(secret, device_key))
    if mode == "token":
        return stored_hash is not None and hmac.compare_digest(token_hash(credential), stored_hash)
    return False
