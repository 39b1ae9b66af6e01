"""PWM outputs as a test sees them: what each channel drives, and every change in order.

``dev.pwm.state(ch)`` is the channel's current output (None when stopped); ``dev.pwm.history``
lists (ms, channel, freq_hz, duty, precision, pulses) with freq 0 when the output stops; the
same changes are in ``dev.trace`` as ``pwm`` events. ``dev.pwm.input(ch, freq, duty)`` puts a
signal on a channel for ``pwm.capture``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..device import Device


@dataclass(frozen=True)
class PwmOutput:
    freq_hz: int
    pulse: int
    precision: int
    pulses: int  # 0: continuous

    @property
    def duty(self) -> float:
        """Duty cycle as a fraction (0.0-1.0)."""
        return self.pulse / self.precision if self.precision else 0.0


@dataclass
class PwmBench:
    device: Device
    channels: frozenset[int] = frozenset(range(0, 6))
    precisions: frozenset[int] = frozenset({100, 256, 1000})
    max_freq_hz: int = 26_000_000
    outputs: dict[int, PwmOutput] = field(default_factory=dict)
    history: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    inputs: dict[int, tuple[int, float]] = field(default_factory=dict)

    def state(self, channel: int) -> PwmOutput | None:
        return self.outputs.get(channel)

    def input(self, channel: int, freq_hz: int, duty: float) -> None:
        """A signal on ``channel`` for ``pwm.capture`` (duty as a fraction)."""
        self.inputs[channel] = (freq_hz, duty)

    def drive(self, channel: int, out: PwmOutput | None) -> None:
        ms = self.device.current_ms()
        if out is None:
            if self.outputs.pop(channel, None) is None:
                return
            self.history.append((ms, channel, 0, 0, 0, 0))
            self.device.trace_event("pwm", channel=channel, freq=0, duty=0.0)
            return
        self.outputs[channel] = out
        self.history.append((ms, channel, out.freq_hz, out.pulse, out.precision, out.pulses))
        self.device.trace_event("pwm", channel=channel, freq=out.freq_hz, duty=out.duty,
                                pulses=out.pulses)

    def reset(self) -> None:
        """A reboot stops every output."""
        for ch in list(self.outputs):
            self.drive(ch, None)
