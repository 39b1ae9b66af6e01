"""The algorithms behind crypto.cipher_*, crypto.crc16/crc7/checksum and crypto.totp.

Ciphers come from the ``cryptography`` package (never hand-written); this module only maps the
firmware's names ("AES-128-CBC", padding "PKCS7"/"ZERO"/...) onto it and does the CRC tables
the firmware defines by name.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.decrepit.ciphers.modes import CFB, OFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class CipherError(ValueError):
    """A cipher name, key, IV or padding the firmware would refuse."""


_AES_MODES = ("ECB", "CBC", "CTR", "CFB128", "OFB")
CIPHERS: tuple[str, ...] = tuple(
    f"AES-{bits}-{mode}" for bits in (128, 192, 256) for mode in _AES_MODES
) + ("DES-ECB", "DES-CBC", "DES-EDE3-ECB", "DES-EDE3-CBC")
SM4_CIPHERS = ("SM4-ECB", "SM4-CBC", "SM4-CTR")  # gmssl.sm4encrypt, not in cipher_list
PADDINGS = ("PKCS7", "ONE_AND_ZEROS", "ZEROS_AND_LEN", "ZERO", "NONE")


def _pad(data: bytes, block: int, padding: str) -> bytes:
    n = block - len(data) % block
    if padding == "PKCS7":
        return data + bytes([n]) * n
    if padding == "ONE_AND_ZEROS":
        return data + b"\x80" + b"\0" * (n - 1)
    if padding == "ZEROS_AND_LEN":
        return data + b"\0" * (n - 1) + bytes([n])
    if padding == "ZERO":
        return data if len(data) % block == 0 and data else data + b"\0" * n
    if len(data) % block:
        raise CipherError(f"{len(data)} bytes is not a multiple of the {block}-byte block "
                          "(padding NONE)")
    return data


def _unpad(data: bytes, padding: str) -> bytes:
    if not data or padding in ("NONE",):
        return data
    if padding == "PKCS7":
        n = data[-1]
        if not 0 < n <= len(data) or data[-n:] != bytes([n]) * n:
            raise CipherError("bad PKCS7 padding (wrong key or IV?)")
        return data[:-n]
    if padding == "ZEROS_AND_LEN":
        n = data[-1]
        if not 0 < n <= len(data):
            raise CipherError("bad ZEROS_AND_LEN padding")
        return data[:-n]
    if padding == "ONE_AND_ZEROS":
        i = data.rfind(b"\x80")
        if i < 0 or data[i + 1:].strip(b"\0"):
            raise CipherError("bad ONE_AND_ZEROS padding")
        return data[:i]
    return data.rstrip(b"\0")  # ZERO


def cipher(name: str, padding: str, data: bytes, key: bytes, iv: bytes, encrypt: bool) -> bytes:
    name, padding = name.upper(), padding.upper()
    if name not in CIPHERS and name not in SM4_CIPHERS:
        raise CipherError(f"unknown cipher {name!r}; crypto.cipher_list() has the names")
    if padding not in PADDINGS:
        raise CipherError(f"unknown padding {padding!r}; use one of {', '.join(PADDINGS)}")
    if name.startswith("AES-"):
        bits, mode = int(name.split("-")[1]), name.split("-")[2]
        if len(key) != bits // 8:
            raise CipherError(f"{name} needs a {bits // 8}-byte key, got {len(key)}")
        algo: algorithms.AES | algorithms.SM4 | TripleDES = algorithms.AES(key)
        block = 16
    elif name.startswith("SM4-"):
        mode = name.split("-")[1]
        if len(key) != 16:
            raise CipherError(f"SM4 needs a 16-byte key, got {len(key)}")
        algo = algorithms.SM4(key)
        block = 16
    else:
        mode = name.rsplit("-", 1)[1]
        need = 24 if "EDE3" in name else 8
        if len(key) != need:
            raise CipherError(f"{name} needs a {need}-byte key, got {len(key)}")
        algo = TripleDES(key * 3 if need == 8 else key)
        block = 8
    m: Any
    if mode == "ECB":
        m = modes.ECB()
    else:
        if len(iv) != block:
            raise CipherError(f"{name} needs a {block}-byte IV, got {len(iv)}")
        make: Any = {"CBC": modes.CBC, "CTR": modes.CTR, "CFB128": CFB, "OFB": OFB}[mode]
        m = make(iv)
    stream = mode in ("CTR", "CFB128", "OFB")
    c: Any = Cipher(algo, m)
    if encrypt:
        body = data if stream else _pad(data, block, padding)
        e = c.encryptor()
        return e.update(body) + e.finalize()
    if not stream and len(data) % block:
        raise CipherError(f"{len(data)} bytes of ciphertext is not a multiple of the block")
    d = c.decryptor()
    plain = d.update(data) + d.finalize()
    return plain if stream else _unpad(plain, padding)


# -- CRCs by the firmware's names ---------------------------------------------------------------

def _reflect(v: int, width: int) -> int:
    return int(f"{v:0{width}b}"[::-1], 2)


def crc_generic(data: bytes, width: int, poly: int, init: int, xorout: int, refin: bool,
                refout: bool) -> int:
    mask = (1 << width) - 1
    crc = init & mask
    top = 1 << (width - 1)
    for byte in data:
        if refin:
            byte = _reflect(byte, 8)
        crc ^= byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
    if refout:
        crc = _reflect(crc, width)
    return (crc ^ xorout) & mask


# name -> (poly, init, xorout, refin, refout), the catalogue's CRC-16 variants
CRC16: dict[str, tuple[int, int, int, bool, bool]] = {
    "IBM": (0x8005, 0x0000, 0x0000, True, True),
    "MAXIM": (0x8005, 0x0000, 0xFFFF, True, True),
    "USB": (0x8005, 0xFFFF, 0xFFFF, True, True),
    "MODBUS": (0x8005, 0xFFFF, 0x0000, True, True),
    "CCITT": (0x1021, 0x0000, 0x0000, True, True),
    "CCITT-FALSE": (0x1021, 0xFFFF, 0x0000, False, False),
    "X25": (0x1021, 0xFFFF, 0xFFFF, True, True),
    "XMODEM": (0x1021, 0x0000, 0x0000, False, False),
    "DNP": (0x3D65, 0x0000, 0xFFFF, True, True),
}


def crc7(data: bytes, poly: int = 0xE5, start: int = 0) -> int:
    """CRC-7 over a left-aligned 7-bit register (the firmware's default poly 0xE5, init 0)."""
    crc = start & 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc >> 1


def totp(secret: bytes, when: int, digits: int = 6, step: int = 30) -> int:
    """RFC 6238 with HMAC-SHA1 (what authenticator apps use)."""
    mac = hmac.new(secret, struct.pack(">Q", when // step), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF
    return code % 10 ** digits
