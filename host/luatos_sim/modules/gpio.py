"""gpio: pins, levels, interrupts with debounce, pulse counters - and a test bench to drive them.

The outside world (a button, a sensor) is the test: ``dev.gpio.press(pin)`` or
``dev.gpio.set_input(pin, level, at="2s")`` changes an input's level at a virtual time; a pin
set up with an interrupt callback then gets ``cb(level, pin)`` from the event loop, like the
firmware delivering its ISR message, honouring the irq edge and ``gpio.debounce``. Outputs are
recorded so a test can read them (``dev.gpio.level(pin)``, ``dev.gpio.history``).

The bench (platform/gpio.py, ``dev.gpio``) is the outside world; this binding is the Lua face
and each boot's pin configuration. Constants are the generic values (docs/behaviour.md, "gpio";
Air8101 overrides UNCONFIRMED).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..platform.gpio import GpioBank
    from ..vm import Boot

CONSTANTS = {
    "LOW": 0, "HIGH": 1, "PULLUP": 1, "PULLDOWN": 2, "RISING": 0, "FALLING": 1, "BOTH": 2,
    "HIGH_IRQ": 3, "LOW_IRQ": 4, "NONE": 0xFF,
}
# Pins only the Cat.1 chips define (virtual GPIOs), by the profile's chip. PWR_KEY follows the
# vendor's pwrkey demo (35 on EC618, 46 on EC718); the WAKEUP numbers are UNCONFIRMED
# (docs/defaults.md). WAKEUP3..5 are GPIO20..22 per the API docs.
CHIP_CONSTANTS: dict[str, dict[str, int]] = {
    "EC618": {"WAKEUP0": 32, "WAKEUP1": 33, "WAKEUP2": 34, "WAKEUP3": 20, "WAKEUP4": 21,
              "WAKEUP5": 22, "PWR_KEY": 35},
    "EC718": {"WAKEUP0": 40, "WAKEUP1": 41, "WAKEUP2": 42, "WAKEUP3": 20, "WAKEUP4": 21,
              "WAKEUP5": 22, "WAKEUP6": 47, "PWR_KEY": 46},
}
PULLUP, PULLDOWN = 1, 2
RISING, FALLING, BOTH, HIGH_IRQ, LOW_IRQ = 0, 1, 2, 3, 4
MAX_PIN = 255


@dataclass
class PinConfig:
    kind: str  # "out" | "in" | "irq" | "count"
    pull: int | None = None
    irq: int = BOTH
    cb: Any = None  # Lua callback (irq)
    count: int = 0
    debounce_ms: int = 0
    debounce_mode: int = 0  # 0: cool-down after a fire, 1: fire once stable for debounce_ms
    last_fire: int | None = None
    settle_gen: int = 0


class _BootPins:
    """Pin configuration of one boot (a reboot resets every pin)."""

    def __init__(self, boot: Boot, bank: GpioBank) -> None:
        self.boot = boot
        self.bank = bank
        self.pins: dict[int, PinConfig] = {}

    def read(self, pin: int) -> int:
        cfg = self.pins.get(pin)
        if cfg is not None and cfg.kind == "out":
            return self.bank.outputs.get(pin, 0)
        if pin in self.bank.inputs:
            return self.bank.inputs[pin]
        if cfg is not None and cfg.pull == PULLUP:
            return 1
        return 0

    def edge(self, pin: int, old: int | None, new: int) -> None:
        cfg = self.pins.get(pin)
        if cfg is None or cfg.kind not in ("irq", "count"):
            return
        rising = new == 1 and old != 1
        wanted = {RISING: rising, FALLING: not rising, BOTH: True,
                  HIGH_IRQ: new == 1, LOW_IRQ: new == 0}.get(cfg.irq, True)
        if cfg.debounce_ms and cfg.debounce_mode == 1:
            # Delay mode: fire only if the level holds for debounce_ms.
            cfg.settle_gen += 1
            gen = cfg.settle_gen
            if wanted:
                self.boot.post(cfg.debounce_ms, self._settled, pin, gen, new)
            return
        if not wanted:
            return
        now = self.boot.now
        if cfg.debounce_ms and cfg.last_fire is not None and now - cfg.last_fire < \
                cfg.debounce_ms:
            return
        self._fire(pin, cfg, new)

    def _settled(self, pin: int, gen: int, level: int) -> None:
        cfg = self.pins.get(pin)
        if cfg is None or cfg.settle_gen != gen or self.read(pin) != level:
            return
        self._fire(pin, cfg, level)

    def _fire(self, pin: int, cfg: PinConfig, level: int) -> None:
        cfg.last_fire = self.boot.now
        self.bank.fired.append((self.boot.now, pin, level))
        if cfg.kind == "count":
            cfg.count += 1
            return
        self.boot.trace("gpio_irq", pin=pin, level=level)
        if cfg.cb is not None:
            self.boot.post(0, cfg.cb, level, pin)


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int | float):
        return int(v)
    return None


def install(boot: Boot) -> None:
    bank = boot.platform.gpio
    pins = _BootPins(boot, bank)
    bank.pins = pins
    bank.outputs.clear()

    def forget() -> None:
        if bank.pins is pins:
            bank.pins = None
    boot.closers.append(forget)

    def write_out(pin: int, level: int) -> None:
        level = 1 if level else 0
        bank.outputs[pin] = level
        bank.history.append((boot.now, pin, level, "out"))
        for watch in bank.watchers:
            watch(pin, level)

    def setup(pin: Any, kind: bytes, pull: Any = None, irq: Any = None, cb: Any = None) -> bool:
        p = _int(pin)
        if p is None or not 0 <= p <= MAX_PIN:
            return False
        k = kind.decode()
        pl = _int(pull)
        edge = _int(irq)
        cfg = PinConfig(kind="out" if k.startswith("out") else k,
                        pull=pl if pl in (PULLUP, PULLDOWN) else None,
                        irq=BOTH if edge is None else edge, cb=cb)
        old = pins.pins.get(p)
        if old is not None:
            cfg.debounce_ms, cfg.debounce_mode = old.debounce_ms, old.debounce_mode
        pins.pins[p] = cfg
        if k.startswith("out"):
            write_out(p, 1 if k == "out1" else 0)
        else:
            bank.outputs.pop(p, None)
        return True

    def set_level(pin: Any = None, level: Any = None, *_: Any) -> None:
        p = _int(pin)
        if p is None:
            return
        cfg = pins.pins.get(p)
        if cfg is not None and cfg.kind == "out":
            write_out(p, _int(level) or 0)

    def get_level(pin: Any = None, *_: Any) -> int | None:
        p = _int(pin)
        if p is None:
            return None
        return pins.read(p)

    def close(pin: Any = None, *_: Any) -> None:
        p = _int(pin)
        if p is not None:
            pins.pins.pop(p, None)
            bank.outputs.pop(p, None)

    def toggle(pin: Any = None, *_: Any) -> None:
        p = _int(pin)
        if p is not None and p in pins.pins and pins.pins[p].kind == "out":
            write_out(p, 0 if bank.outputs.get(p, 0) else 1)

    def pulse(pin: Any = None, level: Any = None, length: Any = None, delay: Any = None,
              *_: Any) -> None:
        p = _int(pin)
        if p is None:
            return
        # The pulse train is over in microseconds: record it and leave the pin as it was.
        n = _int(length) or 0
        bank.history.append((boot.now, p, _int(level) or 0, f"pulse x{n}"))

    def debounce(pin: Any = None, ms: Any = None, mode: Any = None, *_: Any) -> None:
        p = _int(pin)
        if p is None:
            return
        cfg = pins.pins.get(p)
        if cfg is None:
            cfg = pins.pins[p] = PinConfig(kind="in")
        cfg.debounce_ms = max(0, _int(ms) or 0)
        cfg.debounce_mode = _int(mode) or 0

    def count(pin: Any = None, *_: Any) -> int:
        p = _int(pin)
        cfg = pins.pins.get(p) if p is not None else None
        if cfg is None or cfg.kind != "count":
            return 0
        n, cfg.count = cfg.count, 0
        return n

    boot.firmware_module("gpio", {
        "_setup": setup, "set": set_level, "get": get_level, "close": close,
        "toggle": toggle, "pulse": pulse, "debounce": debounce, "count": count,
    }, {**CONSTANTS, **CHIP_CONSTANTS.get(boot.profile.chip, {})})
    # setup's return conventions (a setter / getter closure, nil on a bad pin) in Lua, so the
    # values are real Lua functions and `gpio.count` works as a mode.
    boot.execute(b"""
      local raw = gpio._setup
      gpio._setup = nil
      local set, get = gpio.set, gpio.get
      local tointeger, select, type = math.tointeger, select, type
      function gpio.setup(...)
        local pin, mode, pull, irq, alt = ...
        -- luaL_checkinteger(L, 1)
        local p = tointeger(pin)
        if p == nil and type(pin) == "string" then p = tointeger(tonumber(pin)) end
        if p == nil then
          local what
          if type(pin) == "number" then
            error("bad argument #1 to 'setup' (number has no integer representation)", 2)
          end
          what = (pin == nil and select("#", ...) == 0) and "no value" or type(pin)
          error("bad argument #1 to 'setup' (number expected, got " .. what .. ")", 2)
        end
        pin = p
        local kind, cb
        if mode == gpio.count then kind = "count"
        elseif type(mode) == "function" then kind, cb = "irq", mode
        elseif mode == nil then kind = "in"
        elseif mode == 0 or mode == false then kind = "out0"
        else kind = "out1" end
        if not raw(pin, kind, pull, irq, cb) then return nil end
        if kind == "out0" or kind == "out1" then
          return function(v) set(pin, v) end
        end
        return function() return get(pin) end
      end
    """)
