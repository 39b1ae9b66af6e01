"""socket.dft() is each model's default adapter: the 4G bearer on the Cat.1 models, so the
vendor's Air8000 demos that wait on socket.adapter(socket.dft()) get going (issue 9 item 3)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from luatos_sim import Device

WAIT_DFT = """
PROJECT = "dft" VERSION = "1.0.0"
sys.taskInit(function()
    log.info("dft", socket.dft())
    local n = 0
    while not socket.adapter(socket.dft()) and n < 30 do
        sys.waitUntil("IP_READY", 1000)
        n = n + 1
    end
    log.info("up", socket.adapter(socket.dft()))
end)
sys.run()
"""


@pytest.mark.parametrize(("model", "dft"), [("Air8000", 1), ("Air780E", 1), ("Air8101", 2)])
def test_default_adapter_per_model(boot: Callable[..., Device], model: str, dft: int) -> None:
    dev = boot(WAIT_DFT, model=model)
    dev.run_for("2s")
    assert f"I/user.dft {dft} {dft}" in dev.lines()


def test_air8000_with_only_4g_gets_going(boot: Callable[..., Device]) -> None:
    dev = boot(WAIT_DFT, model="Air8000")
    rec = dev.run_until("I/user.up", within="30s")
    assert rec.line == "I/user.up true 1"
