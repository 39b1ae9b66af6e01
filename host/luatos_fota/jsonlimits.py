"""JSON from the network with a nesting limit.

Python's ``json`` parser recurses per nesting level: ``[[[[...`` a few thousand deep raises
RecursionError (once a traceback and a dropped push socket). The depth is measured first, in
one pass over the text, and a document deeper than the limit is refused with a ValueError
naming the limit, which callers turn into their usual "bad JSON" answer.
"""

from __future__ import annotations

import json
from typing import Any

DEFAULT_MAX_DEPTH = 32


def json_depth(text: str) -> int:
    """Deepest nesting of arrays/objects in ``text`` (strings skipped; not a validator)."""
    if text.count("[") + text.count("{") <= 1:
        return 1 if ("[" in text or "{" in text) else 0
    depth = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def loads_limited(data: str | bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """``json.loads`` that refuses documents nested deeper than ``max_depth`` (ValueError)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    depth = json_depth(text)
    if depth > max_depth:
        raise ValueError(f"JSON nested {depth} levels deep (at most {max_depth})")
    return json.loads(text)
