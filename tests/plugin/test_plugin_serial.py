"""The serial backend against fake boards: a pty (a real tty that pyserial opens like
/dev/ttyUSB0) and a pyserial URL handler that shows what the DUT does with DTR and RTS."""

from __future__ import annotations

import os
import re
import select
import threading
import tty
from collections.abc import Iterator

import pytest

QUIET = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")


class PtyBoard:
    """Prints a heartbeat every 50 ms and answers command lines, like a flashed module."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo of what the host writes
        os.set_blocking(self.master, False)
        self.port = os.ttyname(self.slave)
        self.received = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.ms = 800

    def _send(self, text: str) -> None:
        try:
            os.write(self.master, text.encode())
        except (BlockingIOError, OSError):
            pass  # nobody reads the port yet: a real UART drops bytes too

    def _run(self) -> None:
        beat = 0
        pending = b""
        for _ in range(4000):  # at most ~200 s
            if self._stop.is_set():
                return
            ready, _, _ = select.select([self.master], [], [], 0.05)
            self.ms += 50
            if ready:
                try:
                    data = os.read(self.master, 1024)
                except OSError:
                    data = b""
                self.received += data
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    self._answer(line.decode().strip())
            else:
                beat += 1
                self._send(f"luat:U({self.ms}):I/user.hb {beat}\r\n")

    def _answer(self, line: str) -> None:
        self._send(f"luat:U({self.ms}):I/user.cmd {line}\r\n")
        if line == "crash":
            self._send(f"luat:U({self.ms}):E/user.main boom\r\nstack traceback:\r\n"
                       "\t[C]: in function 'error'\r\n")
        else:
            self._send(f"pong {line}\r\n")

    def __enter__(self) -> PtyBoard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def pty_board() -> Iterator[PtyBoard]:
    with PtyBoard() as board:
        yield board


def test_serial_dut_on_a_pty(pytester: pytest.Pytester, pty_board: PtyBoard) -> None:
    pytester.makepyfile("""
        import pytest
        from luatos_testing.dut import DutError

        def test_expect_and_write(dut):
            assert dut.backend == "serial"
            first = int(dut.expect(r"^I/user\\.hb (\\d+)$", timeout="5s")[1])
            second = int(dut.expect(r"^I/user\\.hb (\\d+)$", timeout="5s")[1])
            assert second == first + 1
            dut.write("hello board\\n")
            dut.expect_exact("I/user.cmd hello board", timeout="5s")
            dut.expect(r"^pong hello board$", timeout="5s")
            assert dut.last_record.host_time is not None

        def test_continuation_lines_join_their_record(dut):
            dut.write("crash\\n")
            m = dut.expect(r"E/user\\.main boom\\nstack traceback:\\n\\t\\[C\\]: in (\\w+)",
                           timeout="5s")
            assert m[1] == "function"

        def test_luatos_device_is_skipped_on_a_board(luatos_device):
            raise AssertionError("not reached")

        def test_run_for_needs_consent_on_a_board(dut):
            with pytest.raises(DutError, match=r"would wait 1h00m00\\.000s of wall time"):
                dut.run_for("1h")
            n = len(dut.log)
            dut.run_for("300ms", allow_wall_clock=True)
            assert len(dut.log) > n  # the port was read meanwhile

        def test_reset_on_a_port_without_modem_lines_is_named(dut):
            with pytest.raises(DutError, match="cannot pulse DTR/RTS on .* --luatos-no-reset"):
                dut.reset()

        def test_failure_report(dut):
            dut.expect(r"I/user\\.hb", timeout="5s")
            dut.expect("never printed", timeout="300ms")
    """)
    result = pytester.runpytest(*QUIET, "--luatos-backend", "serial", "--luatos-port",
                                pty_board.port, "--luatos-no-reset", "-rs")
    result.assert_outcomes(passed=4, skipped=1, failed=1)
    out = result.stdout.str()
    assert "luatos_device needs the emulator (--luatos-backend sim)" in out
    assert "serial: 'never printed' did not appear within 0.300s (wall time)" in out
    m = re.search(r"luatos device log \(serial; last \d+ of \d+ records; full log: (\S+)\)",
                  out)
    assert m, out
    # wall-clock stamps, then the line as the board sent it
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3} luat:U\(\d+\):I/user\.hb \d+$",
                     open(m[1], encoding="utf-8").read(), re.M)
    assert b"hello board\n" in pty_board.received


FAKEBOARD = '''
"""pyserial handler for fakeboard://: a board whose RESET is on DTR (asserted = held)."""
from serial.serialutil import SerialException
from serial.urlhandler.protocol_loop import Serial as LoopSerial

EVENTS = []
BOOTS = [0]


class Serial(LoopSerial):
    def from_url(self, url):
        if not url.startswith("fakeboard://"):
            raise SerialException(f"expected fakeboard://, got {url!r}")

    def _update_dtr_state(self):
        held = bool(getattr(self, "_held", False))
        EVENTS.append(("dtr", self._dtr_state))
        if self.is_open and held and not self._dtr_state:
            BOOTS[0] += 1
            self._emit("luat:D(581):pm:boot up by power on\\r\\n"
                       f"luat:U(800):I/user.main FAKEBOARD boot {BOOTS[0]}\\r\\n")
        self._held = self._dtr_state

    def _update_rts_state(self):
        EVENTS.append(("rts", self._rts_state))

    def _emit(self, text):
        LoopSerial.write(self, text.encode())

    def write(self, data):
        if getattr(self, "_held", False):
            return len(data)  # in reset: nobody listens
        for line in bytes(data).decode().splitlines():
            self._emit(f"luat:U(900):I/user.cmd {line}\\r\\n")
        return len(data)
'''


def test_reset_pulses_dtr_and_keeps_rts_released(pytester: pytest.Pytester) -> None:
    pkg = pytester.mkpydir("fakeboard_pkg")
    (pkg / "protocol_fakeboard.py").write_text(FAKEBOARD, encoding="utf-8")
    pytester.syspathinsert()
    pytester.makeconftest("""
        import serial

        def pytest_configure(config):
            serial.protocol_handler_packages.append("fakeboard_pkg")

        def pytest_unconfigure(config):
            serial.protocol_handler_packages.remove("fakeboard_pkg")
    """)
    pytester.makepyfile("""
        from fakeboard_pkg import protocol_fakeboard as board

        def test_reset(dut):
            # the fixture reset the board before the test (luatos_reset_on_start)
            first = int(dut.expect(r"FAKEBOARD boot (\\d+)", timeout="5s")[1])
            dut.write("status\\n")
            dut.expect_exact("I/user.cmd status", timeout="5s")
            dut.reset()
            assert int(dut.expect(r"FAKEBOARD boot (\\d+)", timeout="5s")[1]) == first + 1
            dtr = [v for k, v in board.EVENTS if k == "dtr"]
            rts = [v for k, v in board.EVENTS if k == "rts"]
            assert dtr == [False, True, False, True, False]  # opened released, two pulses
            assert rts and not any(rts)  # BOOT never asserted: no bootloader entry
    """)
    result = pytester.runpytest(*QUIET, "--luatos-backend", "serial", "--luatos-port",
                                "fakeboard://")
    result.assert_outcomes(passed=1)


def test_an_unopenable_port_fails_the_test_with_its_name(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(dut):\n    pass\n")
    missing = str(pytester.path / "ttyNOPE")
    result = pytester.runpytest(*QUIET, "--luatos-backend", "serial", "--luatos-port", missing)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*cannot open serial port {missing}*"])
