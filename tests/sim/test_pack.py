"""pack: lpack-style pack/unpack as the firmware has it (vendor sensor demos decode with it)."""

from __future__ import annotations


def user(dev, tag):
    return [ln.split(" ", 1)[1] for ln in dev.lines() if ln.startswith(f"I/user.{tag} ")]


def test_pack_unpack_round_trips_and_firmware_corners(boot):
    dev = boot(r"""
        local s = pack.pack(">HhbcI", 0x1234, -2, 255, -1, 0xDEADBEEF)
        log.info("packed", s:toHex())
        log.info("unpacked", pack.unpack(s, ">HhbcI"))
        log.info("le", pack.unpack(string.char(0x34, 0x12), "<H"))
        log.info("short", pack.unpack("\1", ">H"))
        log.info("empty", select("#", pack.unpack("", ">H")))
        log.info("strings", pack.unpack(pack.pack("pzA", "ab", "cd", "ef"), "pzA2"))
        log.info("init", pack.unpack("\0\0\0\7", ">H", 3))
        log.info("float", pack.unpack(pack.pack("<f", 1.5), "<f"))
        log.info("long", #pack.pack("l", 1), #pack.pack("a", "x"))
        log.info("wrap", pack.pack("b", 257):toHex())
        log.info("bad", pcall(pack.pack, "x", 1))
        sys.run()
    """)
    dev.run_for("1s")
    assert user(dev, "packed") == ["1234FFFEFFFFDEADBEEF 20"]
    assert user(dev, "unpacked") == ["11.0 4660 -2 255 -1 3735928559"]
    assert user(dev, "le") == ["3.0 4660"]
    assert user(dev, "short") == ["1.0"]  # too short: the position only, no value
    assert user(dev, "empty") == ["1"]
    assert user(dev, "strings") == ["9.0 ab cd ef"]
    assert user(dev, "init") == ["5.0 7"]
    assert user(dev, "float") == ["5.0 1.5"]
    assert user(dev, "long") == ["8 9"]  # 64-bit build: long and size_t are 8 bytes
    assert user(dev, "wrap") == ["01 2"]
    assert user(dev, "bad")[0].startswith("false") and "bad code `x'" in user(dev, "bad")[0]


def test_pack_on_a_32_bit_model(boot):
    dev = boot('log.info("long", #pack.pack("l", 1), #pack.pack("a", "x"))\nsys.run()',
               model="Air780E")
    dev.run_for("1s")
    assert user(dev, "long") == ["4 5"]
