"""xxtea: XXTEA with the framing the firmware wraps around it (the xxtea-c library).

The firmware does not pad to a block: it appends the plaintext length as a 32-bit word after
the zero-filled last word, and decrypt checks that word and cuts the plaintext back to it. The
key is what a C string gives: cut at its first NUL and at 16 bytes, zero-filled to 16. The
block cipher itself (corrected block TEA, little-endian words) is the `xxtea` package's."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import xxtea as xxtea_cipher

from ..ctext import c_string

if TYPE_CHECKING:
    from ..vm import Boot


def firmware_key(key: bytes) -> bytes:
    """The 16 key bytes the firmware uses: up to the first NUL, at most 16, zero-filled."""
    return c_string(key)[:16].ljust(16, b"\0")


def encrypt(data: bytes, key: bytes) -> bytes | None:
    if not data:
        return None  # xxtea-c refuses empty input
    words = data + b"\0" * (-len(data) % 4) + struct.pack("<I", len(data) & 0xFFFFFFFF)
    return bytes(xxtea_cipher.encrypt(words, firmware_key(key), padding=False))


def decrypt(data: bytes, key: bytes) -> bytes | None:
    words = data + b"\0" * (-len(data) % 4)  # a short last word is zero-filled, as in C
    if len(words) < 8:
        return None  # one word holds no length and no data: xxtea-c answers NULL
    plain = bytes(xxtea_cipher.decrypt(words, firmware_key(key), padding=False))
    body = len(plain) - 4
    (length,) = struct.unpack_from("<I", plain, body)
    if length > body or length < body - 3:
        return None  # wrong key or not XXTEA data: the length word does not fit
    return plain[:length]


def install(boot: Boot) -> None:
    def lua_encrypt(data: bytes, key: bytes, *_: Any) -> bytes | tuple[()]:
        out = encrypt(data, key)
        return () if out is None else out  # the firmware pushes nothing on failure

    def lua_decrypt(data: bytes, key: bytes, *_: Any) -> bytes | tuple[()]:
        out = decrypt(data, key)
        return () if out is None else out

    boot.firmware_module("xxtea", {"encrypt": lua_encrypt, "decrypt": lua_decrypt})
