"""adc values and noise from the bench, CPU/VBAT channels, ranges; pwm outputs in the trace."""

from __future__ import annotations

import statistics


def user(dev, tag):
    return [ln.split(" ", 1)[1] if " " in ln else "" for ln in dev.lines()
            if ln.startswith(f"I/user.{tag} ")]


def test_adc_channels_from_the_bench(boot):
    dev = boot("""
        sys.taskInit(function()
            log.info("before", adc.get(2), adc.read(2))
            log.info("open", adc.open(2), adc.open(99), adc.open(adc.CH_CPU), adc.open(adc.CH_VBAT))
            log.info("v", adc.get(2), adc.get(adc.CH_CPU), adc.get(adc.CH_VBAT), adc.get(3))
            local raw, mv = adc.read(2)
            log.info("raw", raw, mv)
            adc.close(2)
            log.info("closed", adc.get(2))
            adc.setRange(adc.ADC_RANGE_MIN)
            adc.open(4)
            log.info("clamped", adc.get(4))
            log.info("consts", adc.CH_CPU, adc.CH_VBAT, adc.ADC_RANGE_MAX)
        end)
        sys.run()
    """)
    dev.adc.set(2, 1650)
    dev.adc.set(4, 2500)  # above the 1.2 V full scale of ADC_RANGE_MIN
    dev.adc.cpu_temp_c = 41.25
    dev.adc.vbat_mv = 3712
    dev.run_for("1s")
    assert user(dev, "before") == ["-1 255"]
    assert user(dev, "open") == ["true false true true"]
    assert user(dev, "v") == ["1650 41250 3712 -1"]  # channel 3 not opened
    raw, mv = map(int, user(dev, "raw")[0].split())
    assert raw == round(1650 * 4095 / 3300) and mv == 1650
    assert user(dev, "closed") == ["-1"]
    assert user(dev, "clamped") == ["1200"]
    assert user(dev, "consts") == ["-1 -2 14"]
    assert any("adc channel 99" in r.text for r in dev.log if r.tag == "luatos-sim")


def test_adc_noise_and_time_varying_source(boot):
    dev = boot("""
        sys.taskInit(function()
            adc.open(1) adc.open(0)
            for i = 1, 200 do
                log.info("n", adc.get(1))
                sys.wait(10)
            end
            log.info("ramp", adc.get(0))
        end)
        sys.run()
    """)
    dev.adc.set(1, 1000, noise_mv=8)
    dev.adc.set(0, lambda ms: ms // 10)
    dev.run_for("5s")
    values = [int(v) for v in user(dev, "n")]
    assert len(values) == 200
    assert abs(statistics.mean(values) - 1000) < 3
    assert 5 < statistics.pstdev(values) < 11
    ramp = int(user(dev, "ramp")[0])
    assert abs(ramp - dev.adc.reads[-1][0] // 10) <= 1


def test_pwm_open_close_and_setup_api_recorded_in_trace(boot):
    dev = boot("""
        sys.taskInit(function()
            log.info("open", pwm.open(5, 1000, 50), pwm.open(9, 1000, 50), pwm.open(4, 1000, 150))
            sys.wait(100)
            pwm.close(5)
            log.info("nosetup", pwm.start(2))
            log.info("setup", pwm.setup(1, 2000, 25), pwm.start(1))
            sys.wait(100)
            log.info("duty", pwm.setDuty(1, 75), pwm.setFreq(1, 4000))
            sys.wait(100)
            log.info("stop", pwm.stop(1))
            log.info("train", pwm.open(3, 100, 10, 5))
            pwm.capture(0, 1000)
            log.info("cap", sys.waitUntil("PWM_CAPTURE", 100))
        end)
        sys.run()
    """)
    dev.pwm.input(0, 500, 0.25)
    dev.run_for("3s")
    assert user(dev, "open") == ["true false false"]
    assert "I/user.nosetup" in dev.lines()  # no values at all, not nil
    assert "pwm:call pwm.setup first!! 2" in dev.lines()
    assert user(dev, "setup") == ["true true"]
    assert user(dev, "duty") == ["true true"]
    assert user(dev, "stop") == ["true"]
    assert user(dev, "cap") == ["true 0 25 500 1500"]
    hist = [(ms - dev.boots[0].started_ms, ch, f, p) for ms, ch, f, p, _prec, _n in dev.pwm.history]
    main = 800
    assert hist[:6] == [(main, 5, 1000, 50), (main + 100, 5, 0, 0), (main + 100, 1, 2000, 25),
                        (main + 200, 1, 2000, 75), (main + 200, 1, 4000, 75),
                        (main + 300, 1, 0, 0)]
    assert hist[6] == (main + 300, 3, 100, 10)
    assert hist[7] == (main + 350, 3, 0, 0)  # 5 pulses at 100 Hz end by themselves
    assert dev.pwm.state(3) is None
    events = [t for t in dev.trace if t.kind == "pwm"]
    assert events[0].detail["duty"] == 0.5 and events[0].detail["freq"] == 1000
