"""Emulated firmware (C) modules, one file each.

Each module file has ``install(boot)``, which builds its Lua table through
``boot.firmware_module``. A module is installed only when the model profile lists it, so an
Air8101 has no ``mobile`` global, as on the device.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..vm import Boot

# Firmware module name -> Python module (relative) that installs it. Order matters where one
# module reads another's table at install time.
REGISTRY: dict[str, str] = {
    "rtos": "rtos",
    "json": "json_mod",
    "crypto": "crypto",
    "zbuff": "zbuff",
    "fskv": "fskv",
    "io": "fs",
    "mcu": "mcu",
    "hmeta": "hmeta",
    "wdt": "wdt",
    "pm": "pm",
}

# Modules added by the network/FOTA layer register themselves here (name -> python module).
OPTIONAL: dict[str, str] = {
    "wlan": "wlan",
    "netdrv": "netdrv",
    "socket": "socket_mod",
    "http": "http_mod",
    "fota": "fota_mod",
    "gpio": "gpio",
    "mobile": "mobile",
    "uart": "uart",
    "spi": "spi",
    "i2c": "i2c",
    "adc": "adc",
    "pwm": "pwm",
    "lcd": "lcd",
    "tp": "tp",
}


def install_modules(boot: Boot) -> None:
    wanted = boot.profile.modules
    for name, pymod in {**REGISTRY, **OPTIONAL}.items():
        if name not in wanted and name not in ("rtos", "io"):
            continue
        try:
            mod = importlib.import_module(f".{pymod}", __name__)
        except ModuleNotFoundError as e:
            if e.name and e.name.endswith(pymod):
                continue  # not emulated yet: the global stays nil, like a missing C module
            raise
        mod.install(boot)
