"""The SPI part: which buses are open, and what was written to each (``dev.spi``).

No peripheral hangs off a bus in the emulator: an open bus accepts writes and reads back the
idle line (docs/behaviour.md, "spi").
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SpiBus:
    """Buses open in the running boot (closed with each boot) and everything written, per bus."""

    open: dict[int, dict[str, int]] = field(default_factory=dict)  # id -> settings
    tx: dict[int, bytearray] = field(default_factory=dict)
