"""pytest plugin for LuatOS projects (registered through the ``pytest11`` entry point).

The same test runs on the emulator and on a board: the backend is a command-line choice,
never the test's (``--luatos-backend sim|serial``, ``--luatos-port /dev/ttyUSB0``).

Fixtures: ``dut`` (:class:`luatos_testing.dut.Dut`: ``expect``, ``expect_exact``, ``write``,
``reset``, ``run_for``, ``log``), ``luatos_device`` (the emulated
:class:`luatos_sim.Device`, sim only), ``luatos_project`` (the project directory),
``luatos_app`` (the project as a build: ``package(version)``), ``luatos_settings`` and
``fota_server`` (a real FOTA server on a free loopback port with its own data directory,
:class:`luatos_testing.fota_server.FotaServer`) and ``mqtt_broker`` (a real Mosquitto on a free
loopback port). A failed test's report carries the device log.
A test whose device crashed (Lua error, VM exit, watchdog, reboot loop) fails with the crash and
the lines that led there, unless it is marked ``luatos_allow_crash`` or calls
``dut.allow_crash()``.

pytest loads this module in every run of this repository, so it imports nothing heavy at
module level: the emulator, pyserial and the server are imported by the fixtures that use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from luatos_sim.device import Device

    from .app import LuatosApp
    from .dut import Dut, SimDut
    from .fota_server import FotaServer
    from .mosquitto import MosquittoBroker

BACKENDS = ("sim", "serial")
DEFAULT_BAUD = 921_600
DEFAULT_MODEL = "Air8101"
DEFAULT_LOG_LINES = 60
LOG_FILE_NAME = "luatos-device.log"


@dataclass(frozen=True)
class LuatosSettings:
    """The resolved ``--luatos-*`` options and ``luatos_*`` ini values."""

    backend: str
    port: str | None
    baud: int
    model: str
    lib_dirs: tuple[Path, ...]
    project: Path | None  # from the command line or the ini file; a marker may still apply
    project_source: str
    console_uart: int | None
    reset_on_start: bool
    log_lines: int


_SETTINGS = pytest.StashKey[LuatosSettings]()
_REPORTED = pytest.StashKey[list[tuple["Dut", Path]]]()


# -- options ----------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("luatos", "LuatOS device under test (emulator or board)")
    group.addoption("--luatos-backend", choices=BACKENDS, default=None,
                    help="run `dut` on the emulator (sim, default) or a board on a serial port "
                         "(serial). ini: luatos_backend")
    group.addoption("--luatos-port", default=None, metavar="PORT",
                    help="serial device or pyserial URL of the board, e.g. /dev/ttyUSB0, "
                         "socket://host:port. ini: luatos_port")
    group.addoption("--luatos-baud", type=int, default=None, metavar="BAUD",
                    help=f"log UART baud rate (default {DEFAULT_BAUD}). ini: luatos_baud")
    group.addoption("--luatos-project", default=None, metavar="DIR",
                    help="LuatOS project the emulated device runs (beats the luatos_project "
                         "marker and ini option; default: the rootdir if it holds main.lua, "
                         "else device/). ini: luatos_project")
    group.addoption("--luatos-model", default=None, metavar="MODEL",
                    help=f"emulated module model (default {DEFAULT_MODEL}). ini: luatos_model")
    group.addoption("--luatos-lib-dir", action="append", default=None, metavar="DIR",
                    help="extra script library directory for the emulator (repeatable). "
                         "ini: luatos_lib_dirs")
    group.addoption("--luatos-console-uart", type=int, default=None, metavar="ID",
                    help="emulator: the UART id dut.write() feeds (the board's USB-serial "
                         "port; default 1). ini: luatos_console_uart")
    group.addoption("--luatos-no-reset", action="store_true", default=None,
                    help="serial: do not pulse RESET (DTR) before each test. "
                         "ini: luatos_reset_on_start = false")
    group.addoption("--luatos-log-lines", type=int, default=None, metavar="N",
                    help=f"device log lines shown in a failure report (default "
                         f"{DEFAULT_LOG_LINES}). ini: luatos_log_lines")
    parser.addini("luatos_backend", "sim or serial", default="sim")
    parser.addini("luatos_port", "serial device or pyserial URL of the board", default="")
    parser.addini("luatos_baud", "log UART baud rate", default=str(DEFAULT_BAUD))
    parser.addini("luatos_project", "LuatOS project directory (relative to the ini file)",
                  default="")
    parser.addini("luatos_model", "emulated module model", default=DEFAULT_MODEL)
    parser.addini("luatos_lib_dirs", "extra script library directories", type="paths",
                  default=[])
    parser.addini("luatos_console_uart", "UART id dut.write() feeds on the emulator",
                  default="")
    parser.addini("luatos_reset_on_start", "serial: pulse RESET before each test", type="bool",
                  default=True)
    parser.addini("luatos_log_lines", "device log lines in a failure report",
                  default=str(DEFAULT_LOG_LINES))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "luatos_project(path): the LuatOS project this test's device runs "
        "(relative to the test file; --luatos-project overrides it)")
    config.addinivalue_line(
        "markers", "luatos_allow_crash(reason): this test expects the device to crash (Lua "
        "error, VM exit, reboot loop); without it such a crash fails the test (as does "
        "dut.allow_crash())")
    config.stash[_SETTINGS] = _read_settings(config)


def _int_setting(config: pytest.Config, opt: str, ini: str, what: str) -> int | None:
    value = config.getoption(opt)
    if value is not None:
        return int(value)
    raw = str(config.getini(ini)).strip()
    if not raw:
        return None
    try:
        return int(raw, 0)
    except ValueError:
        raise pytest.UsageError(f"ini option {ini} = {raw!r}: {what} must be an integer") from None


def _read_settings(config: pytest.Config) -> LuatosSettings:
    backend = config.getoption("luatos_backend") or str(config.getini("luatos_backend")).strip()
    if backend not in BACKENDS:
        raise pytest.UsageError(f"ini option luatos_backend = {backend!r}: expected one of "
                                f"{', '.join(BACKENDS)}")
    port = config.getoption("luatos_port") or str(config.getini("luatos_port")).strip() or None
    if backend == "serial" and not port:
        raise pytest.UsageError("--luatos-backend serial needs the board's port: "
                                "--luatos-port /dev/ttyUSB0 (or ini luatos_port)")
    baud = _int_setting(config, "luatos_baud", "luatos_baud", "the baud rate") or DEFAULT_BAUD
    base = config.inipath.parent if config.inipath else config.rootpath
    cli_project = config.getoption("luatos_project")
    ini_project = str(config.getini("luatos_project")).strip()
    if cli_project:
        project: Path | None = Path(config.invocation_params.dir, cli_project).resolve()
        source = "--luatos-project"
    elif ini_project:
        project = (base / ini_project).resolve()
        source = "ini option luatos_project"
    else:
        project, source = None, "default"
    libs = config.getoption("luatos_lib_dir")
    lib_dirs = tuple(Path(config.invocation_params.dir, d).resolve() for d in libs) if libs \
        else tuple(Path(p) for p in config.getini("luatos_lib_dirs"))
    no_reset = config.getoption("luatos_no_reset")
    reset = not no_reset if no_reset else bool(config.getini("luatos_reset_on_start"))
    lines = _int_setting(config, "luatos_log_lines", "luatos_log_lines", "the line count")
    return LuatosSettings(
        backend=backend, port=port, baud=baud,
        model=config.getoption("luatos_model") or str(config.getini("luatos_model")).strip()
        or DEFAULT_MODEL,
        lib_dirs=lib_dirs, project=project, project_source=source,
        console_uart=_int_setting(config, "luatos_console_uart", "luatos_console_uart",
                                  "the UART id"),
        reset_on_start=reset, log_lines=DEFAULT_LOG_LINES if lines is None else lines)


def pytest_report_header(config: pytest.Config) -> str | None:
    s = config.stash.get(_SETTINGS, None)
    if s is None or s.backend == "sim":
        return None
    return f"luatos: backend serial, port {s.port} at {s.baud} baud"


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def luatos_settings(pytestconfig: pytest.Config) -> LuatosSettings:
    """The resolved plugin options (backend, port, baud, model, ...)."""
    return pytestconfig.stash[_SETTINGS]


def _resolve_project(request: pytest.FixtureRequest, s: LuatosSettings) -> tuple[Path, str]:
    if s.project_source == "--luatos-project" and s.project is not None:
        return s.project, s.project_source
    marker = request.node.get_closest_marker("luatos_project")
    if marker is not None:
        if len(marker.args) != 1:
            pytest.fail(f"{request.node.nodeid}: the luatos_project marker takes one path, "
                        f"got {marker.args!r}", pytrace=False)
        return (request.node.path.parent / str(marker.args[0])).resolve(), "luatos_project marker"
    if s.project is not None:
        return s.project, s.project_source
    root = request.config.rootpath
    if (root / "main.lua").is_file():
        return root, "the rootdir, which holds main.lua"
    return root / "device", "default (device/ under the rootdir)"


_HOW_TO_NAME_IT = ("name the project with --luatos-project DIR, the luatos_project ini option, "
                   "or @pytest.mark.luatos_project(\"path\") (relative to the test file)")


@pytest.fixture
def luatos_project(request: pytest.FixtureRequest, luatos_settings: LuatosSettings) -> Path:
    """The LuatOS project directory this test's device runs.

    --luatos-project, else the closest ``luatos_project`` marker, else the ``luatos_project``
    ini option, else the rootdir when it holds main.lua, else ``device/`` under the rootdir."""
    path, source = _resolve_project(request, luatos_settings)
    if luatos_settings.backend == "sim" and not (path / "main.lua").is_file():
        what = "does not exist" if not path.exists() else "has no main.lua"
        hint = f"; {_HOW_TO_NAME_IT}" if source.startswith("default") else ""
        pytest.fail(f"LuatOS project {path} {what} (from {source}){hint}", pytrace=False)
    return path


@pytest.fixture
def luatos_app(request: pytest.FixtureRequest, luatos_settings: LuatosSettings) -> LuatosApp:
    """The project under test as a build: ``name``, ``version``, ``firmware_name``,
    ``product_key`` and ``package(version)`` (the upgrade package with main.lua's VERSION set
    to ``version``; the project on disk is not changed). With the board backend the project
    comes from the same options, so a board test can publish the build it upgrades to."""
    from .app import LuatosApp, ProjectError

    path, source = _resolve_project(request, luatos_settings)
    try:
        return LuatosApp(path, luatos_settings.model)
    except (ProjectError, ValueError, OSError) as e:
        hint = f"; {_HOW_TO_NAME_IT}" if source.startswith("default") else ""
        pytest.fail(f"LuatOS project from {source}: {e}{hint}", pytrace=False)


def _register_report(request: pytest.FixtureRequest, dut: Dut, tmp_path: Path) -> None:
    entries = request.node.stash.setdefault(_REPORTED, [])
    name = LOG_FILE_NAME if not entries else f"luatos-device-{len(entries) + 1}.log"
    entries.append((dut, tmp_path / name))


@pytest.fixture
def _luatos_sim_dut(request: pytest.FixtureRequest, luatos_settings: LuatosSettings,
                    luatos_project: Path, tmp_path: Path) -> Iterator[SimDut]:
    from .dut import SimDut, profile_with_uart

    s = luatos_settings
    try:
        profile_with_uart(s.model)
    except ValueError as e:
        pytest.fail(f"--luatos-model / ini luatos_model: {e}", pytrace=False)
    sim = SimDut.for_project(luatos_project, model=s.model, lib_dirs=s.lib_dirs,
                             state_dir=tmp_path / "luatos-state", console_uart=s.console_uart)
    _register_report(request, sim, tmp_path)
    try:
        yield sim
    finally:
        sim.close()


@pytest.fixture
def luatos_device(request: pytest.FixtureRequest, luatos_settings: LuatosSettings) -> Device:
    """The emulated :class:`luatos_sim.Device` running the project (virtual time).

    Emulator only: with ``--luatos-backend serial`` a test that asks for it is skipped. After
    ``dut.reset()`` the running device is ``dut.device``."""
    if luatos_settings.backend != "sim":
        pytest.skip("luatos_device needs the emulator (--luatos-backend sim); tests that should "
                    "also run on a board use the dut fixture")
    sim: SimDut = request.getfixturevalue("_luatos_sim_dut")
    return sim.device


@pytest.fixture
def dut(request: pytest.FixtureRequest, luatos_settings: LuatosSettings,
        tmp_path: Path) -> Iterator[Dut]:
    """The device under test: the emulator, or the board on ``--luatos-port``."""
    s = luatos_settings
    if s.backend == "sim":
        yield request.getfixturevalue("_luatos_sim_dut")
        return
    # xdist gives each worker's config a ``workerinput`` (the environment may be inherited
    # from an outer run, so it is not asked).
    workers = int(getattr(request.config, "workerinput", {}).get("workercount", 1))
    if workers > 1:
        pytest.fail(f"one board on {s.port} cannot serve {workers} pytest-xdist workers; "
                    "run serial tests without -n", pytrace=False)
    from .dut import DutError, SerialDut

    assert s.port is not None
    try:
        board = SerialDut(s.port, s.baud, reset_on_start=s.reset_on_start,
                          raw_log=tmp_path / "luatos-serial-raw.log")
    except DutError as e:
        pytest.fail(str(e), pytrace=False)
    _register_report(request, board, tmp_path)
    try:
        yield board
    finally:
        board.close()


@pytest.fixture
def fota_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FotaServer]:
    """A real FOTA server on 127.0.0.1:<free port> with its own data directory."""
    from luatos_fota.testing import running_server

    from .fota_server import FotaServer

    data_dir = tmp_path_factory.mktemp("fota-data")
    with running_server(data_dir) as srv:
        yield FotaServer(srv)


@pytest.fixture
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A real Mosquitto on 127.0.0.1:<free port> (``luatos_testing.mosquitto``); skipped
    locally with the reason when it is not installed, failed under CI=true."""
    from .mosquitto import broker_for_test

    with broker_for_test(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture
def screen_match(request: pytest.FixtureRequest) -> Any:
    """``screen_match(dev.lcd, "home.png", max_diff_ratio=0.001)``: compare a screen with
    ``screens/home.png`` next to the test file (see luatos_sim.screencheck; run once with
    LUATOS_UPDATE_SCREENS=1 to store the pictures)."""
    from luatos_sim.screencheck import assert_screen

    base = Path(str(request.node.fspath)).parent / "screens"

    def match(screen: Any, name: str, **tolerance: Any) -> Any:
        return assert_screen(screen, base / name, **tolerance)
    return match


# -- the device log in failure reports ------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        _fail_on_crash(item, report)
    if report.failed:
        for dut, path in item.stash.get(_REPORTED, []):
            _attach_log(item, report, dut, path)
    return report


def _fail_on_crash(item: pytest.Item, report: pytest.TestReport) -> None:
    """A device that crashed fails the test, even one whose asserts passed (a crash-reboot
    can run the very check the test waits for), unless the test expects the crash."""
    marker = item.get_closest_marker("luatos_allow_crash")
    for dut, _ in item.stash.get(_REPORTED, []):
        if marker is not None or dut.crash_allowed is not None:
            continue
        try:
            found = dut.crashes()
        except Exception as e:  # noqa: BLE001 - a report must not break on a closed device
            found = [f"(could not read the device's crashes: {e})"]
        if not found:
            continue
        text = (f"the device crashed during the test ({len(found)} crash(es)); the first:\n"
                f"{found[0]}\n\nIf the test expects this, mark it "
                "@pytest.mark.luatos_allow_crash(reason) or call dut.allow_crash(reason).")
        if report.passed:
            report.outcome = "failed"
            report.longrepr = text
        else:
            report.sections.append(("luatos device crash", text))
        return


def _attach_log(item: pytest.Item, report: pytest.TestReport, dut: Dut, path: Path) -> None:
    settings = item.config.stash.get(_SETTINGS, None)
    n = settings.log_lines if settings is not None else DEFAULT_LOG_LINES
    try:
        saved: str = str(dut.save_log(path))
    except OSError as e:
        saved = f"not saved: {e}"
    shown = min(n, len(dut.log))
    title = (f"luatos device log ({dut.backend}; last {shown} of {len(dut.log)} records; "
             f"full log: {saved})")
    report.sections.append((title, dut.log_text(last=n) if n > 0 else ""))
