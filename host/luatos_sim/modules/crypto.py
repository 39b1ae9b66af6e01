"""crypto: digests as uppercase hex (as the firmware returns them), CRCs, randomness."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..vm import Boot


def _hexdigest(name: str) -> Any:
    def digest(data: bytes, *_: Any) -> bytes:  # the data is required (luaL_checklstring)
        return hashlib.new(name, data).hexdigest().upper().encode()
    return digest


def _hmac(name: str) -> Any:
    def mac(data: bytes, key: bytes, *_: Any) -> bytes:
        return hmac.new(key, data, name).hexdigest().upper().encode()
    return mac


def _crc32_generic(data: bytes, init: int, poly: int, xorout: int) -> int:
    if (init, poly, xorout) == (0xFFFFFFFF, 0x04C11DB7, 0xFFFFFFFF):
        return binascii.crc32(data)
    # Reflected CRC-32 with a custom polynomial/init (rarely used; kept simple).
    rpoly = int(f"{poly:032b}"[::-1], 2)
    crc = init
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ rpoly if crc & 1 else crc >> 1
    return (crc ^ xorout) & 0xFFFFFFFF


def _crc16_modbus(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _crc8(data: bytes = b"", poly: int = 0x07, start: int = 0, revert: bool = False,
          *_: Any) -> int:
    """CRC-8 (default poly 0x07, init 0); ``revert`` processes bits LSB first."""
    crc = int(start) & 0xFF
    p = int(poly) & 0xFF
    if revert:
        rp = int(f"{p:08b}"[::-1], 2)
        for byte in data:
            crc ^= byte
            for _bit in range(8):
                crc = (crc >> 1) ^ rp if crc & 1 else crc >> 1
        return crc
    for byte in data:
        crc ^= byte
        for _bit in range(8):
            crc = ((crc << 1) ^ p) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def install(boot: Boot) -> None:
    fs = boot.platform.fs

    def crc32(data: bytes = b"", init: int = 0xFFFFFFFF, poly: int = 0x04C11DB7,
              xorout: int = 0xFFFFFFFF, *_: Any) -> int:
        return _crc32_generic(data, init, poly, xorout)

    def md_file(alg: bytes, path: bytes, key: bytes | None = None) -> bytes | None:
        host, _ = fs.map_path(path, b"r")
        if host is None:
            return None
        try:
            data = open(host, "rb").read()  # noqa: SIM115 - small device files
        except OSError:
            return None
        name = alg.decode().lower()
        if key:
            return hmac.new(key, data, name).hexdigest().upper().encode()
        return hashlib.new(name, data).hexdigest().upper().encode()

    def md(alg: bytes, data: bytes, key: bytes | None = None) -> bytes:
        name = alg.decode().lower()
        if key:
            return hmac.new(key, data, name).hexdigest().upper().encode()
        return hashlib.new(name, data).hexdigest().upper().encode()

    boot.firmware_module("crypto", {
        "md5": _hexdigest("md5"),
        "sha1": _hexdigest("sha1"),
        "sha256": _hexdigest("sha256"),
        "sha512": _hexdigest("sha512"),
        "hmac_md5": _hmac("md5"),
        "hmac_sha1": _hmac("sha1"),
        "hmac_sha256": _hmac("sha256"),
        "hmac_sha512": _hmac("sha512"),
        "crc32": crc32,
        "crc16_modbus": lambda data=b"", *_: _crc16_modbus(data),
        "crc8": _crc8,
        "md": md,
        "md_file": md_file,
        "trng": lambda n=16, *_: os.urandom(int(n)),
        "base64_encode": lambda data=b"", *_: base64.b64encode(data),
        "base64_decode": lambda data=b"", *_: base64.b64decode(data + b"=" * (-len(data) % 4)),
    })
    # The string extensions that need the host (base64) live here, next to crypto.
    string = boot.G.string
    string[b"toBase64"] = boot.lua_function(lambda data: base64.b64encode(data))
    string[b"fromBase64"] = boot.lua_function(
        lambda data: base64.b64decode(data + b"=" * (-len(data) % 4)))
    string[b"toURLBase64"] = boot.lua_function(
        lambda data: base64.urlsafe_b64encode(data).rstrip(b"="))
