"""Emulated firmware (C) modules: one binding file each, registered in :data:`MODULES`.

A binding has ``install(boot)``, which builds its Lua table through ``boot.firmware_module``
(see docs/architecture.md, "One module interface"). A module is installed only when the
model's profile lists it (``profiles.py``: the module and the functions that model's firmware
has), so an Air8101 has no ``mobile`` global, as on the device.

Most bindings are built on first use: every boot (a PSM device boots 180 times a month) would
otherwise build ~45 modules' worth of Python closures and Lua wrappers for a script that calls
five of them, and Python's cyclic collector then spends longer tearing those boots down than
they took to run. The module's global is its table from the start; the binding fills that
same table the first time the script touches it (``RT.lazy_module`` in lua/boot.lua).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..profiles import LUA_MODULES

if TYPE_CHECKING:
    from ..vm import Boot

# The one table: Lua global -> binding file in this package. The bindings built at boot
# (AT_BOOT) go in table order (a binding may read an earlier one's table at install time: pm
# reuses rtos.reboot); the others when the script first touches them.
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
    "errDump": "errdump",
    "iotauth": "iotauth",
    "xxtea": "xxtea",
    "bit64": "bit64",
    "rsa": "rsa",
    "fastlz": "fastlz",
    "libgnss": "libgnss",
    "sms": "sms",
    "protobuf": "protobuf",
}

# Installed whatever the profile lists: the boot environment (boot.lua) already made these
# tables and the binding completes them.
ALWAYS = frozenset({"rtos", "io"})

# Built as the boot starts, because their install does something every boot needs whether or
# not the script calls them (the others are built on first use). Bench state a reboot resets
# belongs in Platform.begin_boot, not here.
AT_BOOT = ALWAYS | {
    "pm",  # consumes the wake cause and the dtimers (PowerControl.new_boot)
    "gpio",  # routes the bench's pins to this boot and clears the outputs
    "crypto",  # adds string.toBase64 and friends
    "uart",  # attaches the bench's serial ports to this boot
    # The network stack: link listeners from power-on, a Cat.1 bearer that comes up by itself,
    # socket adds netdrv.ping; fota's upgrade checks watch wlan from the start.
    "wlan", "netdrv", "socket", "http", "fota",
    "bit",  # written in Lua (no Python objects to save) and makes its own table
    "sms",  # the modem takes incoming SMS (SMS_INC) whether or not the script touched sms
}

# A binding that installs more globals than its own.
GLOBALS: dict[str, tuple[str, ...]] = {"bluetooth": ("bluetooth", "ble")}
_BOUND = frozenset(MODULES) | {g for names in GLOBALS.values() for g in names}


def install_modules(boot: Boot) -> None:
    wanted = boot.profile.modules
    for name in MODULES:
        if name in wanted or name in ALWAYS:
            if name in AT_BOOT:
                install_binding(boot, name)
            else:
                for global_name in GLOBALS.get(name, (name,)):
                    boot.lazy_module(global_name, name)
    # A module the model's firmware has but no binding emulates yet: its table exists (as on
    # the device, so `if httpsrv then` takes the device's branch) and every call fails like a
    # nil call with an emulator note naming it, never a silent nil global.
    for name in sorted(boot.profile.api):
        if name not in _BOUND and name not in LUA_MODULES:
            boot.firmware_module(name, {})


def install_binding(boot: Boot, name: str) -> None:
    """Build the binding registered for the global ``name`` into this boot."""
    importlib.import_module(f".{MODULES[name]}", __name__).install(boot)
