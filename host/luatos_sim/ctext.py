"""Text as the firmware's C code reads it: a Lua string seen as a C string, and base64 decoded
by the mbedtls-style decoder that ``string.fromBase64``, ``crypto.base64_decode`` and the
iotauth component share (docs/defaults.md, "base64 decoding").

Bindings that hand a Lua string to C code that stops at a NUL, or that decode base64 the
firmware's way, use these, so each rule has one definition."""

from __future__ import annotations

import base64

_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_SPACE, _LF, _CR, _PAD = 0x20, 0x0A, 0x0D, 0x3D


def c_string(value: bytes) -> bytes:
    """What C sees of a Lua string: everything before its first byte 0."""
    return value.split(b"\0", 1)[0]


class Base64Invalid(ValueError):
    """The decoder refuses the text (mbedtls: MBEDTLS_ERR_BASE64_INVALID_CHARACTER)."""


class Base64BufferTooSmall(ValueError):
    """The decoded data would not fit the caller's buffer (mbedtls:
    MBEDTLS_ERR_BASE64_BUFFER_TOO_SMALL); ``needed`` is the length the decoder reports."""

    def __init__(self, needed: int) -> None:
        super().__init__(f"base64: {needed} bytes do not fit the buffer")
        self.needed = needed


def mbedtls_b64decode(src: bytes, capacity: int | None = None) -> bytes:
    """Decode ``src`` by the mbedtls rules, which differ from Python's lenient ``b64decode``:

    - spaces before a line end (LF or CR LF) or at the very end are skipped, a space inside a
      line is invalid; line ends are skipped; any other byte outside the alphabet is invalid;
    - at most two ``=``, and nothing but ``=`` and line ends after the first;
    - only whole groups of four characters produce bytes: a missing ``=`` loses the last,
      partial group instead of being added.

    Raises :class:`Base64Invalid`, or :class:`Base64BufferTooSmall` when the length the decoder
    computes first exceeds ``capacity`` (None: no limit)."""
    chars = bytearray()
    pads = i = 0
    while i < len(src):
        spaces = 0
        while i < len(src) and src[i] == _SPACE:
            i += 1
            spaces += 1
        if i == len(src):
            break
        c = src[i]
        if c == _LF or (c == _CR and src[i + 1:i + 2] == b"\n"):
            i += 1
            continue
        if spaces or (c == _PAD and pads >= 2):
            raise Base64Invalid(f"base64: invalid character at offset {i}")
        if c == _PAD:
            pads += 1
        elif c not in _B64_ALPHABET or pads:
            raise Base64Invalid(f"base64: invalid character at offset {i}")
        chars.append(c)
        i += 1
    n = len(chars)
    if n == 0:
        return b""
    size = 6 * (n >> 3) + ((6 * (n & 7) + 7) >> 3) - pads
    if capacity is not None and size > capacity:
        raise Base64BufferTooSmall(size)
    whole = bytes(chars[:n - n % 4])
    return base64.b64decode(whole) if whole else b""
