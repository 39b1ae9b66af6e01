"""The device id as the server keys it, for every part that names a device.

Devices send a MAC as 12 upper-case hex digits (``C8C2C68CD602``); operators type it as
``c8:c2:c6:8c:d6:02`` or with dashes. Both must find the same device, in the store, the push
hub and the admin API alike. Anything that is not MAC-shaped (an IMEI, a UID) is kept as given,
without surrounding space.
"""

from __future__ import annotations

_HEX = frozenset("0123456789abcdefABCDEF")


def normalize_device_key(device: str) -> str:
    text = device.strip()
    compact = text.replace(":", "").replace("-", "")
    if len(compact) == 12 and all(c in _HEX for c in compact):
        return compact.upper()
    return text
