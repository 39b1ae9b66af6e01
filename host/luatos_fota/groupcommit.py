"""Group commit: many threads' small writes done in one transaction, each caller still waiting
for (and getting) its own result.

Why: every package served through a check-in must be counted before it is sent (the loop guard
is exact, across instances too), and one transaction per serve made the check-in download a
third of nginx's speed (a commit and a thread hand-off per request, one writer at a time). With
a leader/follower batch the first caller to get the turn runs everything queued so far in one
transaction; the others find their result ready when their turn comes. Nothing is acknowledged
before its transaction commits, so a crash loses no acknowledged serve and counts stay exact.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatchBusy(RuntimeError):
    """No turn to write within the caller's timeout; its item was withdrawn, not written."""


@dataclass(eq=False)
class _Slot(Generic[T, R]):
    item: T
    done: threading.Event = field(default_factory=threading.Event)
    result: R | None = None
    error: BaseException | None = None


def _own_copy(e: BaseException) -> BaseException:
    """The batch's error for one caller. Raising the one shared object in every caller's thread
    would pile all their frames onto a single traceback (and keep them alive with it)."""
    try:
        mine = copy.copy(e)
    except Exception:  # noqa: BLE001 - an exception type that cannot be copied: share it
        return e
    return mine if type(mine) is type(e) else e


class GroupCommit(Generic[T, R]):
    """``run_batch(items) -> results`` (same length, same order) runs in one transaction."""

    def __init__(self, run_batch: Callable[[list[T]], list[R]], max_batch: int = 256) -> None:
        self._run_batch = run_batch
        self.max_batch = max_batch
        self._turn = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Slot[T, R]] = []
        self.batches = 0  # transactions run (for tests and stats)
        self.items = 0

    def submit(self, item: T, timeout_s: float) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._queue_lock:
            self._queue.append(slot)
        if self._turn.acquire(timeout=timeout_s):
            try:
                # Holding the turn, no batch is running: a slot not done is still queued.
                while not slot.done.is_set():
                    self._lead()
            finally:
                self._turn.release()
        else:
            with self._queue_lock:
                if slot in self._queue:
                    self._queue.remove(slot)
                    raise BatchBusy(f"no write turn within {timeout_s:g} s")
            slot.done.wait()  # a leader has it in a running batch: it ends with that transaction
        if slot.error is not None:
            raise _own_copy(slot.error) from slot.error
        return slot.result  # type: ignore[return-value]

    def _lead(self) -> None:
        with self._queue_lock:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
        try:
            results = self._run_batch([s.item for s in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
        except BaseException as e:  # every caller of a failed transaction gets its error
            for s in batch:
                s.error = e
                s.done.set()
            return
        self.batches += 1
        self.items += len(batch)
        for s, r in zip(batch, results, strict=True):
            s.result = r
            s.done.set()
