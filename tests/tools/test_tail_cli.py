"""luatos-tail end to end: a pty plays the module (the test writes device output into the
master, the tool opens the slave path), plus pyserial URL handlers that vanish and come back.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
import tty
import types
from collections.abc import Callable
from pathlib import Path

import pytest
import serial
from serial.serialutil import SerialBase, SerialException

from luatos_tools import tail_cli
from luatos_tools.serial_log import encode_binary_log

SYNC_LIMIT = 1500  # bounded: 1500 x 10 ms


class Pty:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.name = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class TailRun:
    """luatos-tail in a thread; ``--output`` doubles as the 'has it opened the port yet' probe."""

    def __init__(self, argv: list[str], out_file: Path) -> None:
        self.out_file = out_file
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.code: int | None = None
        self.thread = threading.Thread(
            target=self._run, args=(argv + ["--output", str(out_file)],), daemon=True)
        self.thread.start()

    def _run(self, argv: list[str]) -> None:
        self.code = tail_cli.main(argv, stdout=self.stdout, stderr=self.stderr)

    def received(self) -> str:
        try:
            return self.out_file.read_text("utf-8")
        except FileNotFoundError:
            return ""

    def sync(self, write: Callable[[bytes], None], token: str) -> None:
        """Write a marker line until the tool has read it (pyserial flushes input on open)."""
        for _ in range(SYNC_LIMIT):
            if token in self.received():
                return
            write(f"luat:U(0):{token}\r\n".encode())
            time.sleep(0.01)
        raise AssertionError(f"tail never read {token!r}; stderr: {self.stderr.getvalue()}")

    def wait_for(self, text: str) -> None:
        for _ in range(SYNC_LIMIT):
            if text in self.received():
                return
            time.sleep(0.01)
        raise AssertionError(f"tail never read {text!r}")

    def join(self) -> int:
        self.thread.join(60)
        assert not self.thread.is_alive(), "luatos-tail did not stop"
        assert self.code is not None
        return self.code


DEVICE_OUTPUT = (
    b"ap0:I(1):boot\r\n"
    b"luat:U(807):I/user.main fota_test 001.000.000\r\n"
    b"luat:D(808):net:dns ok\r\n"
    b"luat:W(900):fota:slow server\r\n"
    b"luat:E(950):main:main.lua:3: boom\r\n"
    b"stack traceback:\r\n"
    b"\t[C]: in function 'error'\r\n"
    b"\tmain.lua:3: in main chunk\r\n"
    b"luat:U(1000):I/user.main all done\r\n"
)


@pytest.fixture
def pty_port() -> Pty:
    p = Pty()
    yield p
    p.close()


def test_pty_follow_parse_filter_until(pty_port: Pty, tmp_path: Path) -> None:
    run = TailRun([pty_port.name, "--level", "W", "--until", "all done", "--timeout", "30",
                   "--retries", "0", "--no-time"], tmp_path / "raw.log")
    run.sync(pty_port.write, "sync")
    for i in range(0, len(DEVICE_OUTPUT), 7):  # dribble it in, lines split across reads
        pty_port.write(DEVICE_OUTPUT[i:i + 7])
    assert run.join() == 0
    shown = run.stdout.getvalue().splitlines()
    assert shown[0] == "luat:W(900):fota:slow server"
    assert shown[1] == "luat:E(950):main:main.lua:3: boom"
    assert shown[2:5] == ["stack traceback:", "\t[C]: in function 'error'",
                          "\tmain.lua:3: in main chunk"]
    assert not any("dns ok" in s or "sync" in s or "fota_test" in s for s in shown)
    raw = run.received().splitlines()
    assert "luat:D(808):net:dns ok" in raw and "luat:U(1000):I/user.main all done" in raw
    assert "\x1b[" not in run.stdout.getvalue()  # not a TTY: no colour


def test_pty_json_and_tag_filter(pty_port: Pty, tmp_path: Path) -> None:
    run = TailRun([pty_port.name, "--json", "--tag", "main", "--until", "all done",
                   "--timeout", "30", "--retries", "0"], tmp_path / "raw.log")
    run.sync(pty_port.write, "sync")
    pty_port.write(DEVICE_OUTPUT)
    assert run.join() == 0
    recs = [json.loads(s) for s in run.stdout.getvalue().splitlines()]
    assert [(r["level"], r["tag"], r["device_ms"]) for r in recs] == [
        ("I", "main", 807), ("E", "main", 950), ("I", "main", 1000)]
    assert recs[1]["text"].endswith("in main chunk")
    assert all(isinstance(r["host_time"], float) for r in recs)


def test_pty_binary_frames(pty_port: Pty, tmp_path: Path) -> None:
    run = TailRun([pty_port.name, "--json", "--until", "bye", "--timeout", "30",
                   "--retries", "0"], tmp_path / "raw.log")
    run.sync(pty_port.write, "sync")
    pty_port.write(encode_binary_log(4321, "W", "wifi", "rssi %d", -70)
                   + encode_binary_log(4400, "I", "", "luat:U(4400):bye"))
    assert run.join() == 0
    recs = [json.loads(s) for s in run.stdout.getvalue().splitlines()]
    assert [(r["level"], r["tag"], r["text"]) for r in recs if r.get("extra")] == [
        ("W", "wifi", "rssi -70"), ("", "", "bye")]


def test_timeout_without_match_exits_1(pty_port: Pty, tmp_path: Path) -> None:
    run = TailRun([pty_port.name, "--until", "never-printed", "--timeout", "0.5",
                   "--retries", "0"], tmp_path / "raw.log")
    assert run.join() == 1


def test_port_vanishes_and_comes_back(tmp_path: Path) -> None:
    """USB re-enumeration: the device node goes away and a new one appears under the link."""
    link = tmp_path / "ttyACM-by-id"
    first = Pty()
    link.symlink_to(first.name)
    run = TailRun([str(link), "--until", "after reboot", "--timeout", "30", "--retries", "200",
                   "--reconnect-delay", "0.01", "--no-time"], tmp_path / "raw.log")
    try:
        run.sync(first.write, "sync1")
        first.write(b"luat:E(5):main:Lua VM exit!! reboot in 15000ms\r\n")
        run.wait_for("reboot in 15000ms")
    finally:
        first.close()  # the module resets: its USB-UART disappears
    second = Pty()
    try:
        tmp_link = tmp_path / "new-link"
        tmp_link.symlink_to(second.name)
        os.replace(tmp_link, link)
        run.sync(second.write, "sync2")
        second.write(b"luat:U(1):I/user.main after reboot\r\n")
        assert run.join() == 0
    finally:
        second.close()
    err = run.stderr.getvalue()
    assert "port lost" in err and "reconnected" in err
    out = run.stdout.getvalue()
    assert "reboot in 15000ms" in out and "after reboot" in out


# --- a pyserial URL handler whose port vanishes on cue ------------------------------------------

_FLAKY: dict[str, dict] = {}


class FlakySerial(SerialBase):
    """``flaky://NAME``: serves one session of bytes, then the port vanishes; reopening fails
    ``fail_opens`` times before the next session starts. The last session stays open."""

    def open(self) -> None:
        st = _FLAKY[self._port.split("://", 1)[1]]
        st["opens"] += 1
        if st["fail_now"] > 0:
            st["fail_now"] -= 1
            raise SerialException("could not open port: No such file or directory")
        self._st = st
        self._data = bytearray(st["sessions"].pop(0)) if st["sessions"] else bytearray()
        self._last = not st["sessions"]
        st["bauds"].append(self._baudrate)
        st["lines"].append((self._dtr_state, self._rts_state))
        self.is_open = True

    def close(self) -> None:
        self.is_open = False

    def _reconfigure_port(self, *a: object, **k: object) -> None:
        if self.is_open:
            self._st["bauds"].append(self._baudrate)

    @property
    def in_waiting(self) -> int:
        return len(self._data)

    def read(self, size: int = 1) -> bytes:
        if self._data:
            out = bytes(self._data[:size])
            del self._data[:size]
            return out
        if not self._last:
            self._st["fail_now"] = self._st["fail_opens"]
            raise SerialException("device reports readiness to read but returned no data")
        time.sleep(min(self._timeout or 0.01, 0.01))
        return b""

    def write(self, data: bytes) -> int:
        return len(data)

    def reset_input_buffer(self) -> None:
        pass


class BaudSimSerial(SerialBase):
    """``baudsim://``: the module logs at 2000000; at any other rate the host reads noise."""

    def open(self) -> None:
        self.is_open = True

    def close(self) -> None:
        self.is_open = False

    def _reconfigure_port(self, *a: object, **k: object) -> None:
        pass

    @property
    def in_waiting(self) -> int:
        return 0

    def read(self, size: int = 1) -> bytes:
        time.sleep(0.005)
        if self._baudrate == 2_000_000:
            return b"luat:U(5):I/user.main at 2M\r\n"
        return b"\xf0\x0f\xaa\x00"

    def write(self, data: bytes) -> int:
        return len(data)

    def reset_input_buffer(self) -> None:
        pass


def _register_handlers() -> None:
    pkg = "h2_tail_test_urls"
    if pkg in sys.modules:
        return
    sys.modules[pkg] = types.ModuleType(pkg)
    for scheme, cls in (("flaky", FlakySerial), ("baudsim", BaudSimSerial)):
        mod = types.ModuleType(f"{pkg}.protocol_{scheme}")
        mod.Serial = cls  # type: ignore[attr-defined]
        sys.modules[mod.__name__] = mod
    serial.protocol_handler_packages.append(pkg)


_register_handlers()


def _flaky(name: str, sessions: list[bytes], fail_opens: int) -> dict:
    _FLAKY[name] = {"sessions": list(sessions), "fail_opens": fail_opens, "fail_now": 0,
                    "opens": 0, "bauds": [], "lines": []}
    return _FLAKY[name]


def test_url_port_vanishes_mid_traceback_then_recovers() -> None:
    st = _flaky("a", [
        b"luat:U(1):I/user.main before\r\nluat:E(2):main:boom\r\nstack traceback:\r\n\t[C]: in ?\r\n",
        b"ap0:I(1):boot again\r\nluat:U(3):I/user.main back\r\n",
    ], fail_opens=3)
    out, err = io.StringIO(), io.StringIO()
    code = tail_cli.main(["flaky://a", "--until", "user.main back", "--timeout", "20",
                          "--retries", "5", "--reconnect-delay", "0.001", "--no-time"],
                         stdout=out, stderr=err)
    assert code == 0
    lines = out.getvalue().splitlines()
    assert lines[:4] == ["luat:U(1):I/user.main before", "luat:E(2):main:boom",
                         "stack traceback:", "\t[C]: in ?"]
    assert lines[-1] == "luat:U(3):I/user.main back"
    assert st["opens"] == 1 + 3 + 1
    assert err.getvalue().count("cannot open") == 3 and "reconnected" in err.getvalue()
    # opened with DTR/RTS low: asserting DTR would hold an Air8101 in reset
    assert set(st["lines"]) == {(False, False)}


def test_url_port_gone_for_good_exits_3() -> None:
    _flaky("b", [b"luat:U(1):x\r\n", b"never"], fail_opens=50)
    err = io.StringIO()
    code = tail_cli.main(["flaky://b", "--timeout", "20", "--retries", "2",
                          "--reconnect-delay", "0.001"], stdout=io.StringIO(), stderr=err)
    assert code == 3
    assert "cannot open after 3 attempt(s)" in err.getvalue()


def test_probe_baud_finds_2000000() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = tail_cli.main(["baudsim://x", "--probe-baud", "--probe-window", "0.2", "--until",
                          "at 2M", "--timeout", "20", "--no-time"], stdout=out, stderr=err)
    assert code == 0
    assert "log baud is 2000000" in err.getvalue()
    assert out.getvalue().splitlines()[0] == "luat:U(5):I/user.main at 2M"


def test_bad_regex_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as e:
        tail_cli.main(["loop://", "--until", "("], stdout=io.StringIO(), stderr=io.StringIO())
    assert e.value.code == 2


def test_colour_always_and_timeout_without_until_exits_0() -> None:
    _flaky("c", [b"luat:E(1):main:red\r\nluat:W(2):main:yellow\r\nluat:U(3):plain\r\n"],
           fail_opens=0)
    out = io.StringIO()
    code = tail_cli.main(["flaky://c", "--color", "always", "--timeout", "0.5", "--no-time"],
                         stdout=out, stderr=io.StringIO())
    assert code == 0
    lines = out.getvalue().splitlines()
    assert lines == ["\x1b[1;31mluat:E(1):main:red\x1b[0m", "\x1b[33mluat:W(2):main:yellow\x1b[0m",
                     "luat:U(3):plain"]
