"""rsa: PKCS#1 v1.5 encryption and signatures with PEM keys, as luat_lib_rsa.c does them over
mbedtls 2.28's ``pk`` layer.

What a script sees of mbedtls is kept: only PEM keys are read (the firmware hands mbedtls the
string with its NUL, so a DER key never parses), a failure is a warning line naming the mbedtls
error code and no return value at all, ``sign``/``verify`` take the digest the script computed
(``md`` is mbedtls's digest number, 0 for a raw PKCS#1 block), a signature is deterministic.
An EC key goes through the same calls: ``sign``/``verify`` do ECDSA, ``encrypt``/``decrypt``
refuse it. Keys are read by ``cryptography``; the PKCS#1 v1.5 blocks are built here, so the
checks are mbedtls's own (explicit padding errors, a signature longer than the key refused)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ..cfunc import check_integer
from ..ctext import c_string

if TYPE_CHECKING:
    from ..vm import Boot

# mbedtls 2.28's mbedtls_md_type_t, which the firmware passes through unchanged: the module's
# constants are these numbers.
MD_NONE, MD_MD5, MD_SHA1, MD_SHA224, MD_SHA256, MD_SHA384, MD_SHA512, MD_RIPEMD160 = (
    0, 3, 4, 5, 6, 7, 8, 9)

# The DER DigestInfo prefix of each digest (RFC 8017 section 9.2, note 1) and the digest size.
_DIGEST_INFO: dict[int, tuple[bytes, int]] = {
    MD_MD5: (bytes.fromhex("3020300c06082a864886f70d020505000410"), 16),
    MD_SHA1: (bytes.fromhex("3021300906052b0e03021a05000414"), 20),
    MD_SHA224: (bytes.fromhex("302d300d06096086480165030402040500041c"), 28),
    MD_SHA256: (bytes.fromhex("3031300d060960864801650304020105000420"), 32),
    MD_SHA384: (bytes.fromhex("3041300d060960864801650304020205000430"), 48),
    MD_SHA512: (bytes.fromhex("3051300d060960864801650304020305000440"), 64),
    MD_RIPEMD160: (bytes.fromhex("3021300906052b2403020105000414"), 20),
}
# ECDSA signs the digest's bytes whatever made them: a hash of the same size stands in.
_EC_PREHASH: dict[int, hashes.HashAlgorithm] = {
    16: hashes.MD5(), 20: hashes.SHA1(), 28: hashes.SHA224(), 32: hashes.SHA256(),
    48: hashes.SHA384(), 64: hashes.SHA512()}

# mbedtls error codes (negated, as the firmware's "%04X" prints them)
ERR_PEM_INVALID_DATA = 0x112C  # a PEM block whose body does not decode
ERR_PK_TYPE_MISMATCH = 0x3F00  # encrypt/decrypt with a key that is not RSA
ERR_PK_BAD_INPUT_DATA = 0x3E80
ERR_PK_KEY_INVALID_FORMAT = 0x3D00  # no private key in the text
ERR_PK_PUBKEY_NOT_FOUND = 0x3D62  # no public key in the text (the DER fallback's answer)
ERR_PK_PASSWORD_REQUIRED = 0x3C00
ERR_PK_PASSWORD_MISMATCH = 0x3B80
ERR_RSA_BAD_INPUT_DATA = 0x4080
ERR_RSA_INVALID_PADDING = 0x4100
ERR_RSA_PRIVATE_FAILED_BAD_INPUT = 0x4304  # ciphertext not below the modulus

_PUBLIC_HEADERS = (b"-----BEGIN PUBLIC KEY-----", b"-----BEGIN RSA PUBLIC KEY-----")
_PRIVATE_HEADERS = (b"-----BEGIN RSA PRIVATE KEY-----", b"-----BEGIN EC PRIVATE KEY-----",
                    b"-----BEGIN PRIVATE KEY-----", b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
_ENCRYPTED_MARKS = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")


class MbedtlsError(Exception):
    """An mbedtls failure: ``code`` is the negated error code the firmware logs."""

    def __init__(self, code: int) -> None:
        super().__init__(f"{code:04X}")
        self.code = code


def load_public(key: bytes) -> Any:
    text = c_string(key)  # mbedtls reads the PEM as a C string
    if not any(h in text for h in _PUBLIC_HEADERS):
        raise MbedtlsError(ERR_PK_PUBKEY_NOT_FOUND)
    try:
        return serialization.load_pem_public_key(text)
    except (ValueError, TypeError):
        raise MbedtlsError(ERR_PEM_INVALID_DATA) from None


def load_private(key: bytes, password: bytes) -> Any:
    text = c_string(key)  # mbedtls reads the PEM as a C string
    if not any(h in text for h in _PRIVATE_HEADERS):
        raise MbedtlsError(ERR_PK_KEY_INVALID_FORMAT)
    encrypted = any(m in text for m in _ENCRYPTED_MARKS)
    if encrypted and not password:
        raise MbedtlsError(ERR_PK_PASSWORD_REQUIRED)
    try:
        return serialization.load_pem_private_key(text, password if encrypted else None)
    except (ValueError, TypeError):
        raise MbedtlsError(ERR_PK_PASSWORD_MISMATCH if encrypted
                           else ERR_PK_KEY_INVALID_FORMAT) from None


def _size(n: int) -> int:
    return (n.bit_length() + 7) // 8


def pkcs1_sign_block(md: int, digest: bytes, size: int) -> bytes:
    """EMSA-PKCS1-v1_5 as mbedtls builds it: with a digest type, its DigestInfo over the
    digest's own length of bytes (a longer input is cut; the device would read past a shorter
    one, here it is zero-filled: docs/defaults.md); md 0 signs the bytes as given."""
    if md == MD_NONE:
        payload = digest
    elif md in _DIGEST_INFO:
        prefix, length = _DIGEST_INFO[md]
        payload = prefix + digest[:length].ljust(length, b"\0")
    else:
        raise MbedtlsError(ERR_RSA_BAD_INPUT_DATA)
    if len(payload) + 11 > size:
        raise MbedtlsError(ERR_RSA_BAD_INPUT_DATA)
    return b"\0\1" + b"\xff" * (size - len(payload) - 3) + b"\0" + payload


def encrypt(public: Any, data: bytes) -> bytes:
    if not isinstance(public, rsa_keys.RSAPublicKey):
        raise MbedtlsError(ERR_PK_TYPE_MISMATCH)
    if len(data) + 11 > _size(public.public_numbers().n):
        raise MbedtlsError(ERR_RSA_BAD_INPUT_DATA)
    return public.encrypt(data, padding.PKCS1v15())  # random non-zero padding, as mbedtls


def decrypt_block(private: rsa_keys.RSAPrivateKey, data: bytes) -> bytes:
    numbers = private.private_numbers()
    n = numbers.public_numbers.n
    c = int.from_bytes(data, "big")
    if c >= n:
        raise MbedtlsError(ERR_RSA_PRIVATE_FAILED_BAD_INPUT)
    block = pow(c, numbers.d, n).to_bytes(_size(n), "big")
    end = block.find(b"\0", 2)
    if block[:2] != b"\0\2" or end < 0 or end - 2 < 8:
        raise MbedtlsError(ERR_RSA_INVALID_PADDING)
    return block[end + 1:]


def sign(private: Any, md: int, digest: bytes) -> bytes:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        prehashed = _ec_digest(md, digest)
        return private.sign(prehashed, ec.ECDSA(Prehashed(_EC_PREHASH[len(prehashed)])))
    if not isinstance(private, rsa_keys.RSAPrivateKey):
        raise MbedtlsError(ERR_PK_TYPE_MISMATCH)
    numbers = private.private_numbers()
    n = numbers.public_numbers.n
    block = pkcs1_sign_block(md, digest, _size(n))
    return pow(int.from_bytes(block, "big"), numbers.d, n).to_bytes(_size(n), "big")


def verify(public: Any, md: int, digest: bytes, signature: bytes) -> bool:
    if isinstance(public, ec.EllipticCurvePublicKey):
        try:
            prehashed = _ec_digest(md, digest)
            public.verify(signature, prehashed, ec.ECDSA(Prehashed(_EC_PREHASH[len(prehashed)])))
        except (InvalidSignature, MbedtlsError, ValueError):
            return False
        return True
    if not isinstance(public, rsa_keys.RSAPublicKey):
        return False
    numbers = public.public_numbers()
    size = _size(numbers.n)
    if len(signature) != size:
        return False  # shorter: VERIFY_FAILED; longer: SIG_LEN_MISMATCH, even if it checks out
    s = int.from_bytes(signature, "big")
    if s >= numbers.n:
        return False
    try:
        expected = pkcs1_sign_block(md, digest, size)
    except MbedtlsError:
        return False
    return pow(s, numbers.e, numbers.n).to_bytes(size, "big") == expected


def _ec_digest(md: int, digest: bytes) -> bytes:
    if md == MD_NONE:
        if len(digest) not in _EC_PREHASH:
            raise MbedtlsError(ERR_PK_BAD_INPUT_DATA)
        return digest
    if md not in _DIGEST_INFO:
        raise MbedtlsError(ERR_PK_BAD_INPUT_DATA)
    length = _DIGEST_INFO[md][1]
    return digest[:length].ljust(length, b"\0")


def _strings(*values: Any) -> None:
    """luaL_checklstring on each: c_function then names the first bad one as the C code does
    (the firmware checks every argument before it reads the key)."""
    if not all(isinstance(v, bytes) for v in values):
        raise TypeError("string expected")


def install(boot: Boot) -> None:
    def warn(text: str) -> tuple[()]:
        boot.log_c("W", "rsa", text)
        return ()  # the firmware returns no value at all

    def lua_encrypt(key: bytes, data: bytes, *_: Any) -> bytes | tuple[()]:
        _strings(key, data)
        try:
            public = load_public(key)
        except MbedtlsError as e:
            return warn(f"bad public key {e.code:04X}")
        try:
            return encrypt(public, data)
        except MbedtlsError as e:
            return warn(f"mbedtls_rsa_pkcs1_encrypt {e.code:04X}")

    def lua_decrypt(key: bytes, data: bytes, password: bytes = b"", *_: Any) -> Any:
        _strings(key, data, b"" if password is None else password)
        try:
            private = load_private(key, password)
        except MbedtlsError as e:
            return warn(f"bad private key {e.code:04X}")
        size = _key_size(private)
        if size != len(data):
            return warn(f"data len NOT match expect {size} but {len(data)}")
        if not isinstance(private, rsa_keys.RSAPrivateKey):
            return warn(f"mbedtls_rsa_pkcs1_decrypt {ERR_PK_TYPE_MISMATCH:04X}")
        try:
            return decrypt_block(private, data)
        except MbedtlsError as e:
            return warn(f"mbedtls_rsa_pkcs1_decrypt {e.code:04X}")

    def lua_sign(key: bytes, md: int, digest: bytes, password: bytes = b"", *_: Any) -> Any:
        md = check_integer(md)
        _strings(key, digest, b"" if password is None else password)
        try:
            private = load_private(key, password)
        except MbedtlsError as e:
            return warn(f"bad private key {e.code:04X}")
        try:
            return sign(private, md, digest)
        except MbedtlsError as e:
            return warn(f"mbedtls_pk_sign {e.code:04X}")

    def lua_verify(key: bytes, md: int, digest: bytes, signature: bytes, *_: Any) -> Any:
        md = check_integer(md)
        _strings(key, digest, signature)
        try:
            public = load_public(key)
        except MbedtlsError as e:
            return warn(f"bad public key {e.code:04X}")
        return verify(public, md, digest, signature)

    boot.firmware_module("rsa", {
        "encrypt": lua_encrypt, "decrypt": lua_decrypt, "sign": lua_sign, "verify": lua_verify,
    }, {"MD_MD5": MD_MD5, "MD_SHA1": MD_SHA1, "MD_SHA224": MD_SHA224, "MD_SHA256": MD_SHA256})


def _key_size(private: Any) -> int:
    """What mbedtls_pk_get_bitlen gives, in bytes: the modulus, or the curve's order."""
    if isinstance(private, rsa_keys.RSAPrivateKey):
        return (private.key_size + 7) // 8
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return (private.curve.key_size + 7) // 8
    return 0

