"""Reading .soc bundles and info.json: the reference's defaults, and errors that name the key."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from luatos_tools.soc import SocError, SocInfo, parse_info, parse_number, read_info_json, read_soc


def test_empty_info_gets_every_air8101_default() -> None:
    info = parse_info({})
    assert info == SocInfo(defaulted=info.defaulted)
    assert (info.chip_type, info.script_addr, info.bl_addr, info.force_br, info.log_br,
            info.script_size, info.bkcrc) == ("bk72xx", 0x200000, 0, 2_000_000, 921_600,
                                              512 * 1024, True)
    assert "download.script_addr" in info.defaulted and "user.log_br" in info.defaulted


def test_values_in_their_various_spellings() -> None:
    info = parse_info({
        "chip": {"type": "bk72xx"},
        "download": {"script_addr": "0x300000", "bl_addr": 4096, "force_br": "2M"},
        "user": {"log_br": "921600", "project": "demo", "version": "1.2.3"},
        "rom": {"fs": {"script": {"size": 256, "bkcrc": "false"}}, "version-core": "V2001"},
        "script": {"bitw": 64, "use-luac": True, "use-debug": "true"},
    })
    assert info.script_addr == 0x300000 and info.bl_addr == 4096
    assert info.force_br == 2_000_000 and info.log_br == 921_600
    assert info.script_size == 256 * 1024 and info.bkcrc is False
    assert info.script_bitw == 64 and info.use_luac is True and info.use_debug is True
    assert info.versions == {"rom.version-core": "V2001", "user.project": "demo",
                             "user.version": "1.2.3"}
    assert info.defaulted == ()


def test_parse_number_units() -> None:
    assert parse_number("512K", key="k") == 512 * 1024
    assert parse_number("2M", key="k", baud=True) == 2_000_000
    assert parse_number("0x1F000", key="k") == 0x1F000
    assert parse_number(1.0, key="k") == 1
    assert parse_number("524288", key="k") == 524288


@pytest.mark.parametrize(("info", "needle"), [
    ({"download": {"script_addr": "somewhere"}}, "download.script_addr = 'somewhere'"),
    ({"user": {"log_br": True}}, "user.log_br = True is a boolean"),
    ({"rom": {"fs": {"script": {"bkcrc": "maybe"}}}}, "rom.fs.script.bkcrc = 'maybe'"),
    ({"rom": {"fs": {"script": {"size": 0}}}}, "must be positive"),
])
def test_bad_values_name_the_key(info: dict, needle: str) -> None:
    with pytest.raises(SocError, match="info.json") as e:
        parse_info(info)
    assert needle in str(e.value)


def test_read_soc_and_errors(tmp_path: Path) -> None:
    soc = tmp_path / "fw.soc"
    with zipfile.ZipFile(soc, "w") as z:
        z.writestr("info.json", json.dumps({"download": {"force_br": 1_000_000}}))
        z.writestr("script.bin", b"abc")
    b = read_soc(soc)
    assert b.info.force_br == 1_000_000 and b.script_bin == b"abc"
    assert set(b.members) == {"info.json", "script.bin"}

    notzip = tmp_path / "x.soc"
    notzip.write_bytes(b"not a zip")
    with pytest.raises(SocError, match="not a .soc"):
        read_soc(notzip)

    noinfo = tmp_path / "y.soc"
    with zipfile.ZipFile(noinfo, "w") as z:
        z.writestr("luatos.bin", b"")
    with pytest.raises(SocError, match="no info.json"):
        read_soc(noinfo)

    bad = tmp_path / "info.json"
    bad.write_text("{not json")
    with pytest.raises(SocError, match="cannot read info.json"):
        read_info_json(bad)
