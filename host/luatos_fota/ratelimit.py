"""Token buckets per device id and per client IP, kept in process memory.

Rate limits protect one instance from a misbehaving fleet (a device stuck in a reboot loop
checks in every few seconds); they are deliberately per instance, unlike loop bans, which must
hold across instances and live in the database.
"""

from __future__ import annotations

import math
import time


class TokenBuckets:
    """``rate`` tokens/s up to ``burst``; ``rate <= 0`` disables limiting."""

    def __init__(self, rate: float, burst: float, max_keys: int = 200_000) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self.max_keys = max_keys
        self._b: dict[str, tuple[float, float]] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token; returns 0.0 when allowed, else seconds until a token is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._b.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._b[key] = (tokens - 1.0, now)
            if len(self._b) > self.max_keys:
                self._prune(now)
            return 0.0
        self._b[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        # Buckets that have refilled completely carry no information; drop them.
        full_after = self.burst / self.rate
        self._b = {k: v for k, v in self._b.items() if now - v[1] < full_after}


def retry_after_seconds(wait: float) -> int:
    return max(1, math.ceil(wait))
