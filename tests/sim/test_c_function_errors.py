"""Errors from firmware (C) functions look like the device's: a string, with the caller's
position, worded as luaL_argerror words it; and numbers pass where strings are expected."""

from __future__ import annotations

import pytest

from luatos_sim.cfunc import BadArgument, c_function, error_message, lua_number_text


def test_pcall_of_a_bad_argument_gives_a_string_naming_function_and_argument(boot):
    dev = boot("""
        local ok, err = pcall(crypto.md5, nil)
        log.info("md5", ok, type(err), err)
        ok, err = pcall(crypto.hmac_md5, "data", {})
        log.info("hmac", ok, type(err), err)
        ok, err = pcall(string.toHex, nil)
        log.info("hex", ok, type(err), err)
        ok, err = pcall(uart.write, 1, {})
        log.info("uart", ok, type(err), err)
        -- scripts match on the text, as they do on the device
        log.info("none", select(2, pcall(crypto.md5)))
        log.info("find", select(2, pcall(crypto.md5)):find("string expected", 1, true) ~= nil)
        sys.run()
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert "I/user.md5 false string bad argument #1 to 'md5' (string expected, got nil)" in lines
    assert "I/user.hmac false string bad argument #2 to 'hmac_md5' (string expected, got table)" in lines
    assert "I/user.hex false string bad argument #1 to 'toHex' (string expected, got nil)" in lines
    assert "I/user.uart false string bad argument #2 to 'write' (string expected, got table)" in lines
    assert "I/user.none bad argument #1 to 'md5' (string expected, got no value)" in lines
    assert "I/user.find true" in lines


def test_uncaught_bad_argument_carries_the_callers_position_into_the_exit_line(boot):
    dev = boot("""
        sys.taskInit(function()
          sys.wait(10)
          local digest = crypto.md5(nil)
        end)
        sys.run()
    """)
    dev.run_until("Lua VM exit", within="5s")
    text = "main.lua:3: bad argument #1 to 'md5' (string expected, got nil)"
    assert any(r.line.startswith("E/user.coroutine.resume " + text) for r in dev.log)
    assert any(r.line.startswith("main:" + text) for r in dev.log)  # the exit's error line


def test_numbers_are_accepted_where_strings_go(boot):
    dev = boot("""
        log.info("same", crypto.md5(5) == crypto.md5("5"), crypto.md5(1.5) == crypto.md5("1.5"))
        log.info("hex", string.toHex(255))
        log.info("unhex", string.fromHex(3132))
        log.info("ends", string.endsWith(12345, 45), string.startsWith("2.0x", 2.0))
        sys.run()
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert "I/user.same true true" in lines
    assert "I/user.hex 323535 6" in lines
    assert "I/user.unhex 12" in lines
    assert "I/user.ends true true" in lines


def test_reboot_from_a_firmware_call_inside_pcall_still_stops_the_boot(boot):
    dev = boot("""
        sys.taskInit(function()
          sys.wait(100)
          local ok = pcall(rtos.reboot)
          log.info("after", "must not run", ok)
        end)
        sys.run()
    """)
    dev.run_for("3s")
    assert not any("must not run" in r.line for r in dev.log)
    assert len(dev.boots) >= 2


# -- the adapter itself -----------------------------------------------------------------------


def test_adapter_explains_only_failures_and_passes_other_errors_through() -> None:
    def setup(pin: int, mode: bytes, pull: int | None = None) -> int:
        if isinstance(pin, bool) or not isinstance(pin, int) or not isinstance(mode, bytes):
            raise TypeError("python-level detail")
        if pin > 100:
            raise ValueError("pin out of range")
        return pin

    f = c_function(setup, "setup")
    assert f(5, b"in", None, "extra") == 5  # extra ignored, nil for a "| None" parameter is fine
    assert f(5.0, b"in") == 5 and isinstance(f(5.0, b"in"), int)  # 5.0 is the integer 5 to C
    with pytest.raises(BadArgument, match=r"^bad argument #1 to 'setup' \(number has no integer representation\)$"):
        f(5.5, b"in")
    with pytest.raises(BadArgument, match=r"^bad argument #1 to 'setup' \(number expected, got boolean\)$"):
        f(True, b"in")
    with pytest.raises(BadArgument, match=r"^bad argument #2 to 'setup' \(string expected, got no value\)$"):
        f(5)
    with pytest.raises(ValueError, match="pin out of range"):  # types fine: the error is the function's own
        f(101, b"in")
    assert f(7, 42) == 7  # 42 became b"42" before the call


def test_lua_number_text_matches_lua_tostring() -> None:
    assert lua_number_text(5) == b"5"
    assert lua_number_text(-3) == b"-3"
    assert lua_number_text(2.0) == b"2.0"
    assert lua_number_text(1.5) == b"1.5"
    assert lua_number_text(1e100) == b"1e+100"
    assert lua_number_text(0.1) == b"0.1"
    assert lua_number_text(float("inf")) == b"inf"


def test_error_message_wants_position_for_python_errors_only() -> None:
    assert error_message(BadArgument("bad argument #1 to 'x' (string expected, got nil)")) == (
        "bad argument #1 to 'x' (string expected, got nil)", True)
    assert error_message(KeyError("k")) == ("KeyError: 'k'", True)


def test_ctrl_c_inside_a_firmware_call_reaches_the_host_even_through_pcall(boot, monkeypatch) -> None:
    import luatos_sim.modules.crypto as crypto_module

    class Interrupting:
        def new(self, *_: object) -> None:
            raise KeyboardInterrupt

    dev = boot("""
        sys.taskInit(function()
          sys.wait(10)
          local ok, err = pcall(crypto.md5, "x")
          log.info("swallowed", ok, err)
        end)
        sys.run()
    """)
    monkeypatch.setattr(crypto_module, "hashlib", Interrupting())
    with pytest.raises(KeyboardInterrupt):
        dev.run_for("2s")
    assert not any("swallowed" in r.line for r in dev.log)
    assert error_message(KeyboardInterrupt()) is None and error_message(SystemExit(1)) is None


# Strings Python's int()/float() read but Lua does not, and the other way round, plus the
# ordinary ones: Lua 5.3's own tonumber (the same interpreter the emulator runs) is the oracle.
NUMERIC_TEXTS = ["10", " 10 ", "+7", "-0", "0x10", "-0x10", "0xffffffffffffffff", "1e3", ".5", "5.",
                 "0x1p4", "0x.8", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
                 "1_000", "0b11", "0o7", "inf", "nan", "-inf", "infinity", "1e", "", " ", "0x", "12 x",
                 "\t42\n", "1.5e+2", "0X1P-1"]


def test_numeric_strings_read_as_lua_reads_them() -> None:
    import lupa.lua53 as lua53

    from luatos_sim.cfunc import lua_str2number

    lua = lua53.LuaRuntime()
    tonumber = lua.eval("function(s) local n = tonumber(s); return n, math.type(n) end")
    for text in NUMERIC_TEXTS:
        want, kind = tonumber(text.encode())
        got = lua_str2number(text)
        assert (got, type(got).__name__ if got is not None else None) == (
            want, {"integer": "int", "float": "float", None: None}[kind]), text


def test_integer_arguments_follow_luaL_optinteger(boot):
    dev = boot("""
        local function try(f, ...) local r = table.pack(pcall(f, ...)); return r[1], r[2] end
        log.info("str", try(errDump.config, true, "600"))
        log.info("huge", try(errDump.config, true, 1e300))
        log.info("frac", try(errDump.dump, nil, 1.5))
        log.info("inf", try(uart.read, 2, math.huge))
        log.info("nan", try(uart.read, 2, 0/0))
        log.info("under", try(iotauth.baidu, "p", "d", "k", "md5", "1_000"))
        log.info("hexstr", try(iotauth.baidu, "p", "d", "k", "md5", "0x10"))
        sys.run()
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert "I/user.str true nil" in lines  # config returns no value
    assert "I/user.huge false bad argument #2 to 'config' (number has no integer representation)" in lines
    assert "I/user.frac false bad argument #2 to 'dump' (number has no integer representation)" in lines
    assert "I/user.inf false bad argument #2 to 'read' (number has no integer representation)" in lines
    assert "I/user.nan false bad argument #2 to 'read' (number has no integer representation)" in lines
    assert "I/user.under false bad argument #5 to 'baidu' (number expected, got string)" in lines
    assert "I/user.hexstr true p" in lines
    assert not [ln for ln in lines if "Error" in ln]
