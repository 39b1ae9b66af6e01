"""fskv's flash: key/value data that survives reboots, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TOTAL_BYTES = 64 * 1024
MAX_VALUE_BYTES = 4095


class FskvStore:
    """Values are kept as tagged JSON so bytes, numbers, booleans and tables round-trip."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        if path.exists():
            try:
                self.data = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError):
                self.data = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self._save()

    def delete(self, key: str) -> bool:
        if key in self.data:
            del self.data[key]
            self._save()
            return True
        return False

    def clear(self) -> None:
        self.data = {}
        self._save()

    def used_bytes(self) -> int:
        return sum(len(k) + len(json.dumps(v)) + 8 for k, v in self.data.items())

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, ensure_ascii=False), "utf-8")
        os.replace(tmp, self.path)
