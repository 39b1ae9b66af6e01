"""crypto: digests as uppercase hex (as the firmware returns them), CRCs, randomness."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from typing import TYPE_CHECKING, Any

from ..crypto_algos import CIPHERS, CRC16, CipherError, cipher, crc7, crc_generic, totp
from ..ctext import Base64Invalid, mbedtls_b64decode

if TYPE_CHECKING:
    from ..vm import Boot


def from_base64(data: bytes) -> bytes:
    """``string.fromBase64`` and ``crypto.base64_decode`` (one C function in the firmware): the
    mbedtls decoder into a buffer one byte longer than the text, which always fits; text it
    refuses gives an empty string, not an error (docs/defaults.md, "base64 decoding")."""
    try:
        return mbedtls_b64decode(data)
    except Base64Invalid:
        return b""


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

    def cipher_call(encrypt: bool) -> Any:
        def run(kind: bytes, padding: bytes, data: bytes, key: bytes, iv: bytes = b"",
                *_: Any) -> bytes:
            try:
                return cipher(kind.decode(errors="replace"), padding.decode(errors="replace"),
                              data, key, iv, encrypt)
            except CipherError as e:
                # The device logs the mbedtls failure and hands back an empty string.
                boot.log_c("E", "crypto", f"cipher {'encrypt' if encrypt else 'decrypt'} "
                                          f"failed: {e}")
                return b""
        return run

    def crc16(method: bytes, data: bytes, poly: int | None = None, init: int | None = None,
              xorout: int | None = None, refin: Any = None, refout: Any = None, *_: Any) -> int:
        name = method.decode(errors="replace").upper()
        if name == "USER-DEFINED":
            return crc_generic(data, 16, int(poly or 0x8005), int(init or 0), int(xorout or 0),
                               bool(refin), bool(refout))
        params = CRC16.get(name)
        if params is None:
            boot.log_c("E", "crypto", f"crc16 method {name} not support")
            return 0
        return crc_generic(data, 16, *params)

    def checksum(data: bytes, mode: int = 0, *_: Any) -> int:
        if int(mode) == 1:
            return sum(data) & 0xFF
        x = 0
        for byte in data:
            x ^= byte
        return x

    def totp_code(secret: bytes, when: int | None = None, *_: Any) -> int:
        try:
            key = base64.b32decode(secret.upper() + b"=" * (-len(secret) % 8))
        except (binascii.Error, ValueError):
            return -1
        now = boot.platform.rtc.now_s(boot.now)  # os.time()
        return totp(key, int(when) if when is not None else now)

    class HashStream:
        """crypto.hash_init(...): an incremental digest or HMAC."""

        def __init__(self, alg: str, key: bytes | None) -> None:
            self.h: Any = hmac.new(key, b"", alg) if key else hashlib.new(alg)

    boot.objects.define(HashStream, None)

    def hash_init(alg: bytes, key: bytes | None = None, *_: Any) -> Any:
        try:
            return HashStream(alg.decode().lower(), key or None)
        except ValueError:
            return None

    def hash_update(stream: Any, data: bytes, *_: Any) -> None:
        if isinstance(stream, HashStream):
            stream.h.update(data)

    def hash_finish(stream: Any, *_: Any) -> bytes | None:
        if not isinstance(stream, HashStream):
            return None
        return stream.h.hexdigest().upper().encode()

    boot.firmware_module("crypto", {
        "cipher_encrypt": cipher_call(True),
        "cipher_decrypt": cipher_call(False),
        "cipher_list": lambda *_: boot.table(*CIPHERS),
        "crc16": crc16,
        "crc7": lambda data, poly=0xE5, start=0, *_: crc7(data, int(poly), int(start)),
        "checksum": checksum,
        "totp": totp_code,
        "hash_init": hash_init,
        "hash_update": hash_update,
        "hash_finish": hash_finish,
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
        "base64_decode": lambda data=b"", *_: from_base64(data),
    })
    # The string extensions that need the host (base64) live here, next to crypto.
    string = boot.G.string
    string[b"toBase64"] = boot.lua_function(lambda data: base64.b64encode(data))
    string[b"fromBase64"] = boot.lua_function(from_base64)
    string[b"toURLBase64"] = boot.lua_function(
        lambda data: base64.urlsafe_b64encode(data).rstrip(b"="))
    string[b"toBase32"] = boot.lua_function(lambda data: base64.b32encode(data), "toBase32")

    def from_base32(data: bytes) -> bytes:
        try:
            bare = data.rstrip(b"=").upper()
            return base64.b32decode(bare + b"=" * (-len(bare) % 8))
        except (binascii.Error, ValueError):
            return b""
    string[b"fromBase32"] = boot.lua_function(from_base32, "fromBase32")
