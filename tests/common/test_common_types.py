"""Shared types: versions and log records (the emulator, the tail and the server agree)."""

from __future__ import annotations

import pytest

from luatos_common.logline import LUA, OTHER, SDK, C, LogStreamParser, parse_uart_line
from luatos_common.version import FotaVersion, ScriptVersion, VersionError, parse_core


def test_script_version_to_libfota2_version_keeps_leading_zeros():
    v = ScriptVersion.parse("001.999.000")
    assert str(v.fota_version("V2001")) == "2001.001.000"
    assert v.fota_version(2001).script_key == (1, 0)


def test_versions_compare_numerically_and_ignore_raw_text():
    assert FotaVersion.parse("2001.1.2") == FotaVersion.parse("2001.001.002")
    assert FotaVersion.parse("2001.001.010") > FotaVersion.parse("2001.001.009")
    assert ScriptVersion.parse("001.000.001") > ScriptVersion.parse("001.000.000")


@pytest.mark.parametrize("bad", ["1.2", "a.b.c", "001.000.000 ", "１.２.３", "", "1.2.3.4"])
def test_bad_versions_are_refused_with_the_value(bad):
    if bad == "001.000.000 ":
        assert str(ScriptVersion.parse(bad)) == "001.000.000"
        return
    with pytest.raises(VersionError, match="xxx.yyy.zzz"):
        ScriptVersion.parse(bad)


def test_core_versions():
    assert parse_core("V2001") == parse_core("2001") == parse_core(2001) == 2001
    with pytest.raises(VersionError):
        parse_core("2001a")


def test_uart_lines_parse_into_records():
    lua = parse_uart_line("luat:U(807):I/user.main fota_test 001.000.000")
    assert (lua.source, lua.level, lua.tag, lua.text, lua.device_ms) == \
        (LUA, "I", "main", "fota_test 001.000.000", 807)
    c = parse_uart_line("luat:I(11107):fota:升级包类型: type=1, expected_len=26056")
    assert (c.source, c.level, c.tag, c.text) == (C, "I", "fota", "升级包类型: type=1, expected_len=26056")
    assert c.uart() == "luat:I(11107):fota:升级包类型: type=1, expected_len=26056"
    assert lua.uart() == "luat:U(807):I/user.main fota_test 001.000.000"
    assert parse_uart_line("ap1:mac:W(474):something").source == SDK
    assert parse_uart_line("luat:U(9):plain print").level == ""
    assert parse_uart_line("random noise").source == OTHER


def test_tracebacks_join_their_error_record():
    p = LogStreamParser()
    recs = p.parse_all([
        "luat:U(900):E/user.coroutine.resume main.lua:3: boom",
        "stack traceback:",
        "\t[C]: in function 'error'",
        "luat:U(901):I/user.next x",
    ])
    assert len(recs) == 2
    assert recs[0].text.endswith("\t[C]: in function 'error'")
    assert recs[1].line == "I/user.next x"


def test_reported_version_from_a_push_login():
    from luatos_common.version import reported_version
    assert str(reported_version("001.000.001", "V2001")) == "2001.001.001"
    assert str(reported_version("2001.001.001", "V2001")) == "2001.001.001"
    assert str(reported_version("2001.001.001")) == "2001.001.001"
