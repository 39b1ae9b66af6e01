"""luatos-flash end to end against the fake BK7258 ROM (no board was attached)."""

from __future__ import annotations

import io
import json
import os
import struct
import uuid
import zipfile
from pathlib import Path

import pytest

from luatos_common.bkcrc import frame, unframe
from luatos_common.luadb import build_luadb, parse_luadb
from luatos_tools import flash_cli
from luatos_tools.bk_isp import PULSE
from luatos_tools.fake_bk_rom import FakeBkDevice

ADDR = 0x200000


def make_project(root: Path, big: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.lua").write_text('PROJECT = "flashdemo"\nVERSION = "1.0.0"\n'
                                   'log.info("main", "hello")\n', "utf-8")
    (root / "lib").mkdir(exist_ok=True)
    (root / "lib" / "util.lua").write_text("return {x = 1}\n", "utf-8")
    if big:
        (root / "blob.bin").write_bytes(os.urandom(big))
    return root


def expected_image(root: Path) -> bytes:
    """What the device must hold, computed here from the shared LuaDB/CRC modules."""
    files = sorted((p.name, p.read_bytes()) for p in root.rglob("*") if p.is_file())
    return frame(build_luadb(files))


def device(**kw: object) -> FakeBkDevice:
    return FakeBkDevice(f"flash-{uuid.uuid4().hex[:10]}", **kw)  # type: ignore[arg-type]


def run(dev: FakeBkDevice, *argv: str) -> tuple[int, list[dict], str]:
    out, err = io.StringIO(), io.StringIO()
    code = flash_cli.main(["--port", dev.url, "--json", *argv], sleep=dev.sleep,
                          monotonic=dev.monotonic, stdout=out, stderr=err)
    lines = [json.loads(s) for s in out.getvalue().splitlines()]
    return code, lines, err.getvalue()


def result_of(lines: list[dict]) -> dict:
    res = [x for x in lines if x["event"] == "result"]
    assert len(res) == 1
    return res[0]


def test_full_flash_of_a_project_leaves_exactly_the_framed_image(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "proj")
    dev = device()
    code, lines, _ = run(dev, str(proj))
    assert code == 0, lines
    want = expected_image(proj)
    assert dev.flash[ADDR:ADDR + len(want)] == want
    sector_end = ADDR + -(-len(want) // 4096) * 4096
    assert dev.flash[ADDR + len(want):sector_end + 4096] == b"\xff" * (sector_end + 4096 - ADDR - len(want))
    assert dev.flash[:ADDR] == b"\xff" * ADDR
    names = [e.name for e in parse_luadb(unframe(bytes(dev.flash[ADDR:ADDR + len(want)])))]
    assert names == ["main.lua", "util.lua"]
    assert dev.dirty_writes == [] and dev.ignored == []
    cmds = [c for c in dev.command_names() if c != "LinkCheck"]
    assert cmds == ["SetBaud", "FlashID", "ReadSR", "ReadSR", "WriteSR", "Erase", "Write",
                    "CheckCRC"]
    res = result_of(lines)
    assert res["ok"] is True and res["mid"] == "0x1640C8" and res["bytes"] == len(want)
    assert res["crc_variant"] == "crc32^ffffffff" and res["baud"] == 2_000_000
    assert dev.state == "app" and dev.port is None  # left the ROM, port closed


def test_modem_line_sequence_matches_the_reference(tmp_path: Path) -> None:
    dev = device()
    code, _, _ = run(dev, str(make_project(tmp_path / "p")))
    assert code == 0
    seq = dev.line_sequence()
    assert seq[:4] == [(d, r, h) for d, r, h in PULSE]  # (1,1) 50, (0,0) 20, (1,0) 50, (0,1) 50
    assert seq[4][:2] == (0, 0)  # then (0,0) while the LinkChecks run
    assert seq[-2] == (1, 1, 0.5)  # exit: RTS+DTR high 500 ms, then close
    assert seq[-1][:2] == (0, 0)
    opened = next(e.t for e in dev.events if e.kind == "open")
    first = next(e.t for e in dev.events if e.kind == "lines")
    assert first - opened == pytest.approx(0.050)  # DTR=0,RTS=0 settle before the pulse


def test_large_image_erase_order_and_sector_writes(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "big", big=100_000)
    want = expected_image(proj)
    dev = device()
    code, lines, _ = run(dev, str(proj), "--addr", "0x1F8000")
    assert code == 0, lines
    assert dev.flash[0x1F8000:0x1F8000 + len(want)] == want
    erases = [(c.args["size"], c.args["addr"]) for c in dev.commands if c.name == "Erase"]
    n = -(-len(want) // 4096)
    end = 0x1F8000 + n * 4096
    assert erases[:8] == [(0x1000, 0x1F8000 + i * 0x1000) for i in range(8)]
    assert erases[8] == (0x10000, 0x200000)
    assert all(size == 0x1000 for size, _ in erases[9:])
    assert erases[-1][1] + 0x1000 == end
    writes = [c.args["addr"] for c in dev.commands if c.name == "Write"]
    assert writes == [0x1F8000 + i * 0x1000 for i in range(n)]
    assert result_of(lines)["sectors"] == n


@pytest.mark.parametrize("mode", ["xor", "init"])
def test_crc_either_candidate_is_accepted_and_named(tmp_path: Path, mode: str) -> None:
    dev = device(crc_mode=mode)
    code, lines, _ = run(dev, str(make_project(tmp_path / "p")))
    assert code == 0
    variant = result_of(lines)["crc_variant"]
    assert variant == ("crc32^ffffffff" if mode == "xor" else "crc32(init=ffffffff)")
    assert any(x["event"] == "log" and f"matches {variant}" in x["message"] for x in lines)


def test_no_answer_exit_3_tells_the_user_about_boot(tmp_path: Path) -> None:
    dev = device(faults={"no_answer": None})
    code, lines, _ = run(dev, str(make_project(tmp_path / "p")), "--link-rounds", "3",
                         "--link-burst", "20")
    assert code == 3
    res = result_of(lines)
    assert res["kind"] == "no_bootloader" and "hold BOOT, tap RESET" in res["error"]
    seq = dev.line_sequence()
    pulses = sum(1 for i in range(len(seq) - 3)
                 if [s[:2] for s in seq[i:i + 4]] == [(1, 1), (0, 0), (1, 0), (0, 1)])
    assert pulses == 3
    assert dev.flash == bytearray(b"\xff" * len(dev.flash))


def test_no_answer_plain_output_goes_to_stderr(tmp_path: Path) -> None:
    dev = device(faults={"no_answer": None})
    out, err = io.StringIO(), io.StringIO()
    code = flash_cli.main([str(make_project(tmp_path / "p")), "--port", dev.url,
                           "--link-rounds", "1", "--link-burst", "5"], sleep=dev.sleep,
                          monotonic=dev.monotonic, stdout=out, stderr=err)
    assert code == 3 and out.getvalue() == ""
    assert "error: no answer from the bootloader" in err.getvalue()


def test_wrong_mid_exit_4_reports_the_mid(tmp_path: Path) -> None:
    dev = device(faults={"wrong_mid": None})
    code, lines, _ = run(dev, str(make_project(tmp_path / "p")))
    assert code == 4
    res = result_of(lines)
    assert res["kind"] == "wrong_chip" and "0xFFFFFF" in res["error"] and res["mid"] == "0xFFFFFF"


def test_flash_too_small_for_the_address_is_wrong_chip(tmp_path: Path) -> None:
    dev = device(mid=0x1464C8)  # 1 MiB part: 0x200000 is beyond its end
    code, lines, _ = run(dev, str(make_project(tmp_path / "p")))
    assert code == 4 and "1024 KiB" in result_of(lines)["error"]
    assert "Erase" not in dev.command_names()


def test_erase_failure_exit_5_after_five_tries(tmp_path: Path) -> None:
    dev = device(faults={"erase_fail": None})
    code, lines, _ = run(dev, str(make_project(tmp_path / "p")))
    assert code == 5
    res = result_of(lines)
    assert "0x00200000" in res["error"] and "5 tries" in res["error"]
    assert dev.command_names().count("Erase") == 5


def test_transient_erase_failure_is_retried(tmp_path: Path) -> None:
    dev = device(faults={"erase_fail": 2})
    code, _, _ = run(dev, str(make_project(tmp_path / "p")))
    assert code == 0 and dev.command_names().count("Erase") == 3


def test_wrong_address_echo_exit_6_names_the_address(tmp_path: Path) -> None:
    dev = device(faults={"wrong_echo": None})
    code, lines, _ = run(dev, str(make_project(tmp_path / "p")))
    assert code == 6
    err = result_of(lines)["error"]
    assert "0x00200000" in err and "echoed address 0x00201000" in err
    assert dev.command_names().count("Write") == 3


def test_one_bad_echo_is_retried(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "p")
    dev = device(faults={"wrong_echo": 1})
    code, _, _ = run(dev, str(proj))
    assert code == 0 and dev.command_names().count("Write") == 2
    want = expected_image(proj)
    assert dev.flash[ADDR:ADDR + len(want)] == want


@pytest.mark.parametrize("fault", ["corrupt_write", "crc_mismatch"])
def test_verify_failure_exit_7_shows_expected_and_got(tmp_path: Path, fault: str) -> None:
    dev = device(faults={fault: 1})
    code, lines, _ = run(dev, str(make_project(tmp_path / "p")))
    assert code == 7
    err = result_of(lines)["error"]
    assert "expected 0x" in err and "(crc32^ffffffff) or 0x" in err and "is 0x" in err


def test_skipping_unprotect_is_caught_by_the_crc(tmp_path: Path) -> None:
    dev = device()
    code, _, _ = run(dev, str(make_project(tmp_path / "p")), "--no-unprotect")
    assert code == 7
    assert dev.ignored and dev.flash[ADDR:ADDR + 64] == b"\xff" * 64


def test_baud_refused_exit_11(tmp_path: Path) -> None:
    dev = device(faults={"baud_fail": None})
    code, lines, _ = run(dev, str(make_project(tmp_path / "p")))
    assert code == 11 and "--force-br" in result_of(lines)["error"]


def test_image_too_large_exit_8_before_touching_the_port(tmp_path: Path) -> None:
    dev = device()
    code, lines, _ = run(dev, str(make_project(tmp_path / "p")), "--partition-size", "1K")
    assert code == 8
    assert "1024 bytes" in result_of(lines)["error"]
    assert dev.events == []


def test_unopenable_port_exit_10(tmp_path: Path) -> None:
    out = io.StringIO()
    code = flash_cli.main([str(make_project(tmp_path / "p")), "--port",
                           f"fakebk://nope-{uuid.uuid4().hex}?bogus=1", "--json"], stdout=out,
                          stderr=io.StringIO())
    assert code == 10
    assert "cannot open" in json.loads(out.getvalue().splitlines()[-1])["error"]


def test_image_file_framed_unframed_and_ota_package(tmp_path: Path) -> None:
    luadb = build_luadb([("main.lua", b"print('img')\n")])
    framed = frame(luadb)
    taul = b"\xff" * 1024 + b"TAUL" + struct.pack("<I", len(framed)) + framed
    for name, content in (("plain.bin", luadb), ("framed.bin", framed), ("ota.bin", taul)):
        f = tmp_path / name
        f.write_bytes(content)
        dev = device()
        code, lines, _ = run(dev, "--image", str(f))
        assert code == 0, (name, lines)
        assert dev.flash[ADDR:ADDR + len(framed)] == framed, name
        assert dev.flash[ADDR + len(framed):ADDR + len(framed) + 16] == b"\xff" * 16


def test_garbage_image_is_a_clear_input_error(tmp_path: Path) -> None:
    f = tmp_path / "junk.bin"
    f.write_bytes(b"hello world" * 10)
    dev = device()
    code, lines, _ = run(dev, "--image", str(f))
    assert code == 2
    err = result_of(lines)["error"]
    assert "junk.bin" in err and "no LuaDB header" in err and "not a multiple of 34" in err
    assert dev.events == []


def test_project_without_main_lua_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "nomain"
    d.mkdir()
    (d / "lib.lua").write_text("return 1\n")
    code, lines, _ = run(device(), str(d))
    assert code == 2 and "no main.lua" in result_of(lines)["error"]


def make_soc(path: Path, info: dict, script: bytes | None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("info.json", json.dumps(info))
        z.writestr("luatos.bin", b"\x00" * 64)
        if script is not None:
            z.writestr("script.bin", script)
    return path


def test_soc_supplies_address_baud_and_script(tmp_path: Path) -> None:
    luadb = build_luadb([("main.lua", b"print('from soc')\n")])
    soc = make_soc(tmp_path / "fw.soc", {
        "chip": {"type": "bk72xx"},
        "download": {"script_addr": "0x300000", "force_br": "921600"},
        "rom": {"fs": {"script": {"size": 256, "bkcrc": True}}},
    }, luadb)
    dev = device()
    code, lines, _ = run(dev, str(soc))
    assert code == 0, lines
    assert dev.flash[0x300000:0x300000 + len(frame(luadb))] == frame(luadb)
    assert [c.args["baud"] for c in dev.commands if c.name == "SetBaud"] == [921600]
    assert result_of(lines)["addr"] == "0x300000"


def test_soc_parameters_with_a_project(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "p")
    soc = make_soc(tmp_path / "fw.soc", {"rom": {"fs": {"script": {"size": 1}}}}, None)
    code, lines, _ = run(device(), str(proj), "--soc", str(soc))
    assert code == 8  # 1 KiB partition from info.json
    assert "holds 1024 bytes" in result_of(lines)["error"]


def test_verify_boot_sees_the_banner(tmp_path: Path) -> None:
    dev = device()
    code, lines, _ = run(dev, str(make_project(tmp_path / "p")), "--verify-boot", "--reboot-cmd")
    assert code == 0
    res = result_of(lines)
    assert res["boot"] and ("ap0:" in res["boot"] or "luat:" in res["boot"])
    assert "Reboot" in dev.command_names()


def test_verify_boot_wrong_log_baud_exit_9(tmp_path: Path) -> None:
    dev = device(app_baud=115200)  # the app logs at 115200, we listen at 921600
    code, lines, _ = run(dev, str(make_project(tmp_path / "p")), "--verify-boot")
    assert code == 9
    assert "921600" in result_of(lines)["error"]


def test_dry_run_does_not_open_the_port(tmp_path: Path) -> None:
    dev = device()
    code, lines, _ = run(dev, str(make_project(tmp_path / "p")), "--dry-run")
    assert code == 0 and result_of(lines)["dry_run"] is True and dev.events == []


def test_stay_rom_is_sent_when_asked(tmp_path: Path) -> None:
    dev = device()
    code, _, _ = run(dev, str(make_project(tmp_path / "p")), "--stay-rom")
    assert code == 0
    names = [c for c in dev.command_names() if c != "LinkCheck"]
    assert names[:2] == ["StayRom", "SetBaud"]
