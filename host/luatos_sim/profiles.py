"""Model profiles: what differs between an Air8101 and its Cat.1 siblings.

A profile lists the firmware API the model has (modules and their functions, so ``mobile`` is
nil on an Air8101 as docs/behaviour.md says), the core version and banner, the device identity
(MAC / IMEI / UID) and the Lua heap the VM gets. Everything here can be overridden per Device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType


def _functions(names: str) -> frozenset[str]:
    return frozenset(names.split())


# The API surface of the firmware's C modules: module -> the functions its Lua table has, as
# the firmware's registration tables (luat_lib_*.c) and the API docs list them. A binding in
# modules/ installs only what its model's surface lists (a function the model's firmware lacks
# stays nil, as on the device); a listed function no binding provides fails like a nil call and
# is reported "not emulated". Constants are the binding's business.
COMMON_API: Mapping[str, frozenset[str]] = MappingProxyType({
    "rtos": _functions("bsp buildDate firmware meminfo reboot receive setPaths standby "
                       "timer_start timer_stop version autoCollectMem"),
    "json": _functions("decode encode"),
    "crypto": _functions("base64_decode base64_encode crc16_modbus crc32 crc8 hmac_md5 "
                         "hmac_sha1 hmac_sha256 hmac_sha512 md md5 md_file sha1 sha256 sha512 "
                         "trng cipher_encrypt cipher_decrypt cipher_list crc16 crc7 checksum "
                         "totp hash_init hash_update hash_finish"),
    "zbuff": _functions("create"),
    "fskv": _functions("clear clr del get init iter next set sett status"),
    "io": _functions("close exists fileSize flush fsstat lines lsdir mkdir open read readFile "
                     "rmdir type write writeFile dexist lsmount"),
    "mcu": _functions("getClk hz setClk ticks ticks2 unique_id muid x32 tick64 dtick64 "
                      "hardfault iomux altfun reg32"),
    "hmeta": _functions("chip hwver model"),
    "gtfont": _functions("init"),
    "wdt": _functions("close feed init setTimeout"),
    "pm": _functions("request dtimerStart dtimerStop dtimerCheck dtimerList dtimerWkId force "
                     "check lastReson shutdown reboot power ioVol wakeupPin keep"),
    "socket": _functions("accept adapter close close_all config connect create debug dft "
                         "discon linkup listen localIP read release rx setDNS sntp state tx "
                         "wait ntptm"),
    "http": _functions("request"),
    "fota": _functions("done end file finish init isDone run wait"),
    "gpio": _functions("close count debounce get pulse set setup toggle"),
    "uart": _functions("close exist on read rxClear rxSize setup write rx tx"),
    "spi": _functions("close createSoft deviceSend deviceSetup deviceTransfer recv send setup "
                      "transfer xfer"),
    "i2c": _functions("close createSoft exist readDHT12 readReg readSHT30 recv send setup "
                      "transfer writeReg xfer"),
    "adc": _functions("close get open read setRange"),
    "pack": _functions("pack unpack"),
    "u8g2": _functions("begin close ClearBuffer SendBuffer SetFont SetFontMode SetDrawColor "
                       "DrawUTF8 GetUTF8Width DrawLine DrawPixel DrawBox DrawFrame DrawCircle "
                       "DrawDisc DrawXBM DrawDrcode GetDisplayWidth GetDisplayHeight "
                       "SetContrast SetPowerSave"),
    "pwm": _functions("capture close open setDuty setFreq setup start stop"),
    "lcd": _functions("autoFlush clear draw drawCircle drawLine drawPoint drawQrcode "
                      "drawRectangle drawStr drawXbm fill flush getSize getStrWidth init off on "
                      "rgb565 setColor setFont setupBuff showImage sleep wakeup invon invoff "
                      "close"),
    "netdrv": _functions("ctrl debug dhcp ipv4 link mac mtu napt ping ready setup"),
    "rtc": _functions("set get timerStart timerStop setBaseYear timezone"),
    "websocket": _functions("create"),
    "httpsrv": _functions("start stop debug"),
    "bit": _functions("bit bnot band bor bxor lshift rshift arshift isset isclear set clear"),
    "miniz": _functions("compress uncompress"),
    "iconv": _functions("open"),
    "gmssl": _functions("sm3 sm3hmac sm4encrypt sm4decrypt"),
    "mqtt": _functions("create auth keepalive on connect autoreconn publish subscribe "
                       "unsubscribe disconnect close ready will debug state"),
    "errDump": _functions("config dump record"),
    "iotauth": _functions("aliyun onenet iotda qcloud tuya baidu"),
    "xxtea": _functions("encrypt decrypt"),
    "bit64": _functions("to32 to64 plus minus multi pide shift show strtoll"),
    "rsa": _functions("encrypt decrypt sign verify"),
    "fastlz": _functions("compress uncompress"),
    "protobuf": _functions("load encode decode clear"),
})

# Modules the firmware has that the emulator does not emulate yet (no binding): their tables
# exist and every call is reported "not emulated" (see modules/__init__.py).
NOT_EMULATED_API: Mapping[str, frozenset[str]] = MappingProxyType({
    "fatfs": _functions("mount unmount getfree debug"),
    "pins": _functions("setup loadjson"),
    "iperf": _functions("server client abort"),
    "lora2": _functions("init"),
})

WLAN_API = _functions("init scan scanResult mode setMode ready connect disconnect smartconfig "
                      "getIP getInfo getMac setMac hostname setHostname powerSave staIp "
                      "createAP stopAP autoreconn")
MOBILE_API = _functions("csq flymode iccid imei imsi rssi status")
SMS_API = _functions("send sendLong setNewSmsCb setReportCb autoLong clearLong unpack debug")
TP_API = _functions("init")
BLUETOOTH_API = _functions("init")
CAMERA_API = _functions("capture close init on start stop")
# libgnss: the NMEA parser of the models that carry a GNSS receiver (docs/defaults.md: which
# models have it is UNCONFIRMED). casic_aid is listed and not emulated.
LIBGNSS_API = _functions("parse isFix getIntLocation getRmc getGsv getGsa getVtg getGga getGll "
                         "getZda getTxt locStr rtcAuto on debug clear bind casic_aid")
BLE_API = _functions("adv_create adv_start adv_stop gatt_create write_notify write_indicate "
                     "write_value read_value scan_create scan_start scan_stop connect disconnect "
                     "notify_enable")

# Whole modules the real firmware has that the emulator leaves out: the global stays nil (a
# script that tests ``if airui then`` takes the path it takes without the module), and the first
# use is named once, "[luatos-sim] airui is not emulated", before the script meets its own Lua
# error. Which models have which of these is UNCONFIRMED (docs/defaults.md); a module that
# gains a binding moves into the API above. Modules listed in NOT_EMULATED_API are the other
# kind: their table exists (``if httpsrv then`` is true, as on the device) and each missing
# function is named when it is called.
ABSENT_COMMON: Mapping[str, frozenset[str]] = MappingProxyType({
    "eink": frozenset(), "airui": frozenset(), "lvgl": frozenset(), "audio": frozenset(),
})
ABSENT_CELLULAR: Mapping[str, frozenset[str]] = MappingProxyType({**ABSENT_COMMON})

# Lua-side modules every build has (set up by boot.lua, not by a binding).
LUA_MODULES = frozenset({"log", "os"})


def api_with(**extra: frozenset[str]) -> Mapping[str, frozenset[str]]:
    """COMMON_API plus the model's own modules (``wlan=WLAN_API``, ...) plus the modules every
    model's firmware has that are not emulated yet."""
    return MappingProxyType({**NOT_EMULATED_API, **COMMON_API, **extra})


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
    # Nominal Lua VM instructions per ms: what one ms of virtual time buys a computation
    # (UNCONFIRMED, docs/defaults.md; DeviceOptions.lua_instructions_per_ms overrides).
    lua_instructions_per_ms: int = 5_000
    sys_heap: int = 233_872
    psram: int = 6_291_456
    mac: str | None = None  # STA MAC, 12 uppercase hex characters
    imei: str | None = None
    uid: bytes = bytes.fromhex("54540D5E2E")
    # ADC channel numbers adc.open accepts (besides CH_CPU / CH_VBAT); the bench's default set.
    adc_channels: frozenset[int] = frozenset(range(0, 8))
    api: Mapping[str, frozenset[str]] = field(default_factory=lambda: COMMON_API)  # per module
    # The firmware's API beyond what the emulator installs (see ABSENT_COMMON).
    absent_api: Mapping[str, frozenset[str]] = field(default_factory=lambda: ABSENT_COMMON)
    # Milliseconds from reset to the banner, and from reset to the first line of main.
    banner_ms: int = 581
    main_ms: int = 800
    # The 0xFF-prefixed TAUL script package is the Air8101's native FOTA format.
    fota_formats: tuple[str, ...] = ("air8101-script", "lfta", "luatos-full")

    def with_overrides(self, **kw: object) -> ModelProfile:
        return replace(self, **kw)  # type: ignore[arg-type]

    @property
    def modules(self) -> frozenset[str]:
        """The firmware modules this model has (a module not listed is a nil global)."""
        return frozenset(self.api) | LUA_MODULES

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
    # The vendor's Air8101 ADC demo: ADC1-6 plus 10, 12, 13, 14 (pins shared with ADC1-4); the
    # bench keeps 0 and 7 as well so scripts written for the generic 0-7 set still read.
    adc_channels=frozenset(range(0, 8)) | frozenset({10, 12, 13, 14}),
    api=api_with(wlan=WLAN_API, tp=TP_API, bluetooth=BLUETOOTH_API, ble=BLE_API,
                 camera=CAMERA_API),
)

AIR780E = ModelProfile(
    model="Air780E", bsp="EC618", chip="EC618", hwver="A14", core="V1112", base="24.06",
    rom_build="Jun 20 2024 10:00:00", bits=32, lua_heap=1_048_568, psram=0,
    lua_instructions_per_ms=3_000,
    imei="864536071234561", uid=bytes.fromhex("3C3A1B9F77A0C1D2"),
    api=api_with(mobile=MOBILE_API, libgnss=LIBGNSS_API, sms=SMS_API),
    absent_api=ABSENT_CELLULAR,
    fota_formats=("ec", "luatos-full"),
)

AIR8000 = ModelProfile(
    model="Air8000", bsp="Air8000", chip="EC718", hwver="A11", core="V2008", base="25.11",
    bits=64, lua_heap=2_097_144, psram=4_194_304, imei="864536079876541",
    lua_instructions_per_ms=4_000,
    mac="C8C2C68CE001", uid=bytes.fromhex("5A17C0FFEE0102"),
    api=api_with(mobile=MOBILE_API, wlan=WLAN_API, tp=TP_API, bluetooth=BLUETOOTH_API,
                 ble=BLE_API, libgnss=LIBGNSS_API, sms=SMS_API), absent_api=ABSENT_CELLULAR,
    fota_formats=("ec", "luatos-full"),
)

PROFILES: dict[str, ModelProfile] = {p.model: p for p in (AIR8101, AIR780E, AIR8000)}


def get_profile(model: str) -> ModelProfile:
    try:
        return PROFILES[model]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown model {model!r}; known models: {known}") from None
