"""The serial log decoder: text lines, binary 0xA5 frames, filters and rendering."""

from __future__ import annotations

import json
import re
import struct

from luatos_tools.serial_log import (
    LogDecoder,
    RecordFilter,
    check_frame,
    crc16_a001,
    decode_tag,
    encode_binary_log,
    encode_frame,
    encode_tag,
    escape,
    format_record,
    render_printf,
    unescape,
)

BOOT_TEXT = (
    b"ap0:I(1):boot\r\n"
    b"luat:U(807):I/user.main fota_test 001.000.000\r\n"
    b"luat:I(11107):fota:\xe5\x8d\x87\xe7\xba\xa7\xe5\x8c\x85\xe7\xb1\xbb\xe5\x9e\x8b: type=1, expected_len=26056\r\n"
    b"luat:E(900):main:main.lua:3: boom\r\n"
    b"stack traceback:\r\n"
    b"\t[C]: in function 'error'\r\n"
    b"\tmain.lua:3: in main chunk\r\n"
    b"luat:U(1000):plain print 1.0\r\n"
)


def decode_all(data: bytes, chunk: int | None = None, **kw: object) -> tuple[list, list[str], LogDecoder]:
    lines: list[str] = []
    dec = LogDecoder(on_line=lines.append, **kw)  # type: ignore[arg-type]
    recs = []
    step = chunk or len(data) or 1
    for i in range(0, len(data), step):
        recs += dec.feed(data[i:i + step], 1.5)
    recs += dec.flush(2.0)
    return recs, lines, dec


def test_text_lines_become_records_with_levels_tags_and_device_ms() -> None:
    recs, lines, dec = decode_all(BOOT_TEXT)
    assert [(r.level, r.tag, r.device_ms) for r in recs] == [
        ("", "", None), ("I", "main", 807), ("I", "fota", 11107), ("E", "main", 900),
        ("", "", 1000)]
    assert recs[2].text == "升级包类型: type=1, expected_len=26056"
    assert recs[0].source == "sdk"
    assert recs[1].host_time == 1.5
    assert dec.mode == "text" and dec.frames == 0
    assert len(lines) == 8  # on_line sees every raw line, continuation lines too


def test_traceback_continuation_lines_join_the_error_record() -> None:
    recs, _, _ = decode_all(BOOT_TEXT)
    err = recs[3]
    assert err.text.splitlines() == ["main.lua:3: boom", "stack traceback:",
                                     "\t[C]: in function 'error'", "\tmain.lua:3: in main chunk"]


def test_lines_split_across_reads_including_inside_utf8_characters() -> None:
    whole, _, _ = decode_all(BOOT_TEXT)
    for size in (1, 2, 3, 5, 7, 64):
        recs, _, _ = decode_all(BOOT_TEXT, chunk=size)
        assert [(r.level, r.tag, r.text) for r in recs] == [(r.level, r.tag, r.text) for r in whole]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    recs, _, _ = decode_all(b"luat:U(5):bad \xff\xfe bytes\n")
    assert recs[0].text == "bad \ufffd\ufffd bytes"


def test_crc16_a001_vector_and_escaping_round_trip() -> None:
    assert crc16_a001(b"123456789") == 0xBB3D  # CRC-16/ARC check value
    raw = bytes([0xA5, 0xA6, 0x01, 0x02, 0xA6, 0xA5, 0x00])
    esc = escape(raw)
    assert b"\xa5" not in esc
    assert esc == bytes([0xA6, 0x01, 0xA6, 0x02, 0x01, 0x02, 0xA6, 0x02, 0xA6, 0x01, 0x00])
    assert unescape(esc) == raw


def test_frame_layout_is_a5_escaped_payload_crc_le_a5() -> None:
    payload = bytes(range(0xA0, 0xC0))
    fr = encode_frame(payload)
    assert fr[0] == 0xA5 and fr[-1] == 0xA5 and b"\xa5" not in fr[1:-1]
    inner = unescape(fr[1:-1])
    assert inner[:-2] == payload
    assert struct.unpack("<H", inner[-2:])[0] == crc16_a001(payload)
    assert check_frame(fr[1:-1]) == payload
    broken = bytearray(fr[1:-1])
    broken[5] ^= 1
    assert check_frame(bytes(broken)) is None


def test_tag_bits_round_trip() -> None:
    for tag in ("net", "fota", "A_b-1.x", "wlan"):
        assert decode_tag(encode_tag(tag)) == tag


def test_printf_rendering_best_effort() -> None:
    args = struct.pack("<i", -5) + struct.pack("<I", 0xBEEF) + b"hi\x00\x00" + struct.pack("<d", 2.5)
    assert render_printf("a=%d b=%04x s=%s f=%.1f %%", args) == "a=-5 b=beef s=hi f=2.5 %"
    # missing arguments: the spec stays as written
    assert render_printf("x=%d y=%s", struct.pack("<i", 7)) == "x=7 y=%s"
    assert render_printf("%lld|%u|%c|%p", struct.pack("<qiII", -2, -1, 65, 0x1234)) == \
        "-2|4294967295|A|0x00001234"
    assert render_printf("%*d|", struct.pack("<ii", 4, 9)) == "   9|"


def test_binary_frames_are_detected_and_decoded() -> None:
    data = (b"ROM text first\r\n"
            + encode_binary_log(1234, "W", "net", "rssi %d dBm ssid %s", -67, "home")
            + encode_binary_log(1300, "I", "", "luat:U(1300):I/user.main hi %s", "x")
            + encode_binary_log(1400, "E", "wifi", "fail"))
    for size in (None, 1, 3, 10):
        recs, lines, dec = decode_all(data, chunk=size)
        assert dec.mode == "binary" and dec.frames == 3 and dec.bad_frames == 0
        assert recs[0].text == "ROM text first"
        assert (recs[1].level, recs[1].tag, recs[1].text, recs[1].device_ms) == \
            ("W", "net", "rssi -67 dBm ssid home", 1234)
        assert recs[1].extra["binary"] is True
        # a LuatOS line inside a frame keeps its LuatOS meaning
        assert (recs[2].level, recs[2].tag, recs[2].text, recs[2].source) == ("I", "main", "hi x", "lua")
        assert (recs[3].level, recs[3].tag, recs[3].text) == ("E", "wifi", "fail")
        assert lines[1] == "luat:W(1234):net:rssi -67 dBm ssid home"


def test_bad_frames_are_counted_never_raised() -> None:
    good = encode_binary_log(10, "I", "a", "ok %d", 1)
    bad = bytearray(encode_binary_log(11, "I", "a", "bad %d", 2))
    bad[10] ^= 0xFF
    junk = b"\xa5\x00\x01\xa5" + bytes(range(256)) + b"\xa5"
    recs, _, dec = decode_all(good + bytes(bad) + junk + good)
    assert [r.text for r in recs] == ["ok 1", "ok 1"]
    assert dec.bad_frames >= 2


def test_a5_inside_chinese_text_does_not_switch_to_binary() -> None:
    # U+5305 is E5 8C 85; U+4E65 is E4 B9 A5: an A5 continuation byte inside text
    text = "luat:U(1):I/user.main \u4e65\u5305 ok\r\nluat:U(2):second \u4e65\r\n".encode()
    assert b"\xa5" in text
    recs, _, dec = decode_all(text, chunk=4)
    assert dec.mode == "text"
    assert [r.text for r in recs] == ["\u4e65\u5305 ok", "second \u4e65"]


def test_lone_a5_in_text_is_released_on_idle() -> None:
    dec = LogDecoder()
    out = dec.feed(b"luat:U(1):x\n\xa5 garbage\nluat:U(2):y\n")
    out += dec.idle()
    assert [r.text for r in out][-1] == "y"
    assert dec.mode == "text"


def test_binary_never_mode_keeps_text() -> None:
    frame = encode_binary_log(1, "I", "t", "m")
    recs, _, dec = decode_all(b"luat:U(1):a\n" + frame + b"\nluat:U(2):b\n", binary="never")
    assert dec.mode == "text" and dec.frames == 0
    assert recs[0].text == "a" and recs[-1].text == "b"


def test_filter_by_level_tag_and_regex() -> None:
    recs, _, _ = decode_all(BOOT_TEXT)
    assert [r.tag for r in recs if RecordFilter(level="W")(r)] == ["main"]  # only the E record
    assert [r.level for r in recs if RecordFilter(level="I")(r)] == ["", "I", "I", "E", ""]
    assert [r.tag for r in recs if RecordFilter(tags=("fo*",))(r)] == ["fota"]
    pat = re.compile(r"expected_len=\d+")
    assert [r.device_ms for r in recs if RecordFilter(pattern=pat)(r)] == [11107]


def test_format_record_plain_colour_and_json() -> None:
    recs, _, _ = decode_all(BOOT_TEXT)
    plain = format_record(recs[1], color=False, show_time=False)
    assert plain == "luat:U(807):I/user.main fota_test 001.000.000"
    coloured = format_record(recs[3], color=True, show_time=False)
    assert coloured.startswith("\x1b[1;31m") and coloured.endswith("\x1b[0m")
    stamped = format_record(recs[1], color=False, show_time=True)
    assert re.match(r"^\d\d:\d\d:\d\d\.\d{3} luat:U\(807\)", stamped)
    d = json.loads(recs[2].to_json())
    assert d["level"] == "I" and d["tag"] == "fota" and d["device_ms"] == 11107
