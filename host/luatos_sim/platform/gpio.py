"""The GPIO bench: the world outside the pins (a button, a sensor), driven by tests.

``dev.gpio.press(pin)`` or ``dev.gpio.set_input(pin, level, at="2s")`` changes an input's
level at a virtual time; the running boot's pin configuration (the ``gpio`` binding's
:class:`BootPins`) turns that into interrupts. Outputs the script drives are recorded so a test
can read them (``dev.gpio.level(pin)``, ``dev.gpio.history``). Between boots a level change can
wake a device sleeping with a wake pad (the power part decides).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..duration import Duration, parse_duration

if TYPE_CHECKING:
    from ..device import Device


class BootPins(Protocol):
    """What the bench needs from a boot's pin configuration."""

    def read(self, pin: int) -> int: ...

    def edge(self, pin: int, old: int | None, new: int) -> None: ...


@dataclass
class GpioBank:
    """The pins' outside world, per device (``dev.gpio``)."""

    device: Device
    inputs: dict[int, int] = field(default_factory=dict)  # levels driven from outside
    outputs: dict[int, int] = field(default_factory=dict)  # levels the script drives
    history: deque[tuple[int, int, int, str]] = field(
        default_factory=lambda: deque(maxlen=10_000))  # (ms, pin, level, "in"|"out")
    fired: list[tuple[int, int, int]] = field(default_factory=list)  # (ms, pin, level)
    pins: BootPins | None = None  # the running boot's pin configuration (the gpio binding's)

    # -- test API ---------------------------------------------------------------------------------

    def set_input(self, pin: int, level: int, at: Duration = 0) -> None:
        """Drive an input pin to ``level`` at ``at`` (virtual time from now)."""
        self._drive_at(self.device.current_ms() + parse_duration(at), pin, level)

    def press(self, pin: int, hold: Duration = "100ms", at: Duration = 0,
              active: int = 0) -> None:
        """A button on ``pin``: ``active`` level (0: to ground, with a pull-up) for ``hold``."""
        start = self.device.current_ms() + parse_duration(at)
        self._drive_at(start, pin, active)
        self._drive_at(start + parse_duration(hold), pin, 0 if active else 1)

    def bounce(self, pin: int, levels: list[int], step: Duration = "2ms",
               at: Duration = 0) -> None:
        """A bouncing contact: ``levels`` one after another, ``step`` apart."""
        start = self.device.current_ms() + parse_duration(at)
        dt = parse_duration(step)
        for i, lv in enumerate(levels):
            self._drive_at(start + i * dt, pin, lv)

    def level(self, pin: int) -> int | None:
        """The pin's current level: what the script drives, else what the outside drives."""
        if pin in self.outputs:
            return self.outputs[pin]
        return self.inputs.get(pin)

    # -- internals --------------------------------------------------------------------------------

    def _drive_at(self, due_ms: int, pin: int, level: int) -> None:
        self.device.schedule_at(due_ms, lambda: self._drive(pin, 1 if level else 0),
                                f"gpio {pin} -> {level}")

    def _drive(self, pin: int, level: int) -> None:
        pins = self.pins
        old = pins.read(pin) if pins is not None else self.inputs.get(pin)
        self.inputs[pin] = level
        self.history.append((self.device.current_ms(), pin, level, "in"))
        if pins is not None and old != level:
            pins.edge(pin, old, level)
        if pins is None and old != level:
            self.device.power.pin_changed(pin, level)
