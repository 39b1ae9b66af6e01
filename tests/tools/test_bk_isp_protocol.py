"""BK ISP host side against the fake ROM: frames byte-exact, erase order, unprotect table,
baud switch sequence, LinkCheck retries. No board: the fake bootloader only."""

from __future__ import annotations

import uuid

import pytest
import serial

from luatos_tools import bk_isp, fake_bk_rom
from luatos_tools.bk_isp import BkIsp, IspTimings
from luatos_tools.fake_bk_rom import FakeBkDevice


def hx(s: str) -> bytes:
    return bytes.fromhex(s)


def test_frames_are_byte_exact() -> None:
    assert bk_isp.short_frame(bk_isp.CMD_LINK_CHECK) == hx("01 E0 FC 01 00")
    assert bk_isp.set_baud_frame(2_000_000, 200) == hx("01 E0 FC 06 0F 80 84 1E 00 C8")
    assert bk_isp.long_frame(bk_isp.CMD_FLASH_ID, hx("9F 00 00 00")) == \
        hx("01 E0 FC FF F4 05 00 0E 9F 00 00 00")
    assert bk_isp.crc_frame(0x200000, 0x200FFF) == hx("01 E0 FC 09 10 00 00 20 00 FF 0F 20 00")
    assert bk_isp.erase_frame(0x1000, 0x201000) == hx("01 E0 FC FF F4 06 00 0F 20 00 10 20 00")
    assert bk_isp.erase_frame(0x10000, 0x210000) == hx("01 E0 FC FF F4 06 00 0F D8 00 00 21 00")
    assert bk_isp.short_frame(bk_isp.CMD_REBOOT, b"\xa5") == hx("01 E0 FC 02 0E A5")
    w = bk_isp.write_frame(0x203000, b"\x11" * 4096)
    assert len(w) == 4108 and w[:12] == hx("01 E0 FC FF F4 05 10 07 00 30 20 00")
    with pytest.raises(ValueError):
        bk_isp.write_frame(0, b"short")


def test_erase_plan_4k_to_boundary_then_64k_then_4k() -> None:
    plan = bk_isp.erase_plan(0x1F3000, 0x22000)  # ends at 0x215000
    assert plan == ([(0x1000, 0x1F3000 + i * 0x1000) for i in range(13)]
                    + [(0x10000, 0x200000)]
                    + [(0x1000, 0x210000 + i * 0x1000) for i in range(5)])
    assert bk_isp.erase_plan(0x200000, 1) == [(0x1000, 0x200000)]
    assert bk_isp.erase_plan(0x200000, 0x20000) == [(0x10000, 0x200000), (0x10000, 0x210000)]
    assert bk_isp.erase_plan(0x200000, 0) == []


def test_crc_candidates_are_the_two_conventions() -> None:
    import zlib
    d = b"\xff" * 4096
    c = bk_isp.crc_candidates(d)
    assert set(c.values()) == {zlib.crc32(d) ^ 0xFFFFFFFF, zlib.crc32(d, 0xFFFFFFFF)}
    assert len(set(c.values())) == 2


def _device(**kw: object) -> FakeBkDevice:
    return FakeBkDevice(f"isp-{uuid.uuid4().hex[:8]}", **kw)  # type: ignore[arg-type]


def _session(dev: FakeBkDevice, **timing: object) -> BkIsp:
    port = serial.serial_for_url(dev.url, do_not_open=True)
    port.baudrate = 115200
    port.dtr = False
    port.rts = False
    port.open()
    t = IspTimings(sleep=dev.sleep, monotonic=dev.monotonic, **timing)  # type: ignore[arg-type]
    return BkIsp(port, t)


def test_fakebk_url_is_a_pyserial_protocol() -> None:
    dev = _device()
    port = serial.serial_for_url(dev.url)
    assert isinstance(port, fake_bk_rom.FakeBkSerial)
    port.close()
    with pytest.raises(serial.SerialException, match="unknown option"):
        serial.serial_for_url("fakebk://other-name?bogus=1")


@pytest.mark.parametrize(("mid", "sr", "reads", "size", "expected"), [
    (0x144051, 0x00FF, [0x05], 1, 0x83),
    (0x134051, 0x00FF, [0x05], 1, 0x83),
    (0x14405E, 0x00FC, [0x05], 1, 0x80),
    (0x13405E, 0x00FF, [0x05], 1, 0x83),
    (0x13311C, 0x00FF, [0x05], 1, 0x83),
    (0x1464C8, 0x00FF, [0x05], 1, 0x83),
    (0x15701C, 0x00FF, [0x05], 1, 0xC3),
    (0x1423C2, 0xFFFF, [0x05, 0x15], 2, 0xCFED),
    (0x1523C2, 0x3012, [0x05, 0x15], 2, 0x0000),
    (0x1560C4, 0xFFFF, [0x05, 0x35], 2, 0xBF83),
    (0x1640C8, 0x407C, [0x05, 0x35], 2, 0x0000),  # unknown, capacity 0x16 >= 0x14
    (0x1340EF, 0x00FF, [0x05], 1, 0x83),  # unknown, capacity 0x13 < 0x14
], ids=lambda v: f"{v:#x}" if isinstance(v, int) else None)
def test_unprotect_writes_the_right_sr(mid: int, sr: int, reads: list[int], size: int,
                                       expected: int) -> None:
    dev = _device(mid=mid, sr=sr, protect_bits=0x0010)
    isp = _session(dev)
    isp.connect()
    assert isp.flash_id() == mid
    old, new = isp.unprotect(mid)
    assert (old, new) == (sr & ((1 << (8 * size)) - 1), expected)
    assert [c.args["reg"] for c in dev.commands if c.name == "ReadSR"] == reads
    writes = [c.args for c in dev.commands if c.name == "WriteSR"]
    assert writes == [{"wr": 0x01, "value": expected, "size": size}]
    assert dev.sr & ((1 << (8 * size)) - 1) == expected
    assert not dev.protected


def test_unprotect_skips_the_write_when_already_clear() -> None:
    dev = _device(mid=0x1560C4, sr=0x0002)
    isp = _session(dev)
    isp.connect()
    assert isp.unprotect(0x1560C4) == (0x0002, 0x0002)
    assert "WriteSR" not in dev.command_names()


def test_set_baud_sequence_clear_wait_switch_read() -> None:
    dev = _device()
    isp = _session(dev)
    isp.connect()
    t0 = dev.monotonic()
    isp.set_baud(2_000_000)
    ev = [e for e in dev.events if e.t >= t0 and e.kind in ("clear", "baud")]
    clears = [e.t for e in ev if e.kind == "clear"]
    switch = [e for e in ev if e.kind == "baud"]
    assert len(clears) == 2 and clears[1] - clears[0] == pytest.approx(0.050)
    cmd = [c for c in dev.commands if c.name == "SetBaud"]
    assert cmd[0].args == {"baud": 2_000_000, "delay": 200}
    # host switches 10 + 200/2 ms after sending, before the ROM answers at the new rate
    assert switch[0].data == 2_000_000
    assert switch[0].t - cmd[0].t == pytest.approx(0.110)
    assert dev.rom_baud == 2_000_000 and isp.result.baud == 2_000_000


def test_set_baud_not_confirmed_raises() -> None:
    dev = _device(faults={"baud_fail": None})
    isp = _session(dev)
    isp.connect()
    with pytest.raises(bk_isp.BaudSwitchError, match="921600"):
        isp.set_baud(2_000_000)


def test_host_that_does_not_switch_reads_garbage() -> None:
    """The fake really answers at the new rate: skipping the switch loses the reply."""
    dev = _device()
    isp = _session(dev)
    isp.connect()
    isp.port.write(bk_isp.set_baud_frame(2_000_000, 200))
    isp.port.timeout = 0.6
    rx = isp.port.read(8)
    assert rx != bytes.fromhex("040e0501e0fc0f00") and len(rx) < 8


def test_linkcheck_retries_more_reset_pulses() -> None:
    dev = _device(faults={"resets_ignored": 2})
    isp = _session(dev)
    isp.connect()
    assert isp.result.link_round == 3
    assert dev.state == "isp"


def test_rom_only_answers_after_the_boot_pulse() -> None:
    dev = _device()
    isp = _session(dev, pulse=((1, 0, 0.05),), link_rounds=3, link_burst=10)  # RESET, no BOOT
    with pytest.raises(bk_isp.NoBootloaderError, match="hold BOOT, tap RESET"):
        isp.connect()
    assert dev.app_boots == 3 and "LinkCheck" not in dev.command_names()


def test_linkcheck_before_the_window_gets_no_answer() -> None:
    dev = _device()
    isp = _session(dev)
    isp.connect()
    checks = [c for c in dev.commands if c.name == "LinkCheck"]
    assert checks[-1].args["answered"] is True
    assert isp.result.link_attempt > 1  # the window opens ~8 ms after the pulse
    assert not any(c.args["answered"] for c in checks[:-1])


def test_fake_flash_has_nor_semantics() -> None:
    dev = _device(sr=0)
    isp = _session(dev)
    isp.connect()
    isp.erase(0x10000, 0x1000)
    isp.write(0x10000, b"\x0f" * 4096)
    isp.write(0x10000, b"\xf0" * 4096)  # no erase in between
    assert dev.flash[0x10000:0x11000] == b"\x00" * 4096
    assert dev.dirty_writes == [0x10000]


def test_protected_flash_ignores_erase_and_write() -> None:
    dev = _device(sr=0x1C)
    isp = _session(dev)
    isp.connect()
    isp.erase(0x20000, 0x1000)
    isp.write(0x20000, b"\x00" * 4096)
    assert dev.flash[0x20000:0x21000] == b"\xff" * 4096
    assert dev.ignored == [("erase", 0x20000), ("write", 0x20000)]
