"""pwm: both API styles (open/close and setup/start/stop/setDuty/setFreq) and capture.

What the script drives lands on the bench (``dev.pwm``) and in the trace. A channel the model
does not have, a pulse above the precision or a frequency out of range makes the call return
false, as ``luat_pwm_setup`` failing does; ``pwm.start``/``setDuty``/``setFreq`` before
``pwm.setup`` log the firmware's error and return nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..cfunc import require_ints
from ..platform.pwm import PwmBench, PwmOutput

if TYPE_CHECKING:
    from ..vm import Boot

SETUP_CHANNELS = range(0, 6)
NOTHING = ()  # a C function returning no values (lupa unpacks the empty tuple)


@dataclass
class _Conf:
    freq: int
    pulse: int
    pulses: int
    precision: int


def install(boot: Boot) -> None:
    bench: PwmBench = boot.platform.pwm  # reset at boot: Platform.begin_boot
    confs: dict[int, _Conf] = {}
    generation: dict[int, int] = {}

    def apply(channel: int, conf: _Conf) -> bool:
        """luat_pwm_setup: start (or retune) the output; False when the hardware refuses."""
        if channel not in bench.channels:
            boot.log_c("E", "pwm", f"pwm channel {channel} not support")
            return False
        if conf.precision not in bench.precisions:
            boot.log_c("W", "pwm", f"precision {conf.precision} not support")
            return False
        if not 0 < conf.freq <= bench.max_freq_hz or not 0 <= conf.pulse <= conf.precision:
            return False
        bench.drive(channel, PwmOutput(conf.freq, conf.pulse, conf.precision, conf.pulses))
        generation[channel] = generation.get(channel, 0) + 1
        if conf.pulses > 0:  # a pulse train ends by itself
            gen = generation[channel]
            ms = max(1, -(-conf.pulses * 1000 // conf.freq))
            boot.post(ms, finished, channel, gen)
        return True

    def finished(channel: int, gen: int) -> None:
        if generation.get(channel) == gen:
            bench.drive(channel, None)

    def open_(channel: int, freq: int, pulse: float = 0, pnum: Any = None,
              precision: Any = None, *_: Any) -> bool:
        require_ints(channel, freq)
        pulses = int(pnum) if isinstance(pnum, int | float) else 0
        prec = int(precision) if isinstance(precision, int | float) else 100
        return apply(channel, _Conf(freq, int(pulse), pulses, prec))

    def close(channel: int, *_: Any) -> None:
        require_ints(channel)
        generation[channel] = generation.get(channel, 0) + 1
        bench.drive(channel, None)

    def setup(channel: int, freq: int, pulse: float = 0, pnum: Any = None,
              precision: Any = None, *_: Any) -> Any:
        if channel not in SETUP_CHANNELS:
            return NOTHING
        pulses = int(pnum) if isinstance(pnum, int | float) else 0
        prec = int(precision) if isinstance(precision, int | float) else 100
        confs[channel] = _Conf(freq, int(pulse), pulses, prec)
        return True

    def configured(channel: int) -> _Conf | None:
        require_ints(channel)
        if channel not in SETUP_CHANNELS:
            return None
        conf = confs.get(channel)
        if conf is None:
            boot.log_c("E", "pwm", f"call pwm.setup first!! {channel}")
        return conf

    def start(channel: int, *_: Any) -> Any:
        conf = configured(channel)
        return NOTHING if conf is None else apply(channel, conf)

    def stop(channel: int, *_: Any) -> Any:
        if configured(channel) is None:
            return NOTHING
        close(channel)
        confs.pop(channel, None)
        return True

    def set_duty(channel: int, pulse: int, *_: Any) -> Any:
        conf = configured(channel)
        if conf is None:
            return NOTHING
        conf.pulse = pulse
        return apply(channel, conf)

    def set_freq(channel: int, freq: int, *_: Any) -> Any:
        conf = configured(channel)
        if conf is None:
            return NOTHING
        conf.freq = freq
        return apply(channel, conf)

    def capture(channel: int, freq: int, *_: Any) -> bool:
        require_ints(channel, freq)
        if channel not in bench.channels:
            return False
        signal = bench.inputs.get(channel)
        if signal is not None:
            f, duty = signal
            period_us = 1_000_000 / f if f else 0
            high = round(period_us * duty)
            low = round(period_us - high)
            boot.post(max(1, -(-1000 // max(1, freq))), boot.sys_pub, b"PWM_CAPTURE", channel,
                      round(duty * 100), high, low)
        return True

    boot.firmware_module("pwm", {
        "open": open_, "close": close, "capture": capture, "setup": setup, "start": start,
        "stop": stop, "setDuty": set_duty, "setFreq": set_freq,
    })
