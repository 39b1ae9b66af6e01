"""Device bytecode (size_t=4) translated to the host's layout, and a package of .luac that boots."""

from __future__ import annotations

import lupa.lua53 as lua53
import pytest

from luatos_common.packages import build_air8101_ota
from luatos_sim import Device
from luatos_sim.bytecode import (
    BytecodeError,
    sizes,
    translate_32_to_64,
    translate_64_to_32,
)

from .conftest import write_project

LONG = "L" * 300  # a string constant long enough to carry a size_t length

SOURCE = f"""
local long = "{LONG}"
local function outer(a, ...)
  local s = "pre:" .. a
  return function(q)
    local t = {{1, 2.5, true, nil, "x"}}
    return s .. q .. #long .. #t .. tostring(2^40) .. math.tointeger(7)
  end
end
return outer("A")("B"), long:sub(-3)
"""


def dump(strip: bool) -> bytes:
    lua = lua53.LuaRuntime(encoding=None)
    fn = lua.eval("function(src, strip) return string.dump(assert(load(src, '@m.lua')), strip) "
                  "end")
    return fn(SOURCE.encode(), strip)


@pytest.mark.parametrize("strip", [False, True])
def test_round_trip_and_load(strip):
    host = dump(strip)
    device = translate_64_to_32(host)
    assert sizes(device) == (4, 4, 4, 8, 8)
    assert len(device) < len(host)  # every long string lost 4 bytes of length
    lua = lua53.LuaRuntime(encoding=None)
    load = lua.eval("function(b) local f, e = load(b, 'm', 'b'); return f, e end")
    fn, err = load(device)
    assert fn is None and b"size_t" in err  # the host refuses device bytecode as is
    back = translate_32_to_64(device)
    assert back == host
    fn, err = load(back)
    assert err is None
    assert fn() == (b"pre:AB300" + b"5" + b"1099511627776.0" + b"7", b"LLL")


def test_truncated_or_foreign_bytecode_is_named():
    device = translate_64_to_32(dump(False))
    with pytest.raises(BytecodeError, match="truncated at offset"):
        translate_32_to_64(device[:-5])
    with pytest.raises(BytecodeError, match="not Lua 5.3"):
        translate_32_to_64(b"\x1bLua\x52" + device[5:])
    with pytest.raises(BytecodeError, match="unexpected bytes"):
        translate_32_to_64(device + b"\x00")


def test_package_of_device_bytecode_boots(tmp_path):
    lua = lua53.LuaRuntime(encoding=None)
    compile_ = lua.eval("function(src, name) return string.dump(assert(load(src, name))) end")
    new_main = compile_(b'log.info("app", "from bytecode", #("' + LONG.encode() + b'"))\n'
                        b'sys.run()\n', b"@main.lua")
    pkg = build_air8101_ota({"main.luac": translate_64_to_32(new_main)})
    proj = write_project(tmp_path / "p", {"main.lua": """
        sys.taskInit(function()
          fota.init()
          log.info("w", fota.run(io.readFile("/p.bin")))
          fota.finish(true)
          rtos.reboot()
        end)
        sys.run()
    """})
    dev = Device(proj)
    (dev.fs_root / "p.bin").write_bytes(pkg)
    dev.run_until("I/user.app from bytecode 300", within="10s")
    dev.close()
