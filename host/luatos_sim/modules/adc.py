"""adc: open/read/get/close over the bench's channel voltages (``dev.adc``).

``adc.read`` returns (raw, mV) and ``adc.get`` the mV (thousandths of a degree for
``adc.CH_CPU``); a channel the model does not have, or one read before ``adc.open``, fails as
in the firmware: ``read`` gives 0xFF alone and ``get`` -1. ``adc.setRange`` takes effect at
the next ``adc.open``, as the firmware documents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..cfunc import require_ints
from ..platform.adc import CH_CPU, CH_VBAT, AdcBench

if TYPE_CHECKING:
    from ..vm import Boot

CONSTANTS = {
    "CH_CPU": CH_CPU, "CH_VBAT": CH_VBAT, "ADC_RANGE_3_6": 1, "ADC_RANGE_1_8": 0,
    "ADC_RANGE_3_8": 8, "ADC_RANGE_1_2": 0, "ADC_RANGE_MAX": 14, "ADC_RANGE_MIN": 0,
    "T1": 16, "T2": 32,
}


def install(boot: Boot) -> None:
    bench: AdcBench = boot.platform.adc
    opened: dict[int, int | None] = {}  # channel -> range in force when it was opened
    state: dict[str, int | None] = {"range": None}
    noted: set[int] = set()

    def fail(channel: int, why: str) -> None:
        if channel not in noted:
            noted.add(channel)
            boot.note(f"adc channel {channel}: {why}; the read fails as on the device")

    def open_(channel: int, *_: Any) -> bool:
        require_ints(channel)
        if not bench.valid(channel):
            fail(channel, f"{boot.profile.model} has no such channel")
            return False
        opened[channel] = state["range"]
        return True

    def set_range(value: int, *_: Any) -> None:
        state["range"] = value

    def sample(channel: int) -> tuple[int, int] | None:
        require_ints(channel)
        if channel not in opened:
            fail(channel, "read before adc.open" if bench.valid(channel)
                 else f"{boot.profile.model} has no such channel")
            return None
        return bench.sample(channel, opened[channel])

    def read(channel: int, *_: Any) -> Any:
        got = sample(channel)
        return 0xFF if got is None else got

    def get(channel: int, *_: Any) -> int:
        got = sample(channel)
        return -1 if got is None else got[1]

    def close(channel: int, *_: Any) -> None:
        require_ints(channel)
        opened.pop(channel, None)

    boot.firmware_module("adc", {"open": open_, "setRange": set_range, "read": read,
                                 "get": get, "close": close}, CONSTANTS)
