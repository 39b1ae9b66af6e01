"""rsa: PKCS#1 v1.5 with PEM keys made here, every result checked with `cryptography` on the
host side, and the firmware's answers to bad keys and bad data (a warning, no value)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from luatos_sim import Device


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def pem_files(key: rsa.RSAPrivateKey) -> dict[str, str]:
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    pkcs1_public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.PKCS1)
    locked = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.BestAvailableEncryption(b"s3cret"))
    return {"priv.pem": private.decode(), "pub.pem": public.decode(),
            "pub1.pem": pkcs1_public.decode(), "locked.pem": locked.decode()}


def run(boot: Callable[..., Device], key: rsa.RSAPrivateKey, body: str) -> tuple[list[str], Device]:
    head = """
local PUB, PRIV = io.readFile("/luadb/pub.pem"), io.readFile("/luadb/priv.pem")
local PUB1, LOCKED = io.readFile("/luadb/pub1.pem"), io.readFile("/luadb/locked.pem")
local function n(...) return select("#", ...) end
"""
    dev = boot(head + body + '\nlog.info("end")\nsys.run()\n', files=pem_files(key))
    dev.run_until("I/user.end", within="10s")
    return [ln[len("I/user."):] for ln in dev.lines() if ln.startswith("I/user.")], dev


def hex_after(lines: list[str], tag: str) -> bytes:
    return bytes.fromhex(next(ln for ln in lines if ln.startswith(tag + " ")).split()[1])


def test_encrypt_decrypt_both_ways(boot: Callable[..., Device], key: rsa.RSAPrivateKey) -> None:
    from_host = key.public_key().encrypt(b"from the host", padding.PKCS1v15())
    lines, _ = run(boot, key, f"""
local c = rsa.encrypt(PUB, "abc")
log.info("c", c:toHex())
log.info("again", rsa.encrypt(PUB, "abc") ~= c, #rsa.encrypt(PUB1, ""))
log.info("round", rsa.decrypt(PRIV, c, ""), rsa.decrypt(PRIV, rsa.encrypt(PUB1, "x")))
log.info("host", rsa.decrypt(PRIV, ("{from_host.hex()}"):fromHex()))
log.info("locked", rsa.decrypt(LOCKED, c, "s3cret"))
""")
    ciphertext = hex_after(lines, "c")
    assert len(ciphertext) == 128
    assert key.decrypt(ciphertext, padding.PKCS1v15()) == b"abc"
    assert "again true 128" in lines  # random padding: a new ciphertext each time
    assert "round abc x" in lines
    assert "host from the host" in lines
    assert "locked abc" in lines


def test_sign_and_verify_agree_with_cryptography(boot: Callable[..., Device],
                                                 key: rsa.RSAPrivateKey) -> None:
    host_sig = key.sign(b"1234567890", padding.PKCS1v15(), hashes.SHA256())
    lines, _ = run(boot, key, f"""
log.info("md", rsa.MD_MD5, rsa.MD_SHA1, rsa.MD_SHA224, rsa.MD_SHA256)
local h1 = crypto.sha1("1234567890"):fromHex()
local sig = rsa.sign(PRIV, rsa.MD_SHA1, h1, "")
log.info("sig1", sig:toHex())
log.info("verify", rsa.verify(PUB, rsa.MD_SHA1, h1, sig), rsa.verify(PUB1, rsa.MD_SHA1, h1, sig))
log.info("same", rsa.sign(PRIV, rsa.MD_SHA1, h1) == sig)
local h256 = crypto.sha256("1234567890"):fromHex()
log.info("host", rsa.verify(PUB, rsa.MD_SHA256, h256, ("{host_sig.hex()}"):fromHex()))
log.info("sig256", rsa.sign(LOCKED, rsa.MD_SHA256, h256, "s3cret"):toHex())
log.info("raw", rsa.sign(PRIV, 0, "raw payload"):toHex())
log.info("wrong md", rsa.verify(PUB, rsa.MD_SHA256, h1, sig), rsa.verify(PUB, rsa.MD_SHA1, h256, sig))
log.info("tampered", rsa.verify(PUB, rsa.MD_SHA1, h1, sig:sub(1, -2) .. "\\0"))
log.info("length", rsa.verify(PUB, rsa.MD_SHA1, h1, sig .. "\\0"), rsa.verify(PUB, rsa.MD_SHA1, h1, sig:sub(2)))
log.info("longer hash", rsa.sign(PRIV, rsa.MD_SHA1, h1 .. "tail") == sig)
""")
    assert "md 3 4 5 6" in lines  # mbedtls 2.28's md types
    public = key.public_key()
    digest1 = hashlib.sha1(b"1234567890").digest()
    public.verify(hex_after(lines, "sig1"), digest1, padding.PKCS1v15(),
                  Prehashed(hashes.SHA1()))
    public.verify(hex_after(lines, "sig256"), b"1234567890", padding.PKCS1v15(), hashes.SHA256())
    # md 0: the bytes themselves in the PKCS#1 block, no DigestInfo
    raw = pow(int.from_bytes(hex_after(lines, "raw"), "big"), 65537,
              public.public_numbers().n).to_bytes(128, "big")
    assert raw == b"\0\1" + b"\xff" * (128 - 3 - 11) + b"\0raw payload"
    assert "verify true true" in lines and "same true" in lines and "host true" in lines
    assert "wrong md false false" in lines
    assert "tampered false" in lines
    assert "length false false" in lines  # a signature must be exactly the key's size
    assert "longer hash true" in lines  # mbedtls reads the digest's own length


def test_bad_keys_and_data_warn_and_return_nothing(boot: Callable[..., Device],
                                                   key: rsa.RSAPrivateKey) -> None:
    lines, dev = run(boot, key, """
local c = rsa.encrypt(PUB, "abc")
log.info("garbage key", n(rsa.encrypt("not a key", "abc")), n(rsa.verify("nope", 4, "h", "s")))
log.info("private as public", n(rsa.encrypt(PRIV, "abc")))
log.info("public as private", n(rsa.decrypt(PUB, c)), n(rsa.sign(PUB, 4, "h")))
log.info("too long", n(rsa.encrypt(PUB, string.rep("x", 118))), #rsa.encrypt(PUB, string.rep("x", 117)))
log.info("length", n(rsa.decrypt(PRIV, c:sub(2))))
log.info("padding", n(rsa.decrypt(PRIV, string.rep("\\1", 128))))
log.info("modulus", n(rsa.decrypt(PRIV, string.rep("\\255", 128))))
log.info("password", n(rsa.decrypt(LOCKED, c)), n(rsa.decrypt(LOCKED, c, "wrong")))
log.info("unknown md", n(rsa.sign(PRIV, 42, "hash")), rsa.verify(PUB, 42, "hash", c))
log.info("raw limit", n(rsa.sign(PRIV, 0, string.rep("x", 118))), #rsa.sign(PRIV, 0, string.rep("x", 117)))
log.info("args", pcall(rsa.encrypt, PUB))
log.info("md arg", pcall(rsa.sign, PRIV, "sha1", "h"))
log.info("hash arg", pcall(rsa.verify, "not a key", 4, nil, "s"))
""")
    assert "garbage key 0 0" in lines
    assert "private as public 0" in lines
    assert "public as private 0 0" in lines
    assert "too long 0 128" in lines  # k - 11 bytes at most
    assert "length 0" in lines and "padding 0" in lines and "modulus 0" in lines
    assert "password 0 0" in lines
    assert "unknown md 0 false" in lines
    assert "raw limit 0 128" in lines
    assert "args false bad argument #2 to 'encrypt' (string expected, got no value)" in lines
    assert "md arg false bad argument #2 to 'sign' (number expected, got string)" in lines
    assert "hash arg false bad argument #3 to 'verify' (string expected, got nil)" in lines
    warnings = [r.text for r in dev.log if r.tag == "rsa" and r.level == "W"]
    assert warnings == [
        "bad public key 3D62", "bad public key 3D62", "bad public key 3D62",
        "bad private key 3D00", "bad private key 3D00",
        "mbedtls_rsa_pkcs1_encrypt 4080",
        "data len NOT match expect 128 but 127",
        "mbedtls_rsa_pkcs1_decrypt 4100", "mbedtls_rsa_pkcs1_decrypt 4304",
        "bad private key 3C00", "bad private key 3B80",
        "mbedtls_pk_sign 4080", "mbedtls_pk_sign 4080",
    ], dev.lines()


def test_an_ec_key_signs_with_ecdsa(boot: Callable[..., Device]) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "ec.pem": ec_key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()).decode(),
        "ecpub.pem": ec_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
    }
    dev = boot("""
local EC, ECPUB = io.readFile("/luadb/ec.pem"), io.readFile("/luadb/ecpub.pem")
local h = crypto.sha256("msg"):fromHex()
local sig = rsa.sign(EC, rsa.MD_SHA256, h)
log.info("sig", sig:toHex())
log.info("ok", rsa.verify(ECPUB, rsa.MD_SHA256, h, sig), rsa.verify(ECPUB, rsa.MD_SHA256, h:reverse(), sig))
log.info("encrypt", select("#", rsa.encrypt(ECPUB, "x")))
log.info("end")
sys.run()
""", files=files)
    dev.run_until("I/user.end", within="5s")
    lines = [ln[len("I/user."):] for ln in dev.lines() if ln.startswith("I/user.")]
    ec_key.public_key().verify(hex_after(lines, "sig"), hashlib.sha256(b"msg").digest(),
                               ec.ECDSA(Prehashed(hashes.SHA256())))
    assert "ok true false" in lines
    assert "encrypt 0" in lines
    assert any(ln.endswith("mbedtls_rsa_pkcs1_encrypt 3F00") for ln in dev.lines())
