"""The device's one clock: virtual time and the host events scheduled on it.

Virtual time is a millisecond counter that only moves forward. Between boots the timeline
holds it; while a boot runs, the boot's event loop (lua/rt.lua) advances it for speed, and the
timeline reads and writes it there (:meth:`Timeline.follow`). Either way ``timeline.now`` is
the one answer to "what time is it on the device". Other threads (real I/O) must not call into
the VM, so they read the time as of the last step (:meth:`Timeline.sync`).

Host events are what the outside world does to the device at a virtual moment: a button
press, a link drop, a wake-up, the next boot. Scheduling returns a :class:`ScheduledEvent`
handle; :meth:`ScheduledEvent.cancel` is the only way to take one back.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(eq=False)
class ScheduledEvent:
    """A handle on one scheduled host event."""

    due: int
    action: Callable[[], None]
    label: str  # for humans (traces, debugging); never matched
    cancelled: bool = False
    fired: bool = False

    def cancel(self) -> None:
        """The event will not run (a no-op once it ran)."""
        self.cancelled = True

    @property
    def pending(self) -> bool:
        return not (self.cancelled or self.fired)

    def fire(self) -> None:
        """Run the action unless cancelled or already run."""
        if self.pending:
            self.fired = True
            self.action()


@dataclass
class Timeline:
    """Virtual time plus a queue of host events ordered by due time, then by scheduling order."""

    _now: int = 0
    _heap: list[tuple[int, int, ScheduledEvent]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _get: Callable[[], int] | None = None  # the running boot's clock, while one runs
    _set: Callable[[int], None] | None = None
    _owner: int | None = None  # the thread that runs the boot

    # -- time -------------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        get = self._get
        if get is not None and threading.get_ident() == self._owner:
            return get()
        return self._now

    @now.setter
    def now(self, value: int) -> None:
        if self._set is not None:
            self._set(int(value))
        self._now = int(value)

    def advance_to(self, ms: int) -> None:
        """Move time forward to ``ms`` (never backward)."""
        if ms > self.now:
            self.now = ms

    def follow(self, get: Callable[[], int], set_: Callable[[int], None]) -> None:
        """A boot starts: its event loop keeps the time until :meth:`unfollow`."""
        set_(self._now)
        self._get, self._set = get, set_
        self._owner = threading.get_ident()

    def sync(self) -> None:
        """After a boot's step: what other threads read as the time."""
        if self._get is not None:
            self._now = max(self._now, self._get())

    def unfollow(self) -> None:
        """The boot ended: the timeline keeps the time from where the boot left it."""
        self.sync()
        self._get = self._set = self._owner = None

    # -- events -----------------------------------------------------------------------------------

    def at(self, due: int, action: Callable[[], None], label: str) -> ScheduledEvent:
        """Schedule ``action`` at virtual ms ``due``."""
        event = ScheduledEvent(int(due), action, label)
        self.push(event)
        return event

    def after(self, delay_ms: int, action: Callable[[], None], label: str) -> ScheduledEvent:
        return self.at(self.now + int(delay_ms), action, label)

    def push(self, event: ScheduledEvent) -> None:
        """(Re)queue an existing handle, e.g. one a boot did not reach before it ended."""
        heapq.heappush(self._heap, (event.due, next(self._seq), event))

    def next_due(self) -> int | None:
        """Due time of the earliest pending event."""
        self._drop_dead()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, until: int) -> ScheduledEvent | None:
        """The earliest pending event due at or before ``until``, removed from the queue."""
        self._drop_dead()
        if self._heap and self._heap[0][0] <= until:
            return heapq.heappop(self._heap)[2]
        return None

    def _drop_dead(self) -> None:
        while self._heap and not self._heap[0][2].pending:
            heapq.heappop(self._heap)
