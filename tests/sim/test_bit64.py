"""bit64: 9-byte values (8 little-endian bytes and a float flag), as luat_lib_bit64.c keeps
them; each answer is worked out here with struct and Python integers."""

from __future__ import annotations

import struct
from collections.abc import Callable

from luatos_sim import Device


def i64(v: int) -> str:
    """An int64 value (wrapped to 64 bits, as C's arithmetic does) as the firmware stores it."""
    return (struct.pack("<Q", v % (1 << 64)) + b"\0").hex().upper()


def f64(v: float) -> str:
    return (struct.pack("<d", v) + b"\1").hex().upper()


def run(boot: Callable[..., Device], body: str) -> list[str]:
    dev = boot('local function h(s) return s and s:toHex() end\n' + body
               + '\nlog.info("end")\nsys.run()\n')
    dev.run_until("I/user.end", within="5s")
    return [ln[len("I/user."):] for ln in dev.lines() if ln.startswith("I/user.")]


def test_to64_to32_and_show(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
log.info("to64", h(bit64.to64(-2)), h(bit64.to64(1.5)), h(bit64.to64("7")), h(bit64.to64(nil)))
log.info("to32", bit64.to32(bit64.to64(-2)), bit64.to32(bit64.to64(1.5)),
  math.type(bit64.to32(bit64.to64(3))), bit64.to32("\\1\\2"), bit64.to32(bit64.to64(5) .. "junk"))
local big = bit64.strtoll("864040064024194")
log.info("show", bit64.show(big), bit64.show(big, 16), bit64.show(bit64.to64(-1), 10, true),
  bit64.show(bit64.to64(-1)), bit64.show(bit64.to64(2.25)), bit64.show(bit64.to64(2.5e10)))
log.info("show16", bit64.show(bit64.to64(1.0), 16), bit64.show(bit64.to64(-1), 272),
  bit64.show("short"), bit64.show(bit64.to64(0/0)))
log.info("bad base", pcall(bit64.show, big, 1.5))
""")
    assert f"to64 {i64(-2)} {f64(1.5)} {f64(7.0)} {'00' * 9}" in lines
    # a short string reads as zero-filled; a longer one by its first 9 bytes
    assert "to32 -2 1.5 integer 513 5" in lines
    assert (f"show 864040064024194 {864040064024194:#x} 18446744073709551615 -1 2.250000 "
            "2.500000e+10") in lines
    # hex of a double prints its bits; the base is a uint8_t (272 is 16)
    assert "show16 0x3ff0000000000000 0xffffffffffffffff nil nan" in lines
    assert "bad base false bad argument #2 to 'show' (number has no integer representation)" in lines


def test_arithmetic(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
local a = bit64.to64(0x7FFFFFFFFFFFFFFF)
log.info("wrap", h(bit64.plus(a, 1)), h(bit64.minus(bit64.to64(5), bit64.to64(7))))
log.info("mul", h(bit64.multi(bit64.to64(3000000000), 3000000000)),
  h(bit64.multi(bit64.to64(5000000000), 5000000000)))
log.info("div", h(bit64.pide(bit64.to64(-7), 2)), h(bit64.pide(bit64.to64(-7), 2, true)))
log.info("float", h(bit64.plus(bit64.to64(1), 0.5)), h(bit64.pide(bit64.to64(7), 2.0)),
  h(bit64.pide(bit64.to64(7), 2.0, false, true)), h(bit64.multi(bit64.to64(-2.5), 3, false, true)))
log.info("numeric string", h(bit64.plus(bit64.to64(1), "2")))
log.info("zero div", h(bit64.pide(bit64.to64(5), 0)), h(bit64.pide(bit64.to64(-5), 0)),
  h(bit64.pide(bit64.to64(5), 0, true)), h(bit64.pide(bit64.to64(1), 0.0)))
log.info("not 9 bytes", h(bit64.plus("abc", 1)), h(bit64.plus(bit64.to64(1), "abc")), h(bit64.plus(5, nil)))
log.info("bad b", pcall(bit64.plus, bit64.to64(1)))
log.info("bad b2", pcall(bit64.minus, bit64.to64(1), {}))
log.info("bad a", pcall(bit64.multi))
""")
    assert f"wrap {i64(-(1 << 63))} {i64(-2)}" in lines
    assert f"mul {i64(9_000_000_000_000_000_000)} {i64(25 * 10**18)}" in lines  # wraps
    # signed division truncates toward zero; unsigned reads -7 as 2^64 - 7
    assert f"div {i64(-3)} {i64(((1 << 64) - 7) // 2)}" in lines
    assert f"float {f64(1.5)} {f64(3.5)} {i64(3)} {i64(-7)}" in lines
    assert f"numeric string {f64(3.0)}" in lines
    assert (f"zero div {i64((1 << 63) - 1)} {i64(-(1 << 63))} {i64(-1)} "
            f"{f64(float('inf'))}") in lines
    assert f"not 9 bytes {'00' * 9} {'00' * 9} {'00' * 9}" in lines
    assert "bad b false bad argument #2 to 'plus' (string expected, got no value)" in lines
    assert "bad b2 false bad argument #2 to 'minus' (string expected, got table)" in lines
    assert "bad a false bad argument #1 to 'multi' (string expected, got no value)" in lines


def test_shift_and_strtoll(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
local one = bit64.to64(1)
log.info("shift", h(bit64.shift(one, 40, true)), h(bit64.shift(bit64.to64(-1), 60)),
  h(bit64.shift(one, 64, true)), bit64.shift("abc", 1), h(bit64.shift(one, 1.0, true)))
log.info("float bits", h(bit64.shift(bit64.to64(1.0), 52)))
log.info("strtoll", h(bit64.strtoll("  -42xyz")), h(bit64.strtoll("ff", 16)),
  h(bit64.strtoll("0x1F", 16)), h(bit64.strtoll("017", 0)), h(bit64.strtoll("99999999999999999999")),
  h(bit64.strtoll("-99999999999999999999")), h(bit64.strtoll("abc")), select("#", bit64.strtoll("")))
""")
    assert (f"shift {i64(1 << 40)} {i64(15)} {i64(0)} abc {i64(1)}") in lines
    # the flag byte stays: a float's bits shifted are still read as a float
    assert f"float bits {struct.pack('<q', 0x3FF).hex().upper()}01" in lines
    assert (f"strtoll {i64(-42)} {i64(255)} {i64(31)} {i64(15)} {i64((1 << 63) - 1)} "
            f"{i64(-(1 << 63))} {i64(0)} 0") in lines


def test_functions_look_like_the_firmware(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
local names = {}
for k, v in pairs(bit64) do names[#names + 1] = k .. ":" .. type(v) end
table.sort(names)
log.info("api", table.concat(names, " "))
""")
    assert ("api minus:function multi:function pide:function plus:function shift:function "
            "show:function strtoll:function to32:function to64:function") in lines
