"""xxtea: the firmware's XXTEA (xxtea-c framing: a length word after the data, a C-string key
cut to 16 bytes), checked against an XXTEA written here from the algorithm's description."""

from __future__ import annotations

import struct
from collections.abc import Callable

from luatos_sim import Device

DELTA = 0x9E3779B9


def reference_encrypt(data: bytes, key: bytes, length: int | None = None) -> bytes:
    """Corrected block TEA (Wheeler and Needham), words little-endian, with the xxtea-c framing:
    data zero-filled to whole words, then its length as one more word; key cut at NUL and 16.
    ``length`` forges that word."""
    k = struct.unpack("<4I", key.split(b"\0")[0][:16].ljust(16, b"\0"))
    padded = data + b"\0" * (-len(data) % 4)
    v = [*struct.unpack(f"<{len(padded) // 4}I", padded), len(data) if length is None else length]
    n, z, total = len(v), v[-1], 0
    for _ in range(6 + 52 // n):
        total = (total + DELTA) & 0xFFFFFFFF
        e = (total >> 2) & 3
        for p in range(n):
            y = v[(p + 1) % n]
            mx = ((((z >> 5) ^ (y << 2)) + ((y >> 3) ^ (z << 4)))
                  ^ ((total ^ y) + (k[(p & 3) ^ e] ^ z))) & 0xFFFFFFFF
            v[p] = (v[p] + mx) & 0xFFFFFFFF
            z = v[p]
    return struct.pack(f"<{n}I", *v)


def test_reference_matches_the_xxtea_package_framing() -> None:
    """The reference above agrees with the xxtea package's own length-word framing (a code
    path the binding does not use: it frames the words itself)."""
    import xxtea

    key = b"0123456789abcdef"
    for n in (1, 4, 7, 12, 100):
        data = bytes(range(n))
        assert reference_encrypt(data, key) == xxtea.encrypt(
            data, key, padding=xxtea.Padding.LENGTH_WORD_SUFFIX)


def run(boot: Callable[..., Device], body: str) -> list[str]:
    dev = boot(body + '\nlog.info("end")\nsys.run()\n')
    dev.run_until("I/user.end", within="5s")
    return [ln[len("I/user."):] for ln in dev.lines() if ln.startswith("I/user.")]


def test_known_answers_and_round_trip(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
local text = "Hello World!"
local e = xxtea.encrypt(text, "07946")
log.info("demo", #e, e:toHex(), xxtea.decrypt(e, "07946"))
for _, n in ipairs({1, 3, 4, 5, 8, 33}) do
  local s = string.rep("\\1", n)
  local c = xxtea.encrypt(s, "0123456789abcdef")
  log.info("len", n, #c, c:toHex(), xxtea.decrypt(c, "0123456789abcdef") == s)
end
log.info("type", type(xxtea.encrypt), type(e))
""")
    expected = reference_encrypt(b"Hello World!", b"07946")
    assert f"demo 16 {expected.hex().upper()} Hello World!" in lines
    for n in (1, 3, 4, 5, 8, 33):
        c = reference_encrypt(b"\1" * n, b"0123456789abcdef")
        # whole words for the data plus the length word; no block padding
        assert len(c) == ((n + 3) // 4 + 1) * 4
        assert f"len {n} {len(c)} {c.hex().upper()} true" in lines
    assert "type function string" in lines


def test_key_is_a_c_string_cut_to_16_bytes(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
local k16 = "0123456789abcdef"
log.info("long", xxtea.encrypt("data", k16 .. "ignored") == xxtea.encrypt("data", k16))
log.info("nul", xxtea.encrypt("data", "ab\\0cd") == xxtea.encrypt("data", "ab"))
log.info("zero", xxtea.encrypt("data", "ab") == xxtea.encrypt("data", "ab\\0\\0\\0"))
log.info("differs", xxtea.encrypt("data", "ab") ~= xxtea.encrypt("data", "abc"))
log.info("number key", xxtea.decrypt(xxtea.encrypt("data", 1234), "1234"))
""")
    assert lines[:5] == ["long true", "nul true", "zero true", "differs true", "number key data"]


def test_failures_return_nothing(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
local c = xxtea.encrypt("some secret text", "key")
log.info("empty", select("#", xxtea.encrypt("", "key")), select("#", xxtea.decrypt("", "key")))
log.info("one word", select("#", xxtea.decrypt("abcd", "key")))
log.info("wrong key", select("#", xxtea.decrypt(c, "other")))
log.info("cut", select("#", xxtea.decrypt(c:sub(1, -5), "key")))
log.info("ragged", xxtea.decrypt(c .. "", "key"), select("#", xxtea.decrypt(c:sub(1, -2), "key")))
log.info("nil key", pcall(xxtea.encrypt, "x"))
log.info("nil data", pcall(xxtea.decrypt, nil, "k"))
""")
    assert "empty 0 0" in lines
    assert "one word 0" in lines
    assert "wrong key 0" in lines
    assert "cut 0" in lines
    assert "ragged some secret text 0" in lines
    assert "nil key false bad argument #2 to 'encrypt' (string expected, got no value)" in lines
    assert "nil data false bad argument #1 to 'decrypt' (string expected, got nil)" in lines


def test_decrypts_what_an_independent_encrypter_made(boot: Callable[..., Device]) -> None:
    blob = reference_encrypt("你好, LuatOS".encode(), b"device-key")
    lines = run(boot, f"""
log.info("plain", xxtea.decrypt(("{blob.hex()}"):fromHex(), "device-key"))
""")
    assert "plain 你好, LuatOS" in lines


def test_length_word_must_fit_the_last_word(boot: Callable[..., Device]) -> None:
    """xxtea-c accepts a length word that ends inside the last data word, nothing else."""
    blobs = {n: reference_encrypt(b"ABCDEFGH", b"k", length=n).hex() for n in (4, 5, 8, 9)}
    lines = run(boot, "\n".join(
        f'log.info("w{n}", select("#", xxtea.decrypt(("{h}"):fromHex(), "k")),'
        f' xxtea.decrypt(("{h}"):fromHex(), "k"))' for n, h in blobs.items()))
    assert "w4 0" in lines and "w9 0" in lines
    assert "w5 1 ABCDE" in lines and "w8 1 ABCDEFGH" in lines
