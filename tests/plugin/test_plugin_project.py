"""A user's own project, laid out the way users lay it out: main.lua at the repository root,
tests beside it, no ini option. Discovery, ``luatos_app``, ``publish_project`` and
``expect(not_matching=...)``, through inner pytest runs (pytester)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

QUIET = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")

# A small project of the kind a newcomer writes: it checks for an upgrade once at boot and
# reboots into it. PRODUCT_KEY in main.lua is libfota2's default project_key.
MAIN_LUA = """
PROJECT = "MYAPP"
VERSION = "001.000.000"
PRODUCT_KEY = "MY_PRODUCT_KEY"

local libfota2 = require "libfota2"

local function on_result(ret)
    log.info("fota", "result", ret)
    if ret == 0 then rtos.reboot() end
end

sys.taskInit(function()
    log.info("main", PROJECT, VERSION)
    wlan.init()
    wlan.connect("my-ssid", "my-password")
    sys.waitUntil("IP_READY", 30000)
    libfota2.request(on_result, {url = "http://192.168.1.10:8000/api/site/firmware_upgrade?"})
end)

sys.run()
"""

UPGRADE_TEST = """
def test_upgrade(luatos_app, fota_server, luatos_device, dut):
    assert (luatos_app.name, luatos_app.version) == ("MYAPP", "001.000.000")
    assert luatos_app.firmware_name == "MYAPP_LuatOS-SoC_Air8101"
    luatos_device.net.map_address("192.168.1.10:8000", fota_server.address)
    release = fota_server.publish_project(luatos_app, version="001.000.001")
    assert release["script_version"] == "001.000.001"
    dut.expect(r"main MYAPP 001\\.000\\.000", timeout="5s")
    dut.expect(r"fota result 0", timeout="1m", not_matching=r"fota result [1-9]")
    dut.expect(r"main MYAPP 001\\.000\\.001", timeout="1m")
    dut.expect(r"fota result 4", timeout="1m")  # up to date: the server answered 304
"""


def run_outside(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An inner run whose temporary files live outside the project (pytester's default puts
    them under the rootdir, which here *is* the project, so the device would flash them)."""
    base = pytester.path.parent / f"{pytester.path.name}-tmp"
    return pytester.runpytest_subprocess(*QUIET, f"--basetemp={base}", *args)


TESTING_MD = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def doc_files(tag: str = "own-project") -> dict[str, str]:
    """The files docs/testing.md's walk-through (``tag``) tells a newcomer to write, by path."""
    text = TESTING_MD.read_text(encoding="utf-8")
    rx = re.compile(rf"^<!-- {tag}:(?P<path>\S+) -->\n```\w+\n(?P<body>.*?)^```$", re.M | re.S)
    return {m["path"]: m["body"] for m in rx.finditer(text)}


def test_the_walk_through_in_docs_testing_md_passes_as_written(pytester: pytest.Pytester) -> None:
    files = doc_files()
    assert sorted(files) == ["main.lua", "tests/test_fota.py"]
    pytester.makeini("[pytest]\n")
    for rel, body in files.items():
        (pytester.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / rel).write_text(body, encoding="utf-8")
    result = run_outside(pytester)
    result.assert_outcomes(passed=1)


def test_the_mqtt_walk_through_in_docs_testing_md_passes_as_written(
        pytester: pytest.Pytester, mqtt_broker: Any) -> None:
    """The MQTT-triggered upgrade of the walk-through, run as a user would (its own broker
    fixture inside; this test's ``mqtt_broker`` only makes it skip or fail like every MQTT
    test when Mosquitto is missing)."""
    files = doc_files("own-project-mqtt")
    assert sorted(files) == ["main.lua", "tests/test_fota_mqtt.py"]
    pytester.makeini("[pytest]\n")
    for rel, body in files.items():
        (pytester.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / rel).write_text(body, encoding="utf-8")
    result = run_outside(pytester)
    result.assert_outcomes(passed=1)


@pytest.fixture
def user_repo(pytester: pytest.Pytester) -> Path:
    """main.lua at the root, tests/ beside it, an ini with nothing LuatOS in it."""
    (pytester.path / "main.lua").write_text(MAIN_LUA, encoding="utf-8")
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    pytester.mkdir("tests")
    return pytester.path


def test_rootdir_holding_main_lua_is_the_project_and_it_upgrades(
        pytester: pytest.Pytester, user_repo: Path) -> None:
    (user_repo / "tests" / "test_fota.py").write_text(UPGRADE_TEST, encoding="utf-8")
    result = run_outside(pytester)
    result.assert_outcomes(passed=1)
    # The working copy was not edited to build 001.000.001.
    assert 'VERSION = "001.000.000"' in (user_repo / "main.lua").read_text(encoding="utf-8")


def test_publish_without_a_product_key_and_not_matching_fail_with_reasons(
        pytester: pytest.Pytester, user_repo: Path) -> None:
    (user_repo / "main.lua").write_text(MAIN_LUA.replace('PRODUCT_KEY = "MY_PRODUCT_KEY"\n', ""),
                                        encoding="utf-8")
    (user_repo / "tests" / "test_reasons.py").write_text("""
import pytest
from luatos_testing.dut import UnexpectedLine

def test_key_is_asked_for(luatos_app, fota_server):
    with pytest.raises(ValueError, match=r"sets no PRODUCT_KEY: pass .*project_key="):
        fota_server.publish_project(luatos_app, version="001.000.001")
    rel = fota_server.publish_project(luatos_app, version="001.000.001", project_key="K2",
                                      percent=10)
    assert rel["target_mode"] == "percent" and rel["percent"] == 10

def test_not_matching_stops_at_the_line(dut, luatos_device):
    # libfota2 is missing its key here: callback 5 at once, long before the timeout.
    with pytest.raises(UnexpectedLine, match=r"fota result 5.*not_matching"):
        dut.expect(r"fota result 0", timeout="1h", not_matching=r"fota result [1-9]")
    assert luatos_device.current_ms() < 60_000

def test_bad_version_is_named(luatos_app):
    with pytest.raises(ValueError, match=r"'1\\.1' is not xxx\\.yyy\\.zzz"):
        luatos_app.package("1.1")
""", encoding="utf-8")
    result = run_outside(pytester)
    result.assert_outcomes(passed=3)


def test_no_project_anywhere_says_how_to_name_one(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile("""
        def test_needs_device(dut):
            pass

        def test_needs_app(luatos_app):
            pass
    """)
    result = pytester.runpytest_subprocess(*QUIET)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([
        "*LuatOS project */device does not exist (from default (device/ under the rootdir));"
        " name the project with --luatos-project DIR, the luatos_project ini option, or"
        " @pytest.mark.luatos_project(*",
    ])
    result.stdout.fnmatch_lines(["*LuatOS project from default*--luatos-project DIR*"])


def test_cli_option_beats_the_rootdir_main_lua(pytester: pytest.Pytester, user_repo: Path) -> None:
    other = pytester.mkdir("other")
    (other / "main.lua").write_text('PROJECT = "OTHER"\nVERSION = "003.000.001"\n'
                                    'log.info("main", PROJECT)\nsys.run()\n', encoding="utf-8")
    (user_repo / "tests" / "test_which.py").write_text("""
def test_which(luatos_app, dut):
    assert luatos_app.name == "OTHER"
    dut.expect("main OTHER", timeout="2s")
""", encoding="utf-8")
    result = run_outside(pytester, "--luatos-project", "other")
    result.assert_outcomes(passed=1)
