"""The store's refusals, shared by the database object, the repositories and their callers
(the CLI maps them to exit codes, the HTTP edge to statuses)."""

from __future__ import annotations


class NotFound(LookupError):
    """A product, release or device that does not exist (CLI exit code 3, HTTP 404)."""


class StoreBusy(RuntimeError):
    """A write could not start in time (another writer held the database); the device gets 503."""


class RateLimited(RuntimeError):
    """A shared token bucket (see repo_rates.SharedRate) had no token; nothing was written."""

    def __init__(self, key: str, wait_s: float) -> None:
        super().__init__(f"rate limit {key} reached; a token is back in {wait_s:.1f} s")
        self.key = key
        self.wait_s = wait_s


class Conflict(ValueError):
    """A write that contradicts existing state (duplicate product or release; HTTP 409)."""
