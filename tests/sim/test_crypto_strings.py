"""crypto's ciphers, CRCs, checksum, TOTP and hash streams, and the string extensions, against
known answers (the ciphers also against the `cryptography` package decrypting them)."""

from __future__ import annotations

from collections.abc import Callable

from luatos_sim import Device


def run(boot: Callable[..., Device], body: str) -> list[str]:
    dev = boot(body + '\nlog.info("end")\nsys.run()\n')
    dev.run_until("I/user.end", within="5s")
    return [ln[len("I/user."):] for ln in dev.lines() if ln.startswith("I/user.")]


def test_aes_and_des_round_trips_and_known_answers(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
local key, iv = "1234567890123456", "abcdefghijklmnop"
local e = crypto.cipher_encrypt("AES-128-ECB", "PKCS7", "hello", key)
log.info("ecb", e:toHex(), crypto.cipher_decrypt("AES-128-ECB", "PKCS7", e, key))
local c = crypto.cipher_encrypt("AES-128-CBC", "ZERO", "0123456789abcdef", key, iv)
log.info("cbc", #c, crypto.cipher_decrypt("AES-128-CBC", "ZERO", c, key, iv))
local t = crypto.cipher_encrypt("AES-256-CTR", "NONE", "odd length", string.rep("k", 32), iv)
log.info("ctr", #t, crypto.cipher_decrypt("AES-256-CTR", "NONE", t, string.rep("k", 32), iv))
local d = crypto.cipher_encrypt("DES-EDE3-CBC", "PKCS7", "des3", string.rep("d", 24), "12345678")
log.info("des3", #d, crypto.cipher_decrypt("DES-EDE3-CBC", "PKCS7", d, string.rep("d", 24), "12345678"))
log.info("badkey", crypto.cipher_encrypt("AES-128-ECB", "PKCS7", "x", "short") == "")
log.info("badname", crypto.cipher_encrypt("AES-999-XYZ", "PKCS7", "x", key) == "")
log.info("list", #crypto.cipher_list() > 10)
""")
    ecb, hex_text, plain = lines[0].split()
    assert ecb == "ecb" and len(hex_text) == 32 and plain == "hello"  # one padded block
    assert "cbc 16 0123456789abcdef" in lines
    assert "ctr 10 odd length" in lines
    assert "des3 8 des3" in lines
    assert "badkey true" in lines and "badname true" in lines and "list true" in lines


def test_aes_ecb_matches_the_library(boot: Callable[..., Device]) -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    lines = run(boot, """
log.info("hex", crypto.cipher_encrypt("AES-128-ECB", "PKCS7", "hello", "1234567890123456"):toHex())
""")
    dec = Cipher(algorithms.AES(b"1234567890123456"), modes.ECB()).decryptor()
    plain = dec.update(bytes.fromhex(lines[0].split()[1])) + dec.finalize()
    assert plain == b"hello" + b"\x0b" * 11


def test_crcs_checksum_totp_and_streams(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
log.info("crc16", crypto.crc16("MODBUS", "123456789"), crypto.crc16("XMODEM", "123456789"),
  crypto.crc16("CCITT-FALSE", "123456789"), crypto.crc16("IBM", "123456789"))
log.info("crc7", crypto.crc7("123456789", 0x12))
log.info("sum", crypto.checksum("\\1\\2\\4"), crypto.checksum("\\255\\2", 1))
log.info("totp", crypto.totp("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 59))
local s = crypto.hash_init("SHA256")
crypto.hash_update(s, "12345")
crypto.hash_update(s, "6789")
log.info("stream", crypto.hash_finish(s) == crypto.sha256("123456789"), type(s))
local h = crypto.hash_init("MD5", "key")
crypto.hash_update(h, "data")
log.info("hmac", crypto.hash_finish(h) == crypto.hmac_md5("data", "key"))
""")
    # the CRC catalogue's check values for "123456789"
    assert "crc16 19255 12739 10673 47933" in lines  # 0x4B37, 0x31C3, 0x29B1, 0xBB3D
    assert "crc7 117" in lines  # CRC-7/MMC (poly 0x09, left-aligned 0x12) check 0x75
    assert "sum 7 1" in lines
    assert "totp 287082" in lines  # RFC 6238 SHA-1 test vector at T=59 (6 digits)
    assert "stream true userdata" in lines and "hmac true" in lines


def test_string_extensions(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
log.info("url", string.urlEncode("a b&c=d/é*_.-"))
log.info("val", string.toValue("1203"):toHex(), select(2, string.toValue("1203")))
log.info("b32", string.toBase32("foobar"), string.fromBase32("MZXW6YTBOI======"),
  string.fromBase32("mzxw6ytboi"))
log.info("b64", string.toBase64("hi?"), string.fromBase64("aGk/"))
log.info("hex", ("AB"):toHex(), string.fromHex("4142"))
""")
    assert "url a+b%26c%3Dd%2F%C3%A9*_.-" in lines
    assert "val 01020003 4" in lines
    assert "b32 MZXW6YTBOI====== foobar foobar" in lines
    assert "b64 aGk/ hi?" in lines
    assert "hex 4142 AB" in lines
