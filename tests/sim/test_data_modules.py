"""bit, miniz, iconv and gmssl: known answers, round trips and the failure values."""

from __future__ import annotations

import zlib
from collections.abc import Callable

from luatos_sim import Device


def run(boot: Callable[..., Device], body: str) -> list[str]:
    dev = boot(body + '\nlog.info("end")\nsys.run()\n')
    dev.run_until("I/user.end", within="5s")
    return [ln[len("I/user."):] for ln in dev.lines() if ln.startswith("I/user.")]


def test_bit(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
log.info("ops", bit.band(0xF0, 0x3C, 0x30), bit.bor(1, 2, 4), bit.bxor(5, 1), bit.bnot(0))
log.info("shift", bit.lshift(1, 10), bit.rshift(-1, 60), bit.arshift(-16, 2), bit.bit(3))
log.info("test", bit.isset(5, 2), bit.isclear(5, 1), bit.set(0, 0, 4), bit.clear(0xFF, 0, 7))
log.info("type", type(bit.band), pcall(bit.band, 1.5, 1))
""")
    assert "ops 48 7 4 -1" in lines
    assert "shift 1024 15 -4 8" in lines
    assert "test true true 17 126" in lines
    assert lines[3].startswith("type function false ")
    assert "number has no integer representation" in lines[3]


def test_miniz_round_trip_and_zlib_interop(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
local src = string.rep("luatos ", 100)
local z = miniz.compress(src)
log.info("z", #z < #src, z:toHex():sub(1, 4), miniz.uncompress(z) == src)
local raw = miniz.compress(src, 0)
log.info("raw", miniz.uncompress(raw, 0) == src, miniz.uncompress("not deflate"))
""")
    assert "z true 78DA true" in lines
    assert "raw true nil" in lines
    assert zlib.decompress(zlib.compress(b"x")) == b"x"


def test_iconv(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
local cd = iconv.open("ucs2be", "utf8")
log.info("ucs2", type(cd), cd:iconv("中a"):toHex())
local gb = iconv.open("gb2312", "utf8"):iconv("中文")
log.info("gb", gb:toHex(), iconv.open("utf8", "gb2312"):iconv(gb))
log.info("bad", iconv.open("utf8", "ucs2"):iconv("\\0\\216"), iconv.open("klingon", "utf8"))
""")
    assert "ucs2 userdata 4E2D0061 8" in lines  # toHex also returns the length
    assert "gb D6D0CEC4 中文" in lines
    assert "bad nil nil" in lines


def test_gmssl(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
log.info("sm3", gmssl.sm3("abc"))
local key = "0123456789abcdef"
local e = gmssl.sm4encrypt("ECB", "PKCS7", "hello sm4", key)
log.info("sm4", #e, gmssl.sm4decrypt("ECB", "PKCS7", e, key))
local c = gmssl.sm4encrypt("CBC", "ZERO", "hello", key, "fedcba9876543210")
log.info("cbc", gmssl.sm4decrypt("CBC", "ZERO", c, key, "fedcba9876543210"))
log.info("bad", gmssl.sm4encrypt("ECB", "PKCS7", "x", "short") == "")
""")
    # GB/T 32905 SM3 example 1
    assert "sm3 66C7F0F462EEEDD9D1F2D46BDC10E4E24167C4875CF2F7A2297DA02B8F4BA8E0" in lines
    assert "sm4 16 hello sm4" in lines
    assert "cbc hello" in lines and "bad true" in lines


def test_fskv_sett_fields_survive_a_reboot(boot: Callable[..., Device]) -> None:
    dev = boot("""
fskv.init()
if not fskv.get("booted") then
  fskv.set("booted", true)
  log.info("sett", fskv.sett("cfg", "name", "dev1"), fskv.sett("cfg", "port", 1883),
    fskv.sett("cfg", "name", "dev2"), fskv.sett("cfg", "port", nil))
  rtos.reboot()
end
local t = fskv.get("cfg")
log.info("after", t.name, t.port, fskv.get("cfg", "name"), fskv.get("cfg", "nope"))
log.info("end")
sys.run()
""")
    dev.run_until("I/user.end", within="10s")
    lines = dev.lines()
    assert "I/user.sett true true true true" in lines
    assert "I/user.after dev2 nil dev2 nil" in lines


def test_mcu_tick64_on_the_virtual_clock(boot: Callable[..., Device]) -> None:
    dev = boot("""
sys.taskInit(function()
  local t1, per = mcu.tick64()
  sys.wait(1500)
  local t2 = mcu.tick64()
  log.info("t64", #t1, per, mcu.dtick64(t2, t1), mcu.dtick64(t2, t1, 2000000))
  log.info("hf", mcu.hardfault(1))
end)
sys.run()
""")
    dev.run_until("I/user.hf", within="10s")
    assert "I/user.t64 8 1 true false 1500000" in dev.lines()  # 1.5 s = 1,500,000 us
    assert "I/user.hf nil" in dev.lines()


def test_io_dexist_and_lsmount(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
io.mkdir("/data")
io.writeFile("/data/a.txt", "x")
log.info("dexist", io.dexist("/data"), io.dexist("/data/a.txt"), io.dexist("/nope"))
local m = io.lsmount()
log.info("mounts", #m, m[1].fs, m[2].path)
""")
    assert "dexist true false false" in lines
    assert "mounts 2 lfs /luadb" in lines


def test_uart_rx_and_tx_with_a_zbuff(boot: Callable[..., Device]) -> None:
    dev = boot("""
uart.setup(1, 115200)
uart.on(1, "receive", function(id, len)
  local zb = zbuff.create(8)
  local n = uart.rx(id, zb)
  log.info("rx", n, zb:query())
  local out = zbuff.create(16)
  out:write("ack:", zb:query())
  log.info("tx", uart.tx(id, out))
end)
sys.run()
""")
    dev.run_for("1s")
    dev.uart.host_write(b"0123456789ab", 1)
    dev.run_until("I/user.tx", within="5s")
    assert "I/user.rx 12 0123456789ab" in dev.lines()  # the zbuff grows to what arrived
    assert "I/user.tx true" in dev.lines()
    assert bytes(dev.uart.tx[1]).endswith(b"ack:0123456789ab")
