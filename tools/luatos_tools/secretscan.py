"""Warn when packed scripts hold what looks like a secret.

A FOTA package is a copy of the scripts, served to devices (and to anyone who obtains a
download link): a Wi-Fi password, a product key or an ``auth_secret`` written into config.lua
travels with it. The scan is a hint, not a guarantee: string literals assigned to names that
sound secret, with values that are not obvious placeholders. Values are never printed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_ASSIGN = re.compile(
    rb"""\b([A-Za-z_][A-Za-z0-9_]*?(?:password|passwd|pwd|secret|token|api_?key|apikey|product_key|"""
    rb"""private_key|psk)[A-Za-z0-9_]*)\s*=\s*(["'])([^"'\r\n]*)\2""",
    re.IGNORECASE)
_PLACEHOLDER = re.compile(rb"your|example|changeme|demo|xxx|placeholder|<|\.\.\.", re.IGNORECASE)


def secret_warnings(files: Mapping[str, bytes]) -> list[str]:
    """One warning per suspicious assignment: ``file:line: name = "..." looks like a secret``."""
    out = []
    for name in sorted(files):
        if not name.endswith(".lua"):
            continue
        data = files[name]
        for m in _ASSIGN.finditer(data):
            value = m[3]
            if len(value) < 4 or _PLACEHOLDER.search(value):
                continue
            line = data.count(b"\n", 0, m.start()) + 1
            out.append(f"{name}:{line}: {m[1].decode('latin-1')} holds a {len(value)}-character value that "
                       "looks like a secret; it ships inside the package (provision it at run time, "
                       "e.g. fskv, instead)")
    return out
