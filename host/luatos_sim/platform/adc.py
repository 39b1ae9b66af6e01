"""ADC inputs: the voltages a test puts on the channels, with noise, and the chip's own
channels (CPU temperature, VBAT).

    dev.adc.set(2, 1650)                  # 1.65 V on channel 2
    dev.adc.set(3, lambda ms: 1000 + ms // 1000, noise_mv=5)
    dev.adc.vbat_mv = 3300; dev.adc.cpu_temp_c = 48.5

A channel nothing drives reads 0 mV plus the noise (an emulator choice: a floating input's
reading is board-specific). Readings are clamped to the range's full scale and quantised to
the converter's resolution, as the firmware's conversion would. The noise generator is seeded
per device, so a run is reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..device import Device

CH_CPU = -1
CH_VBAT = -2
# Full scale per adc.setRange value (mV); ranges not listed use the default full scale.
RANGE_FULL_SCALE_MV = {0: 1200, 1: 1400, 2: 1600, 3: 1900, 4: 2400, 5: 2600, 6: 2700,
                       7: 3200, 8: 3800, 9: 4000, 10: 4800, 11: 6400, 12: 9600, 13: 19200}

Source = float | Callable[[int], float]


@dataclass
class AdcBench:
    device: Device
    channels: frozenset[int] = frozenset()  # physical channels; empty: the model's own set
    full_scale_mv: int = 3300  # without adc.setRange (UNCONFIRMED for the Air8101)
    bits: int = 12
    vbat_mv: float = 3800.0
    cpu_temp_c: float = 35.0
    seed: int = 8101
    sources: dict[int, tuple[Source, float]] = field(default_factory=dict)
    reads: list[tuple[int, int, int]] = field(default_factory=list)  # (ms, channel, mV)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        if not self.channels:
            self.channels = self.device.profile.adc_channels

    def set(self, channel: int, mv: Source, noise_mv: float = 0.0) -> None:
        """Drive ``channel`` with ``mv`` (a number, or a function of virtual ms), plus Gaussian
        noise of standard deviation ``noise_mv`` on every reading."""
        if channel not in self.channels:
            raise ValueError(f"{self.device.profile.model} has no ADC channel {channel} "
                             f"(it has {sorted(self.channels)}, adc.CH_CPU and adc.CH_VBAT)")
        self.sources[channel] = (mv, noise_mv)

    def release(self, channel: int) -> None:
        self.sources.pop(channel, None)

    def valid(self, channel: int) -> bool:
        return channel in self.channels or channel in (CH_CPU, CH_VBAT)

    def sample(self, channel: int, range_value: int | None) -> tuple[int, int]:
        """(raw code, converted value): mV, or thousandths of a degree for CH_CPU."""
        now = self.device.current_ms()
        if channel == CH_CPU:
            value = round(self.cpu_temp_c * 1000)
            return value, value
        if channel == CH_VBAT:
            vbat = round(self.vbat_mv)
            return vbat, vbat
        source, noise = self.sources.get(channel, (0.0, 0.0))
        level = float(source(now) if callable(source) else source)
        if noise:
            level += self._rng.gauss(0.0, noise)
        full = RANGE_FULL_SCALE_MV.get(range_value, self.full_scale_mv) \
            if range_value is not None else self.full_scale_mv
        top = (1 << self.bits) - 1
        raw = max(0, min(top, round(level * top / full)))
        value = round(raw * full / top)
        self.reads.append((now, channel, value))
        return raw, value
