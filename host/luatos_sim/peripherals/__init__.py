"""The device's peripherals as the outside world sees them: buses, sensors, a screen, a radio.

This is the platform side of the peripheral modules: state that belongs to the board (what is
wired to I2C bus 0, what the screen shows, which BLE phone is nearby) and outlives a boot.
The Lua-facing functions live in ``luatos_sim.modules.<name>`` and reach this state only
through the handle :func:`attach` puts on the Device (``dev.i2c(0)``, ``dev.lcd``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..device import Device


def attach(device: Device) -> None:
    from .adc import AdcBench
    from .ble import BleRadio
    from .camera import CameraBench
    from .i2c import I2cBuses
    from .pwm import PwmBench
    from .screen import Screen, TouchPanel
    from .spi import SpiBuses

    device.i2c = device.extensions["i2c"] = I2cBuses(device)  # type: ignore[attr-defined]
    device.spi = device.extensions["spi"] = SpiBuses(device)  # type: ignore[attr-defined]
    device.adc = device.extensions["adc"] = AdcBench(device)  # type: ignore[attr-defined]
    device.pwm = device.extensions["pwm"] = PwmBench(device)  # type: ignore[attr-defined]
    device.lcd = device.extensions["lcd"] = Screen(device)  # type: ignore[attr-defined]
    device.oled = device.extensions["oled"] = Screen(device)  # type: ignore[attr-defined]
    device.touch = device.extensions["touch"] = TouchPanel(device)  # type: ignore[attr-defined]
    device.ble = device.extensions["ble"] = BleRadio(device)  # type: ignore[attr-defined]
    device.camera = device.extensions["camera"] = CameraBench(device)  # type: ignore[attr-defined]
