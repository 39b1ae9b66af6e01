"""The module interface: one registration table, one API surface per model.

A firmware module is a binding file registered in ``modules.MODULES``; what each model's
firmware has (modules and functions) is listed in ``profiles.py``, and the boot installs exactly
that intersection.
"""

from __future__ import annotations

import importlib

import pytest

from luatos_sim import Device, DeviceOptions
from luatos_sim.modules import MODULES
from luatos_sim.profiles import COMMON_API, PROFILES, get_profile

PROBE = """
local names = {}
for _, m in ipairs({%s}) do
  local t = _G[m]
  local fns = {}
  if type(t) == "table" then
    for k, v in pairs(t) do if type(v) == "function" then fns[#fns + 1] = k end end
    table.sort(fns)
    names[#names + 1] = m .. "=" .. table.concat(fns, ",")
  else
    names[#names + 1] = m .. "=nil"
  end
end
for _, n in ipairs(names) do log.info("api", n) end
sys.run()
"""


def installed(model: str, **overrides: object) -> dict[str, set[str] | None]:
    """What a boot of ``model`` exposes, per registered module: its functions, or None (nil)."""
    mods = ", ".join(f'"{m}"' for m in MODULES)
    with Device(files={"main.lua": (PROBE % mods).encode()}, model=model,
                options=DeviceOptions(epoch_at_power_on=0), **overrides) as dev:
        dev.run_for("1s")
        out: dict[str, set[str] | None] = {}
        for line in dev.lines():
            if line.startswith("I/user.api "):
                name, _, fns = line.split(" ", 1)[1].partition("=")
                out[name] = None if fns == "nil" else set(filter(None, fns.split(",")))
        return out


def test_every_registered_binding_has_install() -> None:
    for name, binding in MODULES.items():
        mod = importlib.import_module(f"luatos_sim.modules.{binding}")
        assert callable(getattr(mod, "install", None)), f"{name}: {binding}.py has no install()"


@pytest.mark.parametrize("model", sorted(PROFILES))
def test_boot_installs_the_models_surface_and_nothing_else(model: str) -> None:
    profile = get_profile(model)
    seen = installed(model)
    for name in MODULES:
        surface = profile.api.get(name)
        if surface is None:
            assert seen[name] is None, f"{model} has no {name} module, yet the global exists"
            continue
        fns = seen[name]
        assert fns is not None, f"{model}: {name} is listed in its profile but is nil"
        extra = fns - surface
        assert not extra, f"{model}: {name} has functions its firmware lacks: {sorted(extra)}"


def test_cat1_models_have_mobile_and_the_wifi_model_does_not() -> None:
    assert "mobile" not in get_profile("Air8101").modules
    assert "mobile" in get_profile("Air780E").modules
    assert "wlan" not in get_profile("Air780E").modules
    assert {"wlan", "mobile"} <= get_profile("Air8000").modules


def test_a_function_left_out_of_the_surface_is_nil() -> None:
    """The surface filters the binding: drop pm.keep from a model and the script sees nil."""
    api = dict(get_profile("Air8101").api)
    api["pm"] = api["pm"] - {"keep"}
    seen = installed("Air8101", api=api)
    assert seen["pm"] is not None and "keep" not in seen["pm"]
    assert "dtimerStart" in seen["pm"]
    assert "keep" in installed("Air8101")["pm"]  # type: ignore[operator]


def test_a_module_left_out_of_the_profile_is_a_nil_global() -> None:
    api = {k: v for k, v in COMMON_API.items() if k != "spi"}
    assert installed("Air8101", api=api)["spi"] is None


def test_listed_but_unemulated_function_is_named_not_emulated() -> None:
    """wlan.staIp is in the firmware's table; the emulator has no binding for it yet."""
    assert "staIp" in get_profile("Air8101").api["wlan"]
    src = 'sys.taskInit(function() sys.wait(10); wlan.staIp(true) end)\nsys.run()\n'
    with Device(files={"main.lua": src.encode()}, model="Air8101") as dev:
        dev.run_for("1s")
        sim = [r.text for r in dev.log if r.source == "sim"]
    assert any("wlan.staIp is not emulated" in t for t in sim), sim
