"""gmssl: the Chinese national algorithms SM3 (digest, HMAC) and SM4 (block cipher), from the
``cryptography`` package. SM2 (public-key) is not emulated: the package has no SM2."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as chmac

from ..crypto_algos import CipherError, cipher

if TYPE_CHECKING:
    from ..vm import Boot


def install(boot: Boot) -> None:
    def sm3(data: bytes, *_: Any) -> bytes:
        h = hashes.Hash(hashes.SM3())
        h.update(data)
        return h.finalize().hex().upper().encode()

    def sm3hmac(data: bytes, key: bytes, *_: Any) -> bytes:
        h = chmac.HMAC(key, hashes.SM3())
        h.update(data)
        return h.finalize().hex().upper().encode()

    def sm4(encrypt: bool) -> Any:
        def run(mode: bytes, padding: bytes, data: bytes, key: bytes, iv: bytes = b"",
                *_: Any) -> bytes:
            try:
                return cipher("SM4-" + mode.decode(errors="replace").upper(),
                              padding.decode(errors="replace"), data, key, iv, encrypt)
            except CipherError as e:
                boot.log_c("E", "gmssl", f"sm4 {'encrypt' if encrypt else 'decrypt'} failed: {e}")
                return b""
        return run

    boot.firmware_module("gmssl", {
        "sm3": sm3, "sm3hmac": sm3hmac, "sm4encrypt": sm4(True), "sm4decrypt": sm4(False),
    })
