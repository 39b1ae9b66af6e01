"""Emulated firmware (C) modules: one binding file each, registered in :data:`MODULES`.

A binding has ``install(boot)``, which builds its Lua table through ``boot.firmware_module``
(see docs/architecture.md, "How to add a firmware module"). A module is installed only when the
model's profile lists it (``profiles.py``: the module and the functions that model's firmware
has), so an Air8101 has no ``mobile`` global, as on the device.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..profiles import LUA_MODULES

if TYPE_CHECKING:
    from ..vm import Boot

# The one table: Lua global -> binding file in this package. Install order is table order
# (a binding may read an earlier module's table at install time: pm reuses rtos.reboot).
MODULES: dict[str, str] = {
    "rtos": "rtos",
    "json": "json_mod",
    "crypto": "crypto",
    "zbuff": "zbuff",
    "fskv": "fskv",
    "io": "fs",
    "mcu": "mcu",
    "rtc": "rtc",
    "hmeta": "hmeta",
    "wdt": "wdt",
    "pm": "pm",
    "wlan": "wlan",
    "netdrv": "netdrv",
    "socket": "socket_mod",
    "http": "http_mod",
    "mqtt": "mqtt_mod",  # after socket: it rides on a socket connection
    "websocket": "websocket_mod",
    "httpsrv": "httpsrv",
    "fota": "fota_mod",
    "gpio": "gpio",
    "mobile": "mobile",
    "uart": "uart",
    "spi": "spi",
    "bit": "bit",
    "miniz": "miniz",
    "iconv": "iconv",
    "gmssl": "gmssl",
    "i2c": "i2c",
    "adc": "adc",
    "pwm": "pwm",
    "lcd": "lcd",
    "tp": "tp",
    "bluetooth": "ble",  # installs the ble module too
    "camera": "camera",
    "u8g2": "u8g2",
    "pack": "pack_mod",
    "gtfont": "gtfont",
}

# Installed whatever the profile lists: the boot environment (boot.lua) already made these
# tables and the binding completes them.
ALWAYS = frozenset({"rtos", "io"})


def install_modules(boot: Boot) -> None:
    wanted = boot.profile.modules
    for name, binding in MODULES.items():
        if name in wanted or name in ALWAYS:
            importlib.import_module(f".{binding}", __name__).install(boot)
    # A module the model's firmware has but no binding emulates yet: its table exists (as on
    # the device, so `if httpsrv then` takes the device's branch) and every call fails like a
    # nil call with an emulator note naming it, never a silent nil global.
    for name in sorted(boot.profile.api):
        if name not in MODULES and name not in LUA_MODULES:
            boot.firmware_module(name, {})
