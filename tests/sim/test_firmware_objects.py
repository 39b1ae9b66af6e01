"""Firmware objects are userdata, print as the device prints them, and carry Python state
(issue 9 item 8; luatos_sim.objects)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from luatos_sim import Device


def _lines(dev: Device, tag: str) -> list[str]:
    return [ln.split(f"I/user.{tag} ", 1)[1] for ln in dev.lines() if f"I/user.{tag} " in ln]


def test_zbuff_is_a_ZBUFF_userdata(boot: Callable[..., Device]) -> None:
    dev = boot("""
        PROJECT = "fo" VERSION = "1.0.0"
        local z = zbuff.create(10)
        log.info("type", type(z), #z)
        log.info("str", tostring(z))
        z[0] = 0x41
        z:seek(1)
        z:write("BC")
        log.info("data", z:query(), z[0], z[2], z.nosuch, z:len())
        local other = zbuff.create(4)
        other:copy(nil, z)
        log.info("copy", other:query())
        log.info("same", tostring(z) == tostring(z), tostring(z) ~= tostring(other))
        log.info("err", pcall(z.seek, "x"))
    """)
    dev.run_for("1s")
    assert _lines(dev, "type") == ["userdata 10"]
    assert re.fullmatch(r"ZBUFF\*: 0x[0-9a-f]+", _lines(dev, "str")[0])
    assert _lines(dev, "data") == ["ABC 65 67 nil 10"]
    assert _lines(dev, "copy") == ["ABC"]
    assert _lines(dev, "same") == ["true true"]
    err = _lines(dev, "err")[0]
    assert err.startswith("false ") and "ZBUFF* expected, got string" in err


def test_json_null_is_userdata(boot: Callable[..., Device]) -> None:
    dev = boot("""
        PROJECT = "fo" VERSION = "1.0.0"
        local v = json.decode("null")
        log.info("null", type(json.null), tostring(json.null), v == json.null,
                 json.encode({a = json.null}))
    """)
    dev.run_for("1s")
    assert _lines(dev, "null") == ['userdata userdata: NULL true {"a":null}']


def test_socket_ctrl_is_a_NWCTRL_userdata(boot: Callable[..., Device]) -> None:
    dev = boot("""
        PROJECT = "fo" VERSION = "1.0.0"
        sys.taskInit(function()
            local sc = socket.create(socket.LWIP_STA, function() end)
            log.info("sock", type(sc), tostring(sc))
            local ok, err = pcall(function() return sc.state end)
            log.info("index", ok, err)
            log.info("state", socket.state(sc))
        end)
        sys.run()
    """)
    dev.run_for("2s")
    kind, text = _lines(dev, "sock")[0].split(" ", 1)
    assert kind == "userdata" and re.fullmatch(r"NWCTRL\*: 0x[0-9a-f]+", text)
    assert _lines(dev, "index") == ["false main.lua:5: attempt to index a NWCTRL* value"]
    assert _lines(dev, "state")[0].startswith("1 ") or _lines(dev, "state")[0].startswith("0 ")


class Counter:
    """The Python state of a made-up firmware object."""

    def __init__(self, start: int) -> None:
        self.value = start
        self.collected = False


def test_a_binding_defines_its_own_object_type(boot: Callable[..., Device]) -> None:
    """The API other modules build on: methods, __tostring, __len, __gc, state in Python."""
    dev = boot("""
        PROJECT = "fo" VERSION = "1.0.0"
        sys.taskInit(function()
            sys.waitUntil("GO")
            local c = counter.new(5)
            c:add(2)
            c:add(3, "extra args are dropped")
            log.info("obj", type(c), tostring(c), #c, counter.peek(c))
            log.info("bad", pcall(c.add, c, "x"))
            c = nil
            collectgarbage()
            collectgarbage()
            log.info("gone")
        end)
        sys.run()
    """)
    dev.run_for("1s")
    b = dev.boot
    assert b is not None
    made: list[Counter] = []

    def new(start: int) -> Counter:
        c = Counter(start)
        made.append(c)
        return c

    def add(c: Counter, n: int) -> None:
        c.value += n

    def peek(c: Any) -> int:
        assert isinstance(c, Counter)  # the binding gets its own object back
        return c.value

    def collected(c: Counter) -> None:
        c.collected = True

    b.objects.define(Counter, "COUNTER*", methods={"add": add},
                     tostring=lambda c: f"counter({c.value})", length=lambda c: c.value,
                     gc=collected)
    b.firmware_module("counter", {"new": new, "peek": peek})
    b.post(0, b.sys_pub, b"GO")
    dev.run_until("gone", within="1s")
    assert _lines(dev, "obj") == ["userdata counter(10) 10 10"]
    bad = _lines(dev, "bad")[0]
    assert bad == "false bad argument #2 to 'add' (number expected, got string)"
    assert made and made[0].collected


def test_other_python_objects_keep_lupas_behaviour(boot: Callable[..., Device]) -> None:
    """The dispatcher only changes registered classes."""
    dev = boot("""
        PROJECT = "fo" VERSION = "1.0.0"
        sys.taskInit(function() sys.waitUntil("GO") log.info("plain", tostring(thing)) end)
        sys.run()
    """)
    dev.run_for("1s")
    b = dev.boot
    assert b is not None

    class Plain:
        def __str__(self) -> str:
            return "plain python"

    b.G[b"thing"] = Plain()
    b.post(0, b.sys_pub, b"GO")
    dev.run_until("plain", within="1s")
    assert _lines(dev, "plain") == ["plain python"]
