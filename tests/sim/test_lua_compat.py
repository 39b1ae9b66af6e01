"""The firmware's Lua has the 5.1/5.2 compatibility functions (issue 9 item 4)."""

from __future__ import annotations

from collections.abc import Callable

from luatos_sim import Device


def test_compat_functions_exist_and_work(boot: Callable[..., Device]) -> None:
    dev = boot("""
        PROJECT = "compat" VERSION = "1.0.0"
        local a, b, c = unpack({1, 2, 3})
        local f = loadstring("return 6 * 7")
        log.info("c1", a, b, c, f(), math.pow(2, 10), math.log10(1000), table.maxn({1, 2, [10] = 1, x = 5}))
        log.info("c2", type(package.loaders), package.loaders == package.searchers)
        log.info("bit", bit32.band(0xFF, 0x0F), bit32.bor(1, 2, 4), bit32.bxor(5, 1), bit32.bnot(0),
                 bit32.lshift(1, 31), bit32.rshift(0x80000000, 31), bit32.arshift(0x80000000, 4),
                 bit32.lrotate(0x80000001, 1), bit32.extract(0xF0, 4, 4), bit32.replace(0, 3, 8, 2),
                 bit32.band(-1), bit32.btest(1, 2))
        log.info("m", math.ldexp(0.5, 4), math.frexp(8), math.cosh(0), math.sinh(0), math.tanh(0), math.frexp(8))
        log.info("err", pcall(math.pow, "x", 2))
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert "I/user.c1 1 2 3 42 1024.0 3.0 10" in lines
    assert "I/user.c2 table true" in lines
    assert ("I/user.bit 15 7 4 4294967295 2147483648 1 4160749568 3 15 768 4294967295 false"
            in lines)
    assert "I/user.m 8.0 0.5 1.0 0.0 0.0 0.5 4" in lines
    assert any(ln.startswith("I/user.err false") and "bad argument #1 to 'pow'" in ln
               for ln in lines)
