"""json as lua-cjson: the float format argument, cjson's decode error wording, and its
1000-level nesting limit (issue 9 item 5)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from luatos_sim import Device


def _run(boot: Callable[..., Device], body: str) -> list[str]:
    dev = boot('PROJECT = "j" VERSION = "1.0.0"\n' + body)
    dev.run_for("1s")
    return [ln.split(" ", 1)[1] if " " in ln else "" for ln in dev.lines()
            if ln.startswith("I/user.r")]


def test_encode_float_format(boot: Callable[..., Device]) -> None:
    out = _run(boot, """
        log.info("r", json.encode({abc = 1234.5678}, "3f"))
        log.info("r", json.encode({abc = 1234.5678}))
        log.info("r", json.encode({abc = 1234.5678}, "%.1f"))
        log.info("r", json.encode({abc = 0.5}, "7g"))
    """)
    assert out == ['{"abc":1234.568}', '{"abc":1234.5678000}', '{"abc":1234.6}', '{"abc":0.5}']


@pytest.mark.parametrize(("text", "error"), [
    ('{"abc":}', "Expected value but found T_OBJ_END at character 8"),
    ('{"a":1,}', "Expected object key string but found T_OBJ_END at character 8"),
    ('{"a" 1}', "Expected colon but found T_NUMBER at character 6"),
    ('[1 2]', "Expected comma or array end but found T_NUMBER at character 4"),
    ('{"a":1 "b"}', "Expected comma or object end but found T_STRING at character 8"),
    ('', "Expected value but found T_END at character 1"),
    ('[1] x', "Expected the end but found invalid token at character 5"),
    ('"abc', "Expected value but found unexpected end of string at character 1"),
    ('["\\q"]', "Expected value but found invalid escape code at character 2"),
    ('{"a":tru}', "Expected value but found invalid token at character 6"),
])
def test_decode_errors_use_cjson_wording(boot: Callable[..., Device], text: str,
                                         error: str) -> None:
    out = _run(boot, f"""
        local v, ok, err = json.decode({text!r})
        log.info("r", v, ok, err)
    """.replace("'", '"') if "'" not in text and '"' not in text else f"""
        local v, ok, err = json.decode([==[{text}]==])
        log.info("r", v, ok, err)
    """)
    assert out == [f"nil false {error}"]


def test_decode_accepts_what_cjson_accepts(boot: Callable[..., Device]) -> None:
    out = _run(boot, r"""
        local t = json.decode([[{"h": 0x10, "z": 007, "i": 12, "f": 1.5, "u": "\u00e9\ud83d\ude00", "n": [null, 1]}]])
        log.info("r", t.h, t.z, math.type(t.i), t.f, t.u, t.n[1] == json.null, #t.n)
        log.info("r", json.decode("123"), json.decode("null") == json.null)
    """)
    assert out == ["16.0 7 integer 1.5 \u00e9\U0001F600 true 2", "123 true"]


def test_nesting_limit_is_1000(boot: Callable[..., Device]) -> None:
    out = _run(boot, """
        local ok_v, ok = json.decode(string.rep("[", 1000) .. string.rep("]", 1000))
        log.info("r", type(ok_v), ok)
        local v, ok2, err = json.decode(string.rep("[", 1001) .. string.rep("]", 1001))
        log.info("r", v, ok2, err)
        local deep = {}
        local t = deep
        for i = 1, 1001 do t[1] = {}; t = t[1] end
        log.info("r", json.encode(deep))
    """)
    assert out == ["table 1", "nil false Found too many nested data structures (1001) at "
                   "character 1001", "nil Cannot serialise, excessive nesting (1001)"]
