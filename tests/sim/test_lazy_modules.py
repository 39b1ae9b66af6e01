"""Firmware modules built on first use (modules/__init__.py): a boot builds only the bindings its
script touches, and the script cannot tell: the global is the module's table from the start,
the bench is reset at every boot, and building costs no virtual time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from luatos_sim import Device, DeviceOptions, modules
from luatos_sim.vm import Boot, compiled


def user(dev: Device, tag: str) -> list[str]:
    prefix = f"I/user.{tag} "
    return [line[len(prefix):] for line in dev.lines() if line.startswith(prefix)]


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The bindings built, in order, by every boot in the test."""
    names: list[str] = []
    real = modules.install_binding

    def record(boot: Boot, name: str) -> None:
        names.append(name)
        real(boot, name)
    monkeypatch.setattr(modules, "install_binding", record)
    yield names


def test_a_boot_builds_only_the_modules_its_script_touches(
        boot: Callable[..., Device], built: list[str]) -> None:
    dev = boot("""
        log.info("types", type(camera), type(lcd), type(mqtt), type(json))
        sys.taskInit(function()
            sys.wait(10)
            log.info("json", json.encode({1}))
        end)
        sys.run()
    """)
    dev.run_for("1s")
    assert user(dev, "types") == ["table table table table"]
    assert user(dev, "json") == ["[1]"]
    at_boot = [n for n in built if n in modules.AT_BOOT]
    assert at_boot == [n for n in modules.MODULES if n in modules.AT_BOOT
                       and (n in dev.profile.modules or n in modules.ALWAYS)]  # no sms here
    assert [n for n in built if n not in modules.AT_BOOT] == ["json"]  # not camera, lcd, mqtt


def test_the_untouched_module_table_behaves_as_a_built_one(boot: Callable[..., Device]) -> None:
    dev = boot("""
        local seen = 0
        for k, v in pairs(_G) do if k == "mcu" or k == "zbuff" then seen = seen + 1 end end
        log.info("globals", seen)
        local n = 0
        for k, v in pairs(mcu) do n = n + 1 end          -- pairs builds it first
        log.info("pairs", n > 5, type(mcu.ticks))
        log.info("len", #hmeta, type(hmeta.model))      -- # builds it first
        iconv.mine = 7                                  -- assignment builds it first
        log.info("assign", iconv.mine, type(iconv.open))
        local z = zbuff                                 -- the global changes before first use
        zbuff = nil
        log.info("kept", type(z.create), type(z.create(4)), zbuff)
        log.info("missing", tostring(gmssl.no_such_function))
        sys.run()
    """)
    dev.run_for("1s")
    assert user(dev, "globals") == ["2"]
    assert user(dev, "pairs") == ["true function"]
    assert user(dev, "len") == ["0 function"]
    assert user(dev, "assign") == ["7 function"]
    assert user(dev, "kept") == ["function userdata nil"]
    assert user(dev, "missing") == ["nil"]


def test_a_script_assignment_before_first_use_wins(boot: Callable[..., Device]) -> None:
    dev = boot("""
        rtc = {get = function() return "mine" end}
        log.info("rtc", rtc.get())
        sys.run()
    """)
    dev.run_for("1s")
    assert user(dev, "rtc") == ["mine"]


# The same twenty module touches, first in the main chunk and then (already built) in a task,
# or first in the task: with one instruction per virtual ms, any Lua the builds ran on the
# script's clock would show as whole seconds.
TOUCH = ("local _ = " + " or ".join(
    f"{m}.nothing" for m in ("camera", "lcd", "u8g2", "mqtt", "websocket", "httpsrv", "zbuff",
                             "json", "mcu", "rtc", "hmeta", "wdt", "fskv", "miniz", "iconv",
                             "gmssl", "i2c", "spi", "adc", "pwm")))
TIMED = """
    local early = ...
    if early then {touch} end
    sys.taskInit(function()
        local ticks = mcu.ticks
        local t0 = ticks()
        {touch}
        log.info("took", ticks() - t0)
    end)
    sys.run()
"""


@pytest.mark.parametrize("early", [True, False])
def test_building_a_module_inside_a_task_costs_no_virtual_time(
        boot: Callable[..., Device], early: bool) -> None:
    src = TIMED.replace("{touch}", TOUCH).replace("local early = ...",
                                                  f"local early = {str(early).lower()}")
    dev = boot(src, options=DeviceOptions(epoch_at_power_on=1_700_000_000,
                                          lua_instructions_per_ms=1))
    dev.run_for("1h")
    took = user(dev, "took")
    assert len(took) == 1
    assert int(took[0]) == 0  # no build ran on the script's clock


def boot_twice(boot: Callable[..., Device], first_boot_only: str) -> Device:
    """A project that runs ``first_boot_only`` (which logs ``I/user.first true``) and reboots;
    the second boot never touches that module."""
    return boot(f"""
        if fskv.init() and fskv.get("second") then
            log.info("second", "boot")
        else
            fskv.set("second", true)
            log.info("first", {first_boot_only})
            sys.timerStart(rtos.reboot, 100)
        end
        sys.run()
    """)


def test_a_reboot_stops_pwm_even_when_the_next_boot_never_touches_pwm(
        boot: Callable[..., Device]) -> None:
    dev = boot_twice(boot, "pwm.open(1, 1000, 50)")
    dev.run_until("I/user.first true", within="2s")
    assert 1 in dev.pwm.outputs
    dev.run_until("I/user.second boot", within="5s")
    assert dev.pwm.outputs == {}


def test_a_reboot_powers_the_lcd_off_when_the_next_boot_never_touches_lcd(
        boot: Callable[..., Device]) -> None:
    dev = boot_twice(boot, 'lcd.init("st7796", {w = 320, h = 480})')
    dev.run_until("I/user.first true", within="2s")
    assert dev.lcd.controller is not None
    dev.run_until("I/user.second boot", within="5s")
    assert dev.lcd.controller is None


def test_compiled_lua_keeps_the_chunk_name_and_line_numbers() -> None:
    import lupa.lua53 as lua53
    src = b"local x = nil\nreturn x.y\n"
    lua = lua53.LuaRuntime(encoding=None)
    errors = []
    for chunk in (src, compiled(src)):
        with pytest.raises(lua53.LuaError) as e:
            lua.execute(chunk)
        errors.append(str(e.value).split("\n")[0])
    assert errors[0] == errors[1]
    assert ':2: attempt to index a nil value' in errors[1]
    assert compiled(src) is compiled(src)  # parsed once
