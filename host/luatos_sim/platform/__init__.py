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
from .adc import AdcBench
from .ble import BleRadio
from .camera import CameraBench
from .errdump import ErrDumpLogs
from .fota_area import FotaArea
from .gnss import GnssBench
from .gpio import GpioBank
from .i2c import I2cBuses
from .network import Network
from .power import PowerControl
from .pwm import PwmBench
from .rtc import DEFAULT_ZONE_QUARTERS, RtcClock
from .screen import Screen, TouchPanel
from .sms import SmsNetwork
from .spi import SpiBuses
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
    spi: SpiBuses  # SPI buses and the chips on them
    i2c: I2cBuses  # I2C buses and the parts on them
    adc: AdcBench  # voltages on the ADC channels
    pwm: PwmBench  # what the PWM channels drive
    lcd: Screen  # the LCD panel
    oled: Screen  # the u8g2 (monochrome) display
    touch: TouchPanel  # the touch controller
    ble: BleRadio  # BLE peers around the device
    camera: CameraBench  # what the camera sees
    upgrade_checks: UpgradeChecks  # emulator diagnostics about FOTA code (not hardware)
    rtc: RtcClock  # the wall clock (os.time, rtc.set)
    errdump: ErrDumpLogs  # errDump's system and user logs (flash)
    gnss: GnssBench  # GNSS receivers on UARTs
    sms: SmsNetwork  # the cellular network's SMS side

    @classmethod
    def build(cls, device: Device) -> Platform:
        """The one place a device's parts are created."""
        uart = UartBus(device)
        return cls(
            fs=DeviceFS(device.fs_root, device.image_dir),
            fskv=FskvStore(device.state_dir / "fskv.json"),
            power=PowerControl(device),
            gpio=GpioBank(device),
            fota=FotaArea(device),
            net=Network(device),
            uart=uart,
            spi=SpiBuses(device),
            i2c=I2cBuses(device),
            adc=AdcBench(device),
            pwm=PwmBench(device),
            lcd=Screen(device),
            oled=Screen(device),
            touch=TouchPanel(device),
            ble=BleRadio(device),
            camera=CameraBench(device),
            upgrade_checks=UpgradeChecks(device),
            rtc=RtcClock(device.epoch_at_power_on),
            errdump=ErrDumpLogs(device.state_dir / "errdump"),
            gnss=GnssBench(device, uart),
            sms=SmsNetwork(device),
        ).wired()

    def begin_boot(self, modules: frozenset[str]) -> None:
        """What a reboot resets on the parts of the model's modules (``modules``: the Lua
        globals its firmware has), whether or not the new boot's script ever uses them: a
        binding is built only when the script first touches its module (modules/__init__.py),
        and the bench a test set up before the boot must already see the reset."""
        self.rtc.zone_quarters = DEFAULT_ZONE_QUARTERS  # the zone is RAM state, not the RTC's
        if "spi" in modules:
            for bus in self.spi.all():
                bus.reset()  # every chip select released
        if "pwm" in modules:
            self.pwm.reset()  # every output stops
        if "lcd" in modules:
            self.lcd.power_off()  # the controller forgets its setup
        if "u8g2" in modules:
            self.oled.power_off()
        if "tp" in modules:
            self.touch.listener = None
        if "bluetooth" in modules:
            self.ble.attach_host(None)  # links drop
        if "errDump" in modules:
            self.errdump.begin_boot()  # recording is off until errDump.config(true, ...)

    def wired(self) -> Platform:
        """Connections between parts: a GPIO the script drives may be an SPI chip select."""
        self.gpio.watchers.append(self.spi.gpio_changed)
        return self
