"""LuatOS emulator: run a LuatOS project on a laptop in virtual time.

>>> from luatos_sim import Device
>>> dev = Device("device/")                      # doctest: +SKIP
>>> dev.run_until("I/user.main", within="10s")   # doctest: +SKIP
"""

from .device import BootInfo, Device, DeviceOptions, RebootLoopError, TraceEvent, UntilTimeout
from .duration import format_ms, parse_duration
from .profiles import PROFILES, ModelProfile, get_profile
from .scripts import ScriptError

__all__ = [
    "BootInfo", "Device", "DeviceOptions", "ModelProfile", "PROFILES", "RebootLoopError",
    "ScriptError", "TraceEvent", "UntilTimeout", "format_ms", "get_profile", "parse_duration",
]
