"""ctext: the C-string cut and the firmware's (mbedtls-rule) base64 decoder, alone and through
``string.fromBase64`` / ``crypto.base64_decode``, which the firmware decodes with that decoder
(not Python's lenient one, which the emulator used before)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from luatos_sim import Device
from luatos_sim.ctext import Base64BufferTooSmall, Base64Invalid, c_string, mbedtls_b64decode


def test_c_string_ends_at_the_first_nul() -> None:
    assert c_string(b"abc\0def\0") == b"abc"
    assert c_string(b"\0abc") == b""
    assert c_string(b"no nul") == b"no nul"
    assert c_string(b"") == b""


@pytest.mark.parametrize("text, plain", [
    (b"aGk/", b"hi?"),
    (b"QUJD", b"ABC"),
    (b"QQ==", b"A"),
    (b"QUI=", b"AB"),
    (b"QUJD\r\nQUJD\n", b"ABCABC"),  # line ends are skipped
    (b"QUJD  \nQUJD   ", b"ABCABC"),  # spaces before a line end or at the end too
    (b"QUJDQQ", b"ABC"),  # no padding: the partial last group is lost, not padded
    (b"QQ", b""),
    (b"Q", b""),
    (b"QUJD=", b"ABC"),  # one pad after whole groups: nothing more
    (b"", b""),
    (b"\n\r\n", b""),
])
def test_mbedtls_rules_accept(text: bytes, plain: bytes) -> None:
    assert mbedtls_b64decode(text) == plain


@pytest.mark.parametrize("text", [
    b"QU JD",  # a space inside a line
    b" QUJD",  # spaces before text on the line
    b"QUJD!",  # a byte outside the alphabet
    b"QUJD\r",  # CR without LF
    b"QUJD\tQUJD",
    b"QQ=A",  # data after padding
    b"Q===",  # three pads
    b"QUJ-",  # the URL-safe alphabet is not base64 here
    "QUJ\u00e9".encode(),
])
def test_mbedtls_rules_refuse(text: bytes) -> None:
    with pytest.raises(Base64Invalid):
        mbedtls_b64decode(text)


def test_buffer_too_small_reports_the_computed_length() -> None:
    text = base64.b64encode(bytes(range(50)))
    assert mbedtls_b64decode(text, 50) == bytes(range(50))
    with pytest.raises(Base64BufferTooSmall) as e:
        mbedtls_b64decode(text, 49)
    assert e.value.needed == 50
    # The length is computed from the character count, so a missing pad counts in it.
    with pytest.raises(Base64BufferTooSmall) as e2:
        mbedtls_b64decode(b"QUJDQQ", 3)
    assert e2.value.needed == 5  # (6 * 6 + 7) >> 3, though only 3 bytes would come out


def test_string_from_base64_and_crypto_decode_follow_the_firmware_decoder(
        boot: Callable[..., Device]) -> None:
    """Where Python's b64decode differed (it padded, skipped junk, or raised), the firmware's
    decoder gives an empty string or drops the partial group; both names behave the same."""
    dev = boot("""
local cases = {"aGk/", "QUJDQQ", "QQ", "Q", "QU JD", "QUJD!", "QUJD\\r\\nQQ==", "QUJD  \\n",
               "QQ=A", ""}
for i, c in ipairs(cases) do
  local a, b = string.fromBase64(c), crypto.base64_decode(c)
  log.info("b64", i, a == b, #a, "x" .. (a:toHex()))
end
log.info("end")
sys.run()
""")
    dev.run_until("I/user.end", within="5s")
    got = [ln.split()[1:] for ln in dev.lines() if ln.startswith("I/user.b64")]
    expect = [b"hi?", b"ABC", b"", b"", b"", b"", b"ABCA", b"ABC", b"", b""]
    assert [g[1] for g in got] == ["true"] * len(expect)
    assert [bytes.fromhex(g[3][1:]) for g in got] == expect
    assert [int(g[2]) for g in got] == [len(e) for e in expect]
