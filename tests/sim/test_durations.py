"""One duration rule: a duration names its unit everywhere (API, DUT, CLI); a bare number is
refused with a message saying how to write it; only 0 needs no unit."""

from __future__ import annotations

import contextlib
import io

import pytest

from luatos_sim import Device, parse_duration
from luatos_sim.cli import main
from luatos_testing.dut import SimDut, timeout_ms

from .conftest import write_project


@pytest.mark.parametrize("value, ms", [
    ("500ms", 500), ("10s", 10_000), ("1.5s", 1500), ("10m", 600_000), ("1h30m", 5_400_000),
    ("2d", 172_800_000), (0, 0), ("0", 0), (" 4h ", 14_400_000),
])
def test_durations_with_units(value: object, ms: int) -> None:
    assert parse_duration(value) == ms  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [10, 2.5, "10", "1.5", 1000])
def test_a_bare_number_is_refused_with_the_fix(value: object) -> None:
    with pytest.raises(ValueError, match=r"has no unit: write '.*s' or '.*ms'"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, -5, "10 parsecs", "s", ""])
def test_other_bad_durations_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)  # type: ignore[arg-type]


def test_device_dut_and_bench_apis_share_the_rule() -> None:
    with Device(files={"main.lua": b"sys.run()"}) as dev:
        with pytest.raises(ValueError, match="no unit"):
            dev.run_for(1000)
        with pytest.raises(ValueError, match="no unit"):
            dev.run_until("x", within=5)
        with pytest.raises(ValueError, match="no unit"):
            dev.gpio.set_input(3, 1, at=5)
        with pytest.raises(ValueError, match="no unit"):
            dev.net.latency(50)
        with pytest.raises(ValueError, match="no unit"):
            dev.schedule(10, lambda: None)
        dut = SimDut(dev)
        with pytest.raises(ValueError, match="no unit"):
            dut.expect("x", timeout=5)
        with pytest.raises(ValueError, match="no unit"):
            dut.run_for(5)
        assert timeout_ms("5s") == 5000
        dev.run_for("1s")
        assert dev.current_ms() == 1000


def test_cli_refuses_a_bare_number_as_a_usage_error(tmp_path) -> None:
    proj = write_project(tmp_path / "p", {"main.lua": "sys.run()"})
    for argv in (["--for", "10"], ["--exit-reboot-delay", "15000"],
                 ["--for", "1s", "--reply-window", "100"]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["run", str(proj), *argv], out=io.StringIO())
        assert code == 2, argv
        assert "no unit" in err.getvalue(), (argv, err.getvalue())
    assert main(["run", str(proj), "--for", "1s", "--reply-window", "100ms"],
                out=io.StringIO()) == 0
