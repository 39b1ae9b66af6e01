"""iotauth: the MQTT client id, user name and password each public IoT cloud expects, computed
as the firmware's iotauth component does (components/iotauth in LuatOS, 2024-2025).

Products call it before ``mqtt.create``; the corners a script can meet follow that source and are
listed in docs/defaults.md ("iotauth"):

- Without a timestamp argument the firmware signs with a fixed far-future expiry (2999-01-01
  for aliyun/qcloud/onenet/iotda, 2200-01-01 for tuya, 0 for baidu), not the clock: a script that
  wants the current time passes ``os.time()``, which is the virtual clock here.
- ``onenet`` ignores its timestamp argument (the firmware's code for it is commented out).
- A method the cloud does not know logs ``not support: <method>`` and leaves the strings the
  firmware had not written yet empty (which ones differs per cloud).
- The firmware's fixed buffers cut the strings it writes with ``snprintf`` (client id and user
  name 191 bytes, password 255, tuya/baidu's signed text 99); those cuts are reproduced.
- Its arguments are C strings: a byte 0 ends them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from typing import TYPE_CHECKING, Any

from ..cfunc import BadArgument, lua_integer, opt_integer

if TYPE_CHECKING:
    from ..vm import Boot

FAR_FUTURE = 32472115200  # 2999-01-01 00:00 UTC+8: the firmware's default expiry
TUYA_FAR_FUTURE = 7258089600  # 2200-01-01 00:00 UTC+8: tuya's default
CLIENT_ID_MAX, USER_NAME_MAX, PASSWORD_MAX = 191, 191, 255  # the firmware's buffers less the NUL
SIGNED_TEXT_MAX = 99  # tuya's and baidu's 100-byte buffer for the signed text
ONENET_KEY_MAX, QCLOUD_PSK_MAX = 64, 48  # decoded-key buffers

# The OneNET token percent-encodes these characters of res and sign, and nothing else.
_ONENET_ESCAPES = {ord(c): f"%{ord(c):02X}".encode() for c in "+ /?%#&="}
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


class _Unsupported(Exception):
    """A method the cloud's signing does not know."""


class _Partial(_Unsupported):
    """An unsupported method after the firmware already wrote some of the strings."""

    def __init__(self, *written: bytes) -> None:
        super().__init__()
        self.written = written


def _cstr(v: bytes) -> bytes:
    """What C sees of a Lua string: up to its first byte 0."""
    return v.split(b"\0", 1)[0]


def _hex(digest: bytes, upper: bool = False) -> bytes:
    text = digest.hex().encode()
    return text.upper() if upper else text


def _mbedtls_b64decode(src: bytes, capacity: int) -> bytes:
    """The firmware's base64 decoder (mbedtls rules): spaces and line ends around lines are
    skipped, anything else invalid gives an empty key, and only whole groups of four count.
    A key longer than the buffer leaves the buffer unwritten while the length is still
    reported, so the HMAC gets that many bytes of zeroed buffer (UNCONFIRMED past the buffer:
    the firmware reads beyond it)."""
    chars = bytearray()
    pads = i = 0
    while i < len(src):
        spaces = 0
        while i < len(src) and src[i] == 0x20:
            i += 1
            spaces += 1
        if i == len(src):
            break
        if src[i] == 0x0A or (src[i] == 0x0D and src[i + 1:i + 2] == b"\n"):
            i += 1
            continue
        c = src[i]
        if spaces or (c == 0x3D and pads >= 2):
            return b""
        if c == 0x3D:
            pads += 1
        elif c not in _B64 or pads:
            return b""
        chars.append(c)
        i += 1
    n = len(chars)
    if n == 0:
        return b""
    size = 6 * (n >> 3) + ((6 * (n & 7) + 7) >> 3) - pads
    if size > capacity:
        return bytes(size)
    whole = bytes(chars[:n - n % 4])
    return base64.b64decode(whole) if whole else b""


def _c_string_arg(v: Any) -> bytes:
    """luaL_checklstring after c_function converted numbers: bytes or a failed call."""
    if not isinstance(v, bytes):
        raise TypeError("string expected")
    return _cstr(v)


def _number_or_default(v: Any, default: int, n: int, fname: str) -> tuple[int, bool]:
    """``if (lua_type(L, n) == LUA_TNUMBER) ts = luaL_checkinteger(L, n)``: anything but a
    number keeps the default; a number without an integer value is an argument error."""
    if not isinstance(v, int | float) or isinstance(v, bool):
        return default, False
    i = lua_integer(v)
    if i is None:
        raise BadArgument(f"bad argument #{n} to '{fname}' (number has no integer representation)")
    return i, True


def _method(method: bytes, names: dict[bytes, str]) -> str:
    """The digest for a method the firmware spells out (all lower or all upper case only)."""
    for spelling, digest in names.items():
        if method in (spelling.lower(), spelling.upper()):
            return digest
    raise _Unsupported


def aliyun(product_key: bytes, device_name: bytes, secret: bytes, method: bytes, ts: int,
           tls: bool) -> tuple[bytes, bytes, bytes]:
    digest = _method(method, {b"hmacmd5": "md5", b"hmacsha1": "sha1", b"hmacsha256": "sha256"})
    device_id = product_key + b"." + device_name
    stamp = str(ts).encode()
    client_id = (device_id + b"|securemode=" + (b"2" if tls else b"3") + b",signmethod="
                 + method.lower() + b",timestamp=" + stamp + b"|")
    signed = (b"clientId" + device_id + b"deviceName" + device_name + b"productKey"
              + product_key + b"timestamp" + stamp)
    password = _hex(hmac.new(secret, signed, digest).digest(), upper=True)
    return client_id, device_name + b"&" + product_key, password


def onenet_token(product_id: bytes, device_name: bytes, key: bytes, method: bytes,
                 version: bytes, res: bytes | None, et: int) -> bytes:
    digest = _method(method, {b"md5": "md5", b"sha1": "sha1", b"sha256": "sha256"})
    resource = res if res is not None else b"products/" + product_id + b"/devices/" + device_name
    et_text = str(et).encode()
    signed = b"\n".join((et_text, method, resource, version))
    secret = _mbedtls_b64decode(key, ONENET_KEY_MAX)
    sign = base64.b64encode(hmac.new(secret, signed, digest).digest())
    token = (b"version=" + version + b"&res=" + _onenet_escape(resource) + b"&et=" + et_text
             + b"&method=" + method + b"&sign=" + _onenet_escape(sign))
    return token[:PASSWORD_MAX]


def _onenet_escape(text: bytes) -> bytes:
    return b"".join(_ONENET_ESCAPES.get(c, bytes((c,))) for c in text)


def iotda_hour(ts: int, offset_s: int) -> bytes:
    """``YYYYMMDDHH`` of the firmware's ``localtime`` (the device's zone), cut to 10 bytes."""
    tm = time.gmtime(ts + offset_s)
    return f"{tm.tm_year:04d}{tm.tm_mon:02d}{tm.tm_mday:02d}{tm.tm_hour:02d}".encode()[:10]


def qcloud(product_id: bytes, device_name: bytes, secret: bytes, method: bytes, ts: int,
           appid: bytes, conn_id: bytes) -> tuple[bytes, bytes, bytes]:
    client_id = (product_id + device_name)[:CLIENT_ID_MAX]
    user_name = (product_id + device_name + b";" + appid + b";" + conn_id + b";"
                 + str(ts).encode())[:USER_NAME_MAX]
    try:
        digest = _method(method, {b"sha1": "sha1", b"sha256": "sha256"})
    except _Unsupported:
        raise _Partial(client_id, user_name, b"") from None
    psk = _mbedtls_b64decode(secret, QCLOUD_PSK_MAX)
    sign = _hex(hmac.new(psk, user_name, digest).digest())
    return client_id, user_name, (sign + b";hmac" + digest.encode())[:PASSWORD_MAX]


def tuya(device_id: bytes, secret: bytes, ts: int) -> tuple[bytes, bytes, bytes]:
    stamp = str(ts).encode()
    signed = (b"deviceId=" + device_id + b",timestamp=" + stamp
              + b",secureMode=1,accessType=1")[:SIGNED_TEXT_MAX]
    user_name = device_id + b"|signMethod=hmacSha256,timestamp=" + stamp + \
        b",secureMode=1,accessType=1"
    return ((b"tuyalink_" + device_id)[:CLIENT_ID_MAX], user_name[:USER_NAME_MAX],
            _hex(hmac.new(secret, signed, "sha256").digest()))


def baidu(core_id: bytes, device_key: bytes, secret: bytes, method: bytes,
          ts: int) -> tuple[bytes, bytes, bytes]:
    client_id = core_id[:CLIENT_ID_MAX]
    try:
        digest = _method(method, {b"md5": "md5", b"sha256": "sha256"})
    except _Unsupported:
        raise _Partial(client_id, b"", b"") from None
    name = digest.upper().encode()
    stamp = str(ts).encode()
    user_name = b"thingidp@" + core_id + b"|" + device_key + b"|" + \
        (stamp + b"|" if ts else b"") + name
    signed = (device_key + b"&" + stamp + b"&" + name + secret)[:SIGNED_TEXT_MAX]
    return client_id, user_name[:USER_NAME_MAX], _hex(hashlib.new(digest, signed).digest())


def install(boot: Boot) -> None:
    clock = boot.platform.rtc

    def unsupported(method: bytes, e: _Unsupported) -> tuple[bytes, bytes, bytes]:
        boot.log_c("E", "iotauth", f"not support: {method.decode('latin-1')}")
        if isinstance(e, _Partial):
            a, b, c = e.written
            return a, b, c
        return b"", b"", b""

    def l_aliyun(product_key: bytes, device_name: bytes, secret: bytes,
                 method: bytes | None = None, ts: Any = None, tls: Any = None,
                 *_: Any) -> tuple[bytes, bytes, bytes]:
        pk, dn, ds = (_c_string_arg(v) for v in (product_key, device_name, secret))
        m = _cstr(method) if method is not None else b"hmacmd5"
        stamp, _given = _number_or_default(ts, FAR_FUTURE, 5, "aliyun")
        try:
            return aliyun(pk, dn, ds, m, stamp, tls is True)
        except _Unsupported as e:
            return unsupported(m, e)

    def l_onenet(product_id: bytes, device_name: bytes, key: bytes, method: bytes | None = None,
                 _ts: Any = None, version: bytes | None = None, res: Any = None,
                 *_: Any) -> tuple[bytes, bytes, bytes]:
        pid, dn, k = (_c_string_arg(v) for v in (product_id, device_name, key))
        m = _cstr(method) if method is not None else b"md5"
        ver = _cstr(version) if version is not None else b"2018-10-31"
        resource = _cstr(res) if isinstance(res, bytes) else None  # a string only, not a number
        try:
            token = onenet_token(pid, dn, k, m, ver, resource, FAR_FUTURE)
        except _Unsupported as e:
            return unsupported(m, e)
        return dn[:CLIENT_ID_MAX], pid[:USER_NAME_MAX], token

    def l_iotda(device_id: bytes, secret: bytes, ts: Any = None,
                *_: Any) -> tuple[bytes, bytes, bytes]:
        did, ds = _c_string_arg(device_id), _c_string_arg(secret)
        stamp, given = _number_or_default(ts, FAR_FUTURE, 3, "iotda")
        try:
            hour = iotda_hour(stamp, clock.local_offset_s())
        except (OverflowError, ValueError, OSError):
            raise BadArgument(f"bad argument #3 to 'iotda' (time out of range: {stamp})") from None
        client_id = did + b"_0_" + (b"1" if given else b"0") + b"_" + hour
        password = _hex(hmac.new(hour, ds, "sha256").digest())
        return client_id[:CLIENT_ID_MAX], did[:USER_NAME_MAX], password

    def l_qcloud(product_id: bytes, device_name: bytes, secret: bytes,
                 method: bytes | None = None, ts: Any = None, appid: bytes | None = None,
                 *_: Any) -> tuple[bytes, bytes, bytes]:
        pid, dn, ds = (_c_string_arg(v) for v in (product_id, device_name, secret))
        m = _cstr(method) if method is not None else b"sha256"
        stamp, _given = _number_or_default(ts, FAR_FUTURE, 5, "qcloud")
        app = _cstr(appid) if appid is not None else b"12010126"
        conn_id = bytes(0x61 + b % 26 for b in os.urandom(5))  # the firmware's TRNG, a-z
        try:
            return qcloud(pid, dn, ds, m, stamp, app, conn_id)
        except _Unsupported as e:
            return unsupported(m, e)

    def l_tuya(device_id: bytes, secret: bytes, ts: Any = None,
               *_: Any) -> tuple[bytes, bytes, bytes]:
        did, ds = _c_string_arg(device_id), _c_string_arg(secret)
        stamp, _given = _number_or_default(ts, TUYA_FAR_FUTURE, 3, "tuya")
        return tuya(did, ds, stamp)

    def l_baidu(core_id: bytes, device_key: bytes, secret: bytes, method: bytes | None = None,
                ts: Any = None, *_: Any) -> tuple[bytes, bytes, bytes]:
        cid, dk, ds = (_c_string_arg(v) for v in (core_id, device_key, secret))
        m = _cstr(method) if method is not None else b"MD5"
        stamp = opt_integer(ts, 0, 5, "baidu")
        try:
            return baidu(cid, dk, ds, m, stamp)
        except _Unsupported as e:
            return unsupported(m, e)

    boot.firmware_module("iotauth", {
        "aliyun": l_aliyun, "onenet": l_onenet, "iotda": l_iotda, "qcloud": l_qcloud,
        "tuya": l_tuya, "baidu": l_baidu,
    })
