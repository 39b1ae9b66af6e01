"""Strings across the Python/Lua seam.

The VM runs with ``encoding=None``, so a Lua string is ``bytes`` on the Python side and Python
text must be encoded before it reaches Lua. These two functions are the only conversions.
"""

from __future__ import annotations

from typing import Any


def lua_str(text: str | bytes) -> bytes:
    """Python text to a Lua string (UTF-8); bytes pass through."""
    return text if isinstance(text, bytes) else text.encode("utf-8")


def py_str(value: Any) -> str:
    """A Lua string (bytes) to Python text, tolerant of non-UTF-8 bytes; others via ``str``."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
