"""Model profiles: what differs between an Air8101 and its Cat.1 siblings.

A profile names the firmware modules the model has (so ``mobile`` is nil on an Air8101, as the
reference's default says), the core version and banner, the device identity (MAC / IMEI / UID)
and the Lua heap the VM gets. Everything here can be overridden per Device.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# Modules every LuatOS build we emulate has.
COMMON_MODULES = frozenset({
    "rtos", "log", "json", "crypto", "zbuff", "fskv", "io", "os", "mcu", "hmeta", "wdt",
    "pm", "gpio", "socket", "http", "fota", "uart", "spi", "i2c",
    "adc", "pwm", "lcd", "tp",
})


@dataclass(frozen=True)
class ModelProfile:
    model: str  # hmeta.model()
    bsp: str  # rtos.bsp()
    chip: str  # hmeta.chip()
    hwver: str
    core: str = "V2001"  # rtos.version()
    base: str = "25.11"  # LUAT_VERSION in the banner
    rom_build: str = "Dec 17 2025 13:49:18"
    type_number: int = 0  # second value of rtos.version(true)
    bits: int = 64
    lua_heap: int = 2_097_144  # Lua VM heap cap in bytes (rtos.meminfo("lua") total)
    sys_heap: int = 233_872
    psram: int = 6_291_456
    mac: str | None = None  # STA MAC, 12 uppercase hex characters
    imei: str | None = None
    uid: bytes = bytes.fromhex("54540D5E2E")
    modules: frozenset[str] = field(default=COMMON_MODULES)
    # Milliseconds from reset to the banner, and from reset to the first line of main.
    banner_ms: int = 581
    main_ms: int = 800
    # The 0xFF-prefixed TAUL script package is the Air8101's native FOTA format.
    fota_formats: tuple[str, ...] = ("air8101-script", "lfta", "luatos-full")

    def with_overrides(self, **kw: object) -> ModelProfile:
        return replace(self, **kw)  # type: ignore[arg-type]

    @property
    def firmware(self) -> str:
        return f"LuatOS-SoC_{self.core}_{self.bsp}"

    def mac_bytes(self, offset: int = 0) -> bytes:
        """MACs are consecutive: STA, AP = STA+1, BLE = STA+2."""
        if not self.mac:
            return b""
        n = (int(self.mac, 16) + offset) & 0xFFFFFFFFFFFF
        return n.to_bytes(6, "big")

    def mac_hex(self, offset: int = 0) -> str:
        return self.mac_bytes(offset).hex().upper()


AIR8101 = ModelProfile(
    model="Air8101", bsp="Air8101", chip="BK7258", hwver="A10", mac="C8C2C68CD602",
    modules=COMMON_MODULES | {"wlan", "netdrv"},
)

AIR780E = ModelProfile(
    model="Air780E", bsp="EC618", chip="EC618", hwver="A14", core="V1112", base="24.06",
    rom_build="Jun 20 2024 10:00:00", bits=32, lua_heap=1_048_568, psram=0,
    imei="864536071234561", uid=bytes.fromhex("3C3A1B9F77A0C1D2"),
    modules=COMMON_MODULES | {"mobile", "netdrv"}, fota_formats=("ec", "luatos-full"),
)

AIR8000 = ModelProfile(
    model="Air8000", bsp="Air8000", chip="EC718", hwver="A11", core="V2008", base="25.11",
    bits=64, lua_heap=2_097_144, psram=4_194_304, imei="864536079876541",
    mac="C8C2C68CE001", uid=bytes.fromhex("5A17C0FFEE0102"),
    modules=COMMON_MODULES | {"mobile", "wlan", "netdrv"}, fota_formats=("ec", "luatos-full"),
)

PROFILES: dict[str, ModelProfile] = {p.model: p for p in (AIR8101, AIR780E, AIR8000)}


def get_profile(model: str) -> ModelProfile:
    try:
        return PROFILES[model]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown model {model!r}; known models: {known}") from None
