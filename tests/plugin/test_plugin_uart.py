"""The emulated uart module behind dut.write: setup, read, write, callbacks, other ports."""

from __future__ import annotations

from pathlib import Path

from luatos_testing.dut import SimDut

MAIN = """
log.info("t", "exist", uart.exist(1), uart.exist(2), uart.exist(7))
log.info("t", "setup7", uart.setup(7, 115200))
log.info("t", "write-closed", uart.write(2, "lost"))
uart.on(1, "receive", function(id, len)  -- registered before setup: still works
    log.info("t", "rx", id, len, uart.rxSize(id))
    local head = uart.read(id, 2)
    log.info("t", "head", head, "left", uart.rxSize(id))
    uart.rxClear(id)
    log.info("t", "cleared", uart.rxSize(id), #uart.read(id, 10))
end)
uart.setup(1, 921600, 8, 1, uart.None, uart.LSB, 8)
uart.setup(2, 9600)
uart.on(2, "sent", function(id) log.info("t", "sent", id) end)
log.info("t", "write2", uart.write(2, "AT\\r\\n"))
uart.write(1, "partial ")
uart.write(1, "line\\r\\nsecond")
sys.taskInit(function()
    sys.wait(100)
    uart.close(1)
    log.info("t", "closed")
end)
sys.run()
"""


def make(tmp_path: Path) -> SimDut:
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "main.lua").write_text(MAIN, encoding="utf-8")
    return SimDut.for_project(proj, state_dir=tmp_path / "state")


def test_uart_module_behaviour(tmp_path: Path) -> None:
    dut = make(tmp_path)
    try:
        dut.expect_exact("I/user.t exist true true false")
        dut.expect_exact("I/user.t setup7 -1")
        dut.expect_exact("I/user.t write-closed 0")
        dut.expect_exact("I/user.t write2 4")
        dut.expect(r"^partial line$")  # console output, split at the newline
        dut.expect_exact("I/user.t sent 2")
        assert bytes(dut.device.uart.tx[2]) == b"AT\r\n"
        dut.write("0123456789ABC")  # 13 bytes into an 8-byte receive buffer
        dut.expect_exact("I/user.t rx 1 8 8")
        dut.expect_exact("I/user.t head 01 left 6")
        dut.expect_exact("I/user.t cleared 0 0")
        assert any("receive buffer full (8 bytes); 5 byte(s) lost" in r.text
                   for r in dut.log if r.source == "sim")
        # closing the console flushes the unfinished line
        dut.expect_exact("I/user.t closed")
        assert "second" in dut.lines()
    finally:
        dut.close()
    assert dut.device.boot is None  # the DUT owned the device and closed it
