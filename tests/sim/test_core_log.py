"""log/print line formats (docs/behaviour.md §4.2) and json semantics (docs/behaviour.md §4.3)."""

from __future__ import annotations


def test_log_styles_levels_and_tags(boot):
    dev = boot("""
        log.info("ABC", "DEF", 123)
        log.style(1)
        log.info("ABC", "DEF", 123)
        log.style(2)
        log.info("ABC", "DEF", 123)
        log.style(0)
        log.info(12, 1.5, 2.0, nil, true)
        log.info(nil, "x")
        log.info({}, "x")
        log.info()
        log.debug("lvl", "d")
        log.setLevel("WARN")
        log.info("lvl", "hidden")
        log.warn("lvl", "w")
        log.fatal("lvl", "f")
        log.setLevel("FATAL")
        log.error("lvl", "hidden too")
        log.setLevel(log.LOG_DEBUG)
        log.info("中文.tag", "文本")
        log.info("last", log.getLevel(), log.style())
        sys.run()
    """)
    dev.run_for("1s")
    lines = [ln for ln in dev.lines() if "/" in ln[:2]]
    assert lines == [
        "I/user.ABC DEF 123",
        "I/main.lua:3 ABC DEF 123",
        "I/user.ABC main.lua:5 DEF 123",
        "I/user.12 1.5 2.0 nil true",
        "I/user.(null) x",
        "I/user.(null) x",
        "D/user.lvl d",
        "W/user.lvl w",
        "E/user.lvl f",
        "I/user.中文.tag 文本",
        "I/user.last 1 0",
    ]


def test_print_joins_with_one_space(boot):
    dev = boot("""
        print("a", 1, nil, 2.5, "")
        print()
        sys.run()
    """)
    dev.run_for("1s")
    assert "a 1 nil 2.5 " in dev.lines()


def test_uart_form_and_virtual_ms(boot):
    dev = boot("""
        sys.timerStart(function() log.info("t", "x") end, 1234)
        sys.run()
    """)
    dev.run_for("3s")
    rec = [r for r in dev.log if r.line == "I/user.t x"][0]
    assert rec.device_ms == 800 + 1234
    assert rec.uart() == "luat:U(2034):I/user.t x"
    banner = [r for r in dev.log if "LuatOS@" in r.text][0]
    assert banner.uart() == "luat:I(581):main:LuatOS@Air8101 base 25.11 bsp V2001 64bit"


def test_json_cjson_semantics(boot):
    dev = boot("""
        local t, ok = json.decode('{"a":1,"b":1.5,"c":[1,2,3],"d":null,"e":"x/y"}')
        log.info("dec", ok, math.type(t.a), math.type(t.b), #t.c, t.d == json.null, t.e)
        log.info("bad", json.decode("{oops"))
        log.info("trail", json.decode('{"a":1} x'))
        log.info("nonstr", json.decode(12))
        log.info("scalar", json.decode("123"), json.decode("null") == json.null)
        log.info("enc", json.encode({1, 2, "x"}), json.encode({}), json.encode(nil) == "")
        log.info("enc2", json.encode({k = 1.5}), json.encode({k = 3}), json.encode("a/b\\n\\1"))
        log.info("encerr", json.encode({f = print}))
        sys.run()
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert "I/user.dec 1 integer float 3 true x/y" in lines
    assert any(ln.startswith("I/user.bad nil false ") for ln in lines)
    assert any(ln.startswith("I/user.trail nil false ") for ln in lines)
    assert any(ln.startswith("I/user.nonstr nil false ") for ln in lines)
    assert "I/user.scalar 123 true" in lines
    assert 'I/user.enc [1,2,"x"] {} true' in lines
    assert 'I/user.enc2 {"k":1.5000000} {"k":3} "a/b\\n\\u0001"' in lines
    assert any(ln.startswith("I/user.encerr nil Cannot serialise") for ln in lines)


def test_crypto_and_string_extensions(boot):
    dev = boot("""
        log.info("md5", crypto.md5("abc"))
        log.info("crc", crypto.crc32("123456789"))
        log.info("hex", string.toHex("\\1\\171"))
        log.info("from", string.fromHex("4142") )
        log.info("b64", string.toBase64("hi"), string.fromBase64("aGk="))
        local parts = string.split("a,b,,c", ",")
        log.info("split", #parts, parts[3])
        sys.run()
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert "I/user.md5 900150983CD24FB0D6963F7D28E17F72" in lines
    assert "I/user.crc 3421780262" in lines  # zlib.crc32(b"123456789")
    assert "I/user.hex 01AB 4" in lines
    assert "I/user.from AB" in lines
    assert "I/user.b64 aGk= hi" in lines
    assert "I/user.split 3 c" in lines


def test_zbuff_query_del_and_typed_io(boot):
    dev = boot("""
        local z = zbuff.create(16)
        z:write("abc")
        z:writeU16(0x0102)
        log.info("z", z:used(), z:len(), #z, z:query():toHex())
        z:seek(0)
        log.info("r", z:read(3), z:readU16())
        z:del(0, 1)
        log.info("d", z:query())
        z:del()
        log.info("e", z:used(), z:query() == nil)  -- an empty used region queries as nil
        sys.run()
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert "I/user.z 5 16 16 6162630201 10" in lines
    assert "I/user.r abc 258" in lines
    assert "I/user.d bc\x02\x01" in lines
    assert "I/user.e 0 true" in lines


def test_firmware_functions_are_lua_functions(boot):
    dev = boot("""
        log.info("types", type(rtos.version), type(crypto.md5), type(string.toBase64),
          type(io.readFile), type(json.decode), type(rtos.receive), type(log.info))
        log.info("crc8", crypto.crc8("123456789"))
        sys.run()
    """)
    dev.run_for("1s")
    assert "I/user.types function function function function function function function" \
        in dev.lines()
    assert "I/user.crc8 244" in dev.lines()  # CRC-8/SMBUS check value 0xF4


def test_set_level_0_shows_nothing(boot):
    """Mutation audit: ``log.setLevel(0)`` showed everything. 0 is not a level (1..7): the
    firmware falls back to SILENT (7), so nothing is printed until a level is set again."""
    dev = boot("""
        log.setLevel(0)
        log.debug("lvl", "d0")
        log.info("lvl", "i0")
        log.warn("lvl", "w0")
        log.error("lvl", "e0")
        local silent = log.getLevel()
        log.setLevel("INFO")
        log.info("lvl", "after", silent, log.LOG_SILENT)
        log.setLevel(log.LOG_SILENT)
        log.error("lvl", "e7")
        sys.run()
    """)
    dev.run_for("1s")
    assert [ln for ln in dev.lines() if "user.lvl" in ln] == ["I/user.lvl after 7 7"]
