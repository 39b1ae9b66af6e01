"""bit: integer bit operations (the NodeMCU-style module LuatOS ships), in Lua.

Done in Lua because scripts call these in tight loops and Lua's own integer operators are the
firmware's arithmetic (64-bit lua_Integer); a Python round trip per call would cost ~50x."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..vm import Boot

_SRC = b"""
local RT = ...
local select, error, math_type = select, error, math.type
local function int(v, n, name)
  local i = math.tointeger(v)
  if i == nil then
    error("bad argument #" .. n .. " to '" .. name .. "' (number has no integer representation)", 3)
  end
  return i
end
local t = {}
function t.bit(p) return 1 << int(p, 1, "bit") end
function t.bnot(v) return ~int(v, 1, "bnot") end
local function fold(name, op)
  return function(a, ...)
    local r = int(a, 1, name)
    for i = 1, select("#", ...) do r = op(r, int((select(i, ...)), i + 1, name)) end
    return r
  end
end
t.band = fold("band", function(a, b) return a & b end)
t.bor = fold("bor", function(a, b) return a | b end)
t.bxor = fold("bxor", function(a, b) return a ~ b end)
function t.lshift(v, n) return int(v, 1, "lshift") << int(n, 2, "lshift") end
function t.rshift(v, n) return int(v, 1, "rshift") >> int(n, 2, "rshift") end
function t.arshift(v, n)
  v, n = int(v, 1, "arshift"), int(n, 2, "arshift")
  if v >= 0 or n <= 0 then return v >> n end
  if n >= 64 then return -1 end
  return (v >> n) | ~(-1 >> n)
end
function t.isset(v, p) return (int(v, 1, "isset") >> int(p, 2, "isset")) & 1 == 1 end
function t.isclear(v, p) return (int(v, 1, "isclear") >> int(p, 2, "isclear")) & 1 == 0 end
function t.set(v, ...)
  v = int(v, 1, "set")
  for i = 1, select("#", ...) do v = v | (1 << int((select(i, ...)), i + 1, "set")) end
  return v
end
function t.clear(v, ...)
  v = int(v, 1, "clear")
  for i = 1, select("#", ...) do v = v & ~(1 << int((select(i, ...)), i + 1, "clear")) end
  return v
end
bit = RT.firmware_table("bit", t)
"""


def install(boot: Boot) -> None:
    boot.execute(_SRC, boot.RT)
