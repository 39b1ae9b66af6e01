"""gtfont: the external Genitop font chip (AirFONTS_1000) on an SPI device.

``gtfont.init(spi_device)`` sends a wake byte and probes the chip. The bench has no font-chip
part, so nothing answers and init reports false, as a board without the chip does; the vendor's
LCD demos then log the failure and keep drawing with the built-in fonts. The drawing calls that
need the chip (``lcd.drawGtfont*``) are not emulated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..vm import Boot


def install(boot: Boot) -> None:
    noted: list[bool] = []

    def init(device: Any = None, *_: Any) -> bool:
        if not noted:
            noted.append(True)
            boot.note("gtfont.init: no font chip on the bench (the emulator has no Genitop "
                      "font-chip part); init fails as on a board without one")
        return False

    boot.firmware_module("gtfont", {"init": init})
