"""mcu: identity and ticks on the virtual clock."""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..vm import Boot


# mcu.tick64: ticks per microsecond of the 64-bit counter (UNCONFIRMED per chip; 1 here).
TICKS_PER_US = 1


def muid_of(uid: bytes) -> bytes:
    """The module's MUID as 32 uppercase hex characters (what vendor libraries such as airlbs
    sign requests with), derived from the profile's UID so each emulated device keeps its own.
    The exact derivation on the device is UNCONFIRMED (docs/defaults.md)."""
    return hashlib.sha256(b"muid:" + uid).hexdigest()[:32].upper().encode()


def install(boot: Boot) -> None:
    p = boot.profile

    def tick64(*_: Any) -> tuple[bytes, int]:
        """The 64-bit high-resolution tick as 8 little-endian bytes, and ticks per us."""
        return struct.pack("<Q", boot.now * 1000 * TICKS_PER_US), TICKS_PER_US

    def dtick64(t1: bytes, t2: bytes, check: int | None = None, *_: Any) -> Any:
        if len(t1) < 8 or len(t2) < 8:
            return False, 0
        diff = struct.unpack("<q", t1[:8])[0] - struct.unpack("<q", t2[:8])[0]
        return (diff >= check if check is not None else True), diff

    boot.firmware_module("mcu", {
        "unique_id": lambda *_: p.uid,
        "muid": lambda *_: muid_of(p.uid),
        "ticks": lambda *_: boot.now,
        "hz": lambda *_: 1000,
        "ticks2": lambda *_: (boot.now * 1000 // 1_000_000, (boot.now * 1000) % 1_000_000),
        "getClk": lambda *_: 160,
        "setClk": lambda *_: True,
        "x32": lambda n=0, *_: f"0x{int(n) & 0xFFFFFFFF:08X}".encode(),
        "tick64": tick64,
        "dtick64": dtick64,
        "hardfault": lambda *_: None,  # what a crash does: there are no crashes to handle
        "iomux": lambda *_: None,
        "altfun": lambda *_: None,
    })
