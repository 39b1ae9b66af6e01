"""bit64: 64-bit arithmetic on 9-byte strings, as luat_lib_bit64.c does it.

A value is 8 little-endian bytes plus a ninth byte: 0 for an int64, anything else for a double.
Written in Lua, like ``bit``: the firmware tells a Lua integer from a float (``lua_isinteger``)
and a numeric string from another (``lua_isnumber``), which Lua itself answers exactly, and
Lua's integers are the firmware's int64 (wrapping + - *). Only ``strtoll`` calls the host.

Firmware quirks kept: a first argument that is not 9 bytes gives 9 zero bytes (arithmetic), the
argument itself (``shift``) or nil (``show``); ``to32`` reads a short string as if zero-filled;
``b`` may be an integer, a float, a numeric string (taken as a float) or a 9-byte value.
What the C code leaves to the compiler (division by zero, shifts of 64 or more, a float out of
int64 range) is pinned in docs/defaults.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ctext import c_string

if TYPE_CHECKING:
    from ..vm import Boot

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_SPACE = b" \t\n\v\f\r"


def strtoll(text: bytes, base: int) -> int:
    """C ``strtoll``: leading space, a sign, ``0x`` for base 16 or 0, digits up to the first
    that does not belong (or a NUL); out of range saturates; a base C refuses gives 0."""
    s = c_string(text).lstrip(_SPACE)
    negative = s[:1] == b"-"
    if s[:1] in (b"+", b"-"):
        s = s[1:]
    if base not in (0, *range(2, 37)):
        return 0
    if base in (0, 16) and s[:2].lower() == b"0x" and s[2:3] and _digit(s[2]) < 16:
        s, base = s[2:], 16
    elif base == 0:
        base = 8 if s[:1] == b"0" else 10
    value = 0
    for c in s:
        d = _digit(c)
        if d >= base:
            break
        value = value * base + d
    value = -value if negative else value
    return max(INT64_MIN, min(INT64_MAX, value))


def _digit(c: int) -> int:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 122:
        return c - 87
    if 65 <= c <= 90:
        return c - 55
    return 99


_SRC = b"""
local RT, host_strtoll = ...
local type, tostring, tonumber, error, select = type, tostring, tonumber, error, select
local math_type, ult, maxinteger, mininteger = math.type, math.ult, math.maxinteger, math.mininteger
local pack, unpack, rep, byte, sub, format = string.pack, string.unpack, string.rep, string.byte,
  string.sub, string.format
local ZERO = rep("\\0", 9)

-- luaL_checklstring: a string, or a number as tostring writes it. Called straight from an API
-- function, so level 3 is the script's call, where luaL_argerror puts its position.
local function checkstr(v, n, nargs, name)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  error(format("bad argument #%d to '%s' (string expected, got %s)", n, name,
    n > nargs and "no value" or t), 3)
end

-- luaL_optinteger
local function optint(v, n, nargs, name, default)
  if n > nargs or v == nil then return default end
  local x = tonumber(v)
  if type(v) ~= "number" and type(v) ~= "string" then x = nil end
  if x == nil then
    error(format("bad argument #%d to '%s' (number expected, got %s)", n, name, type(v)), 3)
  end
  local i = math.tointeger(x)
  if i == nil then
    error(format("bad argument #%d to '%s' (number has no integer representation)", n, name), 3)
  end
  return i
end

local function decode(s)
  if byte(s, 9) ~= 0 then return true, (unpack("<d", s)) end
  return false, (unpack("<i8", s))
end
local function int64(i) return pack("<i8", i) .. "\\0" end
local function double(d) return pack("<d", d) .. "\\1" end

-- lua_isnumber without lua_isinteger: a float, or a string Lua reads as a number
local function as_float(v)
  local t = type(v)
  if t == "number" or t == "string" then
    local x = tonumber(v)
    if x ~= nil then return x + 0.0 end
  end
  return nil
end

local function udiv(n, d)  -- unsigned 64-bit n / d, d ~= 0
  if d < 0 then return ult(n, d) and 0 or 1 end
  local q = ((n >> 1) // d) << 1
  if not ult(n - q * d, d) then q = q + 1 end
  return q
end

local function sdiv(n, d)  -- C's truncating int64 division, d ~= 0
  local q = n // d
  if n % d ~= 0 and (n < 0) ~= (d < 0) then q = q + 1 end
  return q
end

-- (int64_t) of a double: truncation; out of range saturates and NaN is 0 (docs/defaults.md)
local function trunc(d)
  if d ~= d then return 0 end
  if d >= 0x1p63 then return maxinteger end
  if d <= -0x1p63 then return mininteger end
  local i = math.tointeger(d >= 0 and math.floor(d) or math.ceil(d))
  return i
end

local OPS = {
  function(a, b) return a + b end, function(a, b) return a - b end,
  function(a, b) return a * b end, function(a, b) return a / b end,
}

local function calculate(op, name, ...)
  local nargs = select("#", ...)
  local a, b, f1, f2 = ...
  a = checkstr(a, 1, nargs, name)
  if #a ~= 9 then return ZERO end
  local fa, va = decode(a)
  local fb, vb
  if math_type(b) == "integer" then
    fb, vb = false, b
  else
    vb = as_float(b)
    if vb ~= nil then
      fb = true
    else
      local s = checkstr(b, 2, nargs, name)
      if #s ~= 9 then return ZERO end
      fb, vb = decode(s)
    end
  end
  local unsigned = type(f1) == "boolean" and f1
  local to_int = type(f2) == "boolean" and f2
  if fa or fb then
    local d = OPS[op](va + 0.0, vb + 0.0)
    if to_int then return int64(trunc(d)) end
    return double(d)
  end
  if op < 4 then return int64(OPS[op](va, vb)) end
  if vb == 0 then  -- what the ARM EABI run-time division helpers answer
    if unsigned then return int64(va ~= 0 and -1 or 0) end
    return int64(va > 0 and maxinteger or va < 0 and mininteger or 0)
  end
  return int64(unsigned and udiv(va, vb) or sdiv(va, vb))
end

local t = {}
function t.plus(...) return calculate(1, "plus", ...) end
function t.minus(...) return calculate(2, "minus", ...) end
function t.multi(...) return calculate(3, "multi", ...) end
function t.pide(...) return calculate(4, "pide", ...) end

function t.to32(...)
  local s = checkstr((...), 1, select("#", ...), "to32")
  if #s < 9 then s = s .. rep("\\0", 9 - #s) end
  local _, v = decode(s)
  return v
end

function t.to64(v)
  if math_type(v) == "integer" then return int64(v) end
  local d = as_float(v)
  if d ~= nil then return double(d) end
  return ZERO
end

local function float_text(d)
  if d ~= d then return "nan" end
  if d == 1 / 0 then return "inf" end
  if d == -1 / 0 then return "-inf" end
  if d > 1e9 or d < -1e9 then return format("%e", d) end
  return format("%f", d)
end

function t.show(...)
  local nargs = select("#", ...)
  local s, base, unsigned = ...
  s = checkstr(s, 1, nargs, "show")
  if #s ~= 9 then return nil end
  base = optint(base, 2, nargs, "show", 10) & 0xFF
  unsigned = type(unsigned) == "boolean" and unsigned
  local is_float, v = decode(s)
  if base == 16 then return format("0x%x", (unpack("<i8", s))) end
  if is_float then return float_text(v) end
  return format(unsigned and "%u" or "%d", v)
end

function t.shift(...)
  local nargs = select("#", ...)
  local s, pos, left = ...
  s = checkstr(s, 1, nargs, "shift")
  if #s ~= 9 or math_type(pos) ~= "integer" then return s end
  pos = pos & 0xFFFFFFFF
  if pos == 0 then return s end
  local u = unpack("<i8", s)
  if pos >= 64 then
    u = 0
  elseif type(left) == "boolean" and left then
    u = u << pos
  else
    u = u >> pos
  end
  return pack("<i8", u) .. sub(s, 9, 9)
end

function t.strtoll(...)
  local nargs = select("#", ...)
  local s, base = ...
  s = checkstr(s, 1, nargs, "strtoll")
  base = optint(base, 2, nargs, "strtoll", 10)
  if #s == 0 then return end
  return int64(host_strtoll(s, base))
end

local target, waiting = RT.module_table("bit64")
if target == nil then target = RT.firmware_table("bit64") end
for k, f in pairs(t) do rawset(target, k, f) end
if not waiting then bit64 = target end
"""


def install(boot: Boot) -> None:
    boot.execute(_SRC, boot.RT, boot.lua_function(strtoll, "strtoll"))
