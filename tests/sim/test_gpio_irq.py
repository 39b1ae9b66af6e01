"""gpio: setup conventions, outputs, interrupts with debounce, counters, a button-driven upgrade."""

from __future__ import annotations

from luatos_common.packages import build_air8101_ota


def user(dev, tag, boot=None):
    return [ln for ln in dev.lines(boot) if ln.startswith(f"I/user.{tag} ")]


def test_setup_return_conventions_and_outputs(boot):
    dev = boot("""
        local led = gpio.setup(27, 0)
        local inp = gpio.setup(9, nil, gpio.PULLUP)
        local down = gpio.setup(10, nil, gpio.PULLDOWN)
        log.info("types", type(led), type(inp), gpio.setup(-1, 0), gpio.setup(300, nil))
        log.info("levels", gpio.get(27), inp(), down(), gpio.get(11))
        led(1)
        log.info("after", gpio.get(27))
        gpio.toggle(27)
        log.info("toggled", gpio.get(27))
        gpio.set(27, 1)
        gpio.close(27)
        log.info("consts", gpio.LOW, gpio.HIGH, gpio.PULLUP, gpio.PULLDOWN, gpio.RISING,
                 gpio.FALLING, gpio.BOTH, gpio.HIGH_IRQ, gpio.LOW_IRQ, gpio.NONE)
        sys.run()
    """)
    dev.run_for("1s")
    assert user(dev, "types") == ["I/user.types function function nil nil"]
    assert user(dev, "levels") == ["I/user.levels 0 1 0 0"]
    assert user(dev, "after") == ["I/user.after 1"]
    assert user(dev, "toggled") == ["I/user.toggled 0"]
    assert user(dev, "consts") == ["I/user.consts 0 1 1 2 0 1 2 3 4 255"]
    outs = [(pin, lv) for _, pin, lv, what in dev.gpio.history if what == "out"]
    assert outs == [(27, 0), (27, 1), (27, 0), (27, 1)]
    assert dev.gpio.level(27) is None  # closed


def test_interrupt_edges_and_input_getter(boot):
    dev = boot("""
        local get = gpio.setup(5, function(level, pin) log.info("irq", pin, level) end,
                               gpio.PULLUP, gpio.FALLING)
        sys.timerLoopStart(function() log.info("lvl", get()) end, 1000)
        sys.run()
    """)
    dev.gpio.press(5, hold="300ms", at="1700ms")  # low from 1.7 s to 2.0 s
    dev.run_for("3s")
    assert user(dev, "irq") == ["I/user.irq 5 0"]  # falling only, not the release
    assert user(dev, "lvl") == ["I/user.lvl 0", "I/user.lvl 1"]  # read at 1.8 s and 2.8 s
    irq = [t for t in dev.trace if t.kind == "gpio_irq"]
    assert [t.ms for t in irq] == [1700]


def test_debounce_cool_down_drops_bounces(boot):
    dev = boot("""
        gpio.debounce(5, 50)
        gpio.setup(5, function(level) log.info("irq", level) end, gpio.PULLUP, gpio.BOTH)
        sys.run()
    """)
    dev.gpio.bounce(5, [0, 1, 0, 1, 0], step="5ms", at="1s")  # contact bounce, ends low
    dev.gpio.set_input(5, 1, at="1500ms")
    dev.run_for("2s")
    assert user(dev, "irq") == ["I/user.irq 0", "I/user.irq 1"]


def test_debounce_delay_mode_fires_once_stable(boot):
    dev = boot("""
        gpio.setup(6, function(level) log.info("irq", level) end, gpio.PULLUP, gpio.FALLING)
        gpio.debounce(6, 20, 1)
        sys.run()
    """)
    dev.gpio.bounce(6, [0, 1, 0, 1], step="5ms", at="1s")  # never stable low: nothing
    dev.gpio.set_input(6, 0, at="1500ms")  # stable low for 20 ms: one interrupt
    dev.run_for("2s")
    assert user(dev, "irq") == ["I/user.irq 0"]
    fired = [ms for ms, pin, _lv in dev.gpio.fired if pin == 6]
    assert fired == [1520]


def test_pulse_counter(boot):
    dev = boot("""
        gpio.setup(7, gpio.count, gpio.PULLUP, gpio.FALLING)
        sys.timerStart(function() log.info("count", gpio.count(7), gpio.count(7)) end, 3000)
        sys.run()
    """)
    for i in range(4):
        dev.gpio.press(7, hold="50ms", at=f"{1000 + i * 200}ms")
    dev.run_for("4s")
    assert user(dev, "count") == ["I/user.count 4 0"]


def test_button_triggers_an_upgrade(boot):
    dev = boot("""
        gpio.debounce(4, 100)
        gpio.setup(4, function()
          sys.publish("BUTTON")
        end, gpio.PULLUP, gpio.FALLING)
        sys.taskInit(function()
          sys.waitUntil("BUTTON")
          log.info("btn", "upgrade")
          fota.init()
          local ok, done = fota.file("/pkg.bin")
          if done and fota.finish(true) then rtos.reboot() end
        end)
        sys.run()
    """)
    new = b'log.info("app", "upgraded by button")\nsys.run()\n'
    (dev.fs_root / "pkg.bin").write_bytes(build_air8101_ota({"main.lua": new}))
    dev.run_for("5s")
    assert not user(dev, "btn")  # nothing happens until the button is pressed
    dev.gpio.press(4, hold="200ms", at="1s")
    dev.run_until("upgraded by button", within="5s")
    assert [b.reason for b in dev.boots] == ["power-on", "reboot"]
