"""pm: power management. This file holds reboot, the reset reason and the constants; deep
sleep and the dtimers are added by the power/sleep layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..vm import Boot

CONSTANTS = {
    "NONE": 0, "IDLE": 1, "LIGHT": 2, "DEEP": 3, "HIB": 4,
    "USB": 0, "GPS": 1, "GPS_ANT": 2, "CAMERA": 3, "DAC_EN": 4, "PWK_MODE": 5,
    "WORK_MODE": 6, "LDO_CTL": 7, "WIFI_STA_DTIM": 8, "WIFI_AP_DTIM": 9, "WIFI": 10,
    "ID_NATIVE": 0, "ID_WIFI": 1,
}


def install(boot: Boot) -> None:
    reason = boot.device.last_reset  # (wake source, state, detail, pad mask)

    boot.firmware_module("pm", {
        "lastReson": lambda *_: tuple(reason),
    }, CONSTANTS)
    boot.G.pm[b"reboot"] = boot.G.rtos[b"reboot"]
