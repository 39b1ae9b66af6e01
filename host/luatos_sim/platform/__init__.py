"""The device platform: what a module has whether or not a script runs on it.

LuatOS splits each library into a Lua binding (``luat_lib_*.c``) over a platform port; the
emulator does the same. The bindings in ``modules/`` are the Lua-facing functions, one boot's
worth; the parts here are the device-level state and behaviour they sit on, which outlive a
boot and which tests drive from the outside (``dev.power.wake()``, ``dev.gpio.press(5)``,
``dev.net.link_down()``, ``dev.fota.cut_power_at``, ``dev.uart.console``).

:class:`Platform` is built once per Device, in :meth:`Platform.build`; a binding reaches it as
``boot.platform`` (docs/architecture.md, "The seam").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..fs import DeviceFS
from ..fskv_store import FskvStore
from ..upgrade_checks import UpgradeChecks
from .fota_area import FotaArea
from .gpio import GpioBank
from .network import Network
from .power import PowerControl
from .spi import SpiBus
from .uart import UartBus

if TYPE_CHECKING:
    from ..device import Device


@dataclass
class Platform:
    """The parts of one device. Add a peripheral's part here and in :meth:`build`."""

    fs: DeviceFS  # the filesystem (flash)
    fskv: FskvStore  # the fskv key-value store (flash)
    power: PowerControl  # deep sleep, dtimers, wake sources
    gpio: GpioBank  # the world outside the pins
    fota: FotaArea  # the FOTA partition
    net: Network  # links, faults, the address map
    uart: UartBus  # serial ports and the host's end of the cable
    spi: SpiBus  # SPI buses
    upgrade_checks: UpgradeChecks  # emulator diagnostics about FOTA code (not hardware)

    @classmethod
    def build(cls, device: Device) -> Platform:
        """The one place a device's parts are created."""
        return cls(
            fs=DeviceFS(device.fs_root, device.image_dir),
            fskv=FskvStore(device.state_dir / "fskv.json"),
            power=PowerControl(device),
            gpio=GpioBank(device),
            fota=FotaArea(device),
            net=Network(device),
            uart=UartBus(device),
            spi=SpiBus(),
            upgrade_checks=UpgradeChecks(device),
        )
