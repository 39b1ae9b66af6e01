"""Device-level state of the optional layers that must exist before the first boot.

A staged FOTA package is applied by a ``before_boot`` hook, so the hook must be in place when
a Device is created over a state_dir that already holds one (e.g. after a power cut). The
power and GPIO layers give tests their handles (``dev.power``, ``dev.gpio``) the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .device import Device


def attach_layers(device: Device) -> None:
    from .fota_area import attach as attach_fota
    from .modules.gpio import attach as attach_gpio
    from .modules.pm import attach as attach_power

    attach_fota(device)
    attach_power(device)
    bank = attach_gpio(device)
    from .peripherals import attach as attach_peripherals
    attach_peripherals(device)
    bank.watchers.append(device.extensions["spi"].gpio_changed)
