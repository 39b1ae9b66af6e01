"""Under pytest-xdist every worker gets its own devices, server ports and data directories,
and a failed test's device log still reaches the controller's report."""

from __future__ import annotations

import json

import pytest

QUIET = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")


def test_two_workers(pytester: pytest.Pytester) -> None:
    proj = pytester.mkdir("proj")
    (proj / "main.lua").write_text('log.info("main", "up")\n'
                                   'sys.timerLoopStart(function() log.info("hb", "x") end, 500)\n'
                                   'sys.run()\n', encoding="utf-8")
    pytester.makeini("[pytest]\nluatos_project = proj\n")
    pytester.makepyfile("""
        import json
        import os
        from pathlib import Path

        import requests

        def record(name, dut, fota_server):
            dut.expect("I/user.main up")
            dut.expect("I/user.hb x", timeout="1s")
            health = requests.get(fota_server.url + "/healthz", timeout=30)
            assert health.status_code == 200
            product = fota_server.product("KEY_" + name, "XD_LuatOS-SoC_Air8101")
            assert fota_server.product("KEY_" + name, "XD_LuatOS-SoC_Air8101") == product
            out = Path(__file__).parent / f"{name}.json"
            out.write_text(json.dumps({
                "worker": os.environ.get("PYTEST_XDIST_WORKER"), "url": fota_server.url,
                "data_dir": str(fota_server.data_dir), "state_dir": str(dut.device.state_dir),
                "db": (fota_server.data_dir / "fota.db").exists()}))

        def test_one(dut, fota_server):
            record("one", dut, fota_server)

        def test_two(dut, fota_server):
            record("two", dut, fota_server)

        def test_fails(dut):
            dut.expect("I/user.main up")
            assert False, "on purpose"
    """)
    result = pytester.runpytest(*QUIET, "-n", "2")
    result.assert_outcomes(passed=2, failed=1)
    # the section was written on a worker and printed by the controller
    result.stdout.fnmatch_lines(["*luatos device log (sim; last * records; full log: *)*",
                                 "*luat:U(800):I/user.main up"])
    one = json.loads((pytester.path / "one.json").read_text())
    two = json.loads((pytester.path / "two.json").read_text())
    assert {one["worker"], two["worker"]} <= {"gw0", "gw1"}
    assert one["url"] != two["url"]
    assert one["data_dir"] != two["data_dir"] and one["state_dir"] != two["state_dir"]
    assert one["db"] and two["db"]


def test_one_board_refuses_several_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(dut):\n    pass\n\ndef test_b(dut):\n    pass\n")
    result = pytester.runpytest(*QUIET, "-n", "2", "--luatos-backend", "serial",
                                "--luatos-port", "loop://")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*one board on loop:// cannot serve 2 pytest-xdist workers*"])
