"""Option and ini parsing: settings resolve in pytest_configure, bad values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from luatos_testing.plugin import _SETTINGS, DEFAULT_BAUD, LuatosSettings


def settings(pytester: pytest.Pytester, *args: str) -> LuatosSettings:
    config = pytester.parseconfigure(*args)
    return config.stash[_SETTINGS]


def test_defaults_are_the_emulator_and_device_dir(pytester: pytest.Pytester) -> None:
    s = settings(pytester)
    assert (s.backend, s.port, s.baud, s.model) == ("sim", None, DEFAULT_BAUD, "Air8101")
    assert s.project is None and s.project_source == "default"
    assert s.reset_on_start is True
    assert s.lib_dirs == () and s.console_uart is None


def test_command_line_options(pytester: pytest.Pytester) -> None:
    s = settings(pytester, "--luatos-backend", "serial", "--luatos-port", "socket://127.0.0.1:9",
                 "--luatos-baud", "2000000", "--luatos-project", "proj", "--luatos-model",
                 "Air780E", "--luatos-lib-dir", "a", "--luatos-lib-dir", "b",
                 "--luatos-console-uart", "2", "--luatos-no-reset", "--luatos-log-lines", "7")
    assert (s.backend, s.port, s.baud, s.model) == ("serial", "socket://127.0.0.1:9",
                                                     2_000_000, "Air780E")
    base = Path.cwd()  # pytester runs with its directory as the invocation dir
    assert s.project == (base / "proj").resolve() and s.project_source == "--luatos-project"
    assert s.lib_dirs == ((base / "a").resolve(), (base / "b").resolve())
    assert (s.console_uart, s.reset_on_start, s.log_lines) == (2, False, 7)


def test_ini_options_and_the_command_line_beats_them(pytester: pytest.Pytester) -> None:
    pytester.makeini("""
        [pytest]
        luatos_backend = serial
        luatos_port = loop://
        luatos_baud = 115200
        luatos_project = fw/app
        luatos_model = Air8000
        luatos_lib_dirs = libs/one libs/two
        luatos_console_uart = 0
        luatos_reset_on_start = false
        luatos_log_lines = 0
    """)
    s = settings(pytester)
    assert (s.backend, s.port, s.baud, s.model) == ("serial", "loop://", 115_200, "Air8000")
    assert s.project == pytester.path / "fw" / "app"
    assert s.project_source == "ini option luatos_project"
    assert s.lib_dirs == (pytester.path / "libs/one", pytester.path / "libs/two")
    assert (s.console_uart, s.reset_on_start, s.log_lines) == (0, False, 0)
    s = settings(pytester, "--luatos-backend", "sim", "--luatos-baud", "9600")
    assert (s.backend, s.baud, s.port) == ("sim", 9600, "loop://")


@pytest.mark.parametrize(("ini", "args", "message"), [
    ("", ("--luatos-backend", "serial"), "--luatos-backend serial needs the board's port"),
    ("luatos_backend = board", (), "luatos_backend = 'board': expected one of sim, serial"),
    ("luatos_baud = fast", (), "luatos_baud = 'fast': the baud rate must be an integer"),
    ("luatos_console_uart = one", (), "luatos_console_uart = 'one': the UART id must be"),
])
def test_bad_settings_are_named(pytester: pytest.Pytester, ini: str, args: tuple[str, ...],
                                message: str) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    with pytest.raises(pytest.UsageError) as e:
        settings(pytester, *args)
    assert message in str(e.value)


def test_a_bad_backend_on_the_command_line_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--luatos-backend", "board")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--luatos-backend: invalid choice: 'board'*"])
