"""luatos-pack warns when the packed scripts hold what looks like a secret (never printing it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from luatos_common.project import scan_project
from luatos_tools.pack_cli import main
from luatos_tools.secretscan import secret_warnings

MAIN = b'PROJECT = "fotademo"\nVERSION = "001.002.003"\nsys.run()\n'
REPO = Path(__file__).resolve().parents[2]


def test_secret_looking_fields_are_warned_about_without_their_value(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "main.lua").write_bytes(MAIN)
    (root / "config.lua").write_bytes(b'local c = {\n    wifi_ssid = "plant",\n    wifi_password = "hunter2hunter2",\n'
                                      b'    auth_secret = "9f86d081884c7d659a2feaa0c55ad015",\n'
                                      b'    product_key = "your-product-key",\n    api_token = "",\n}\nreturn c\n')
    code = main(["ota", str(root), "-o", str(tmp_path / "p.bin")])
    err = capsys.readouterr().err
    assert code == 0
    assert "config.lua:3: wifi_password" in err and "config.lua:4: auth_secret" in err
    assert "hunter2" not in err and "9f86d0" not in err
    assert "product_key" not in err and "api_token" not in err and "wifi_ssid" not in err


def test_the_reference_project_ships_no_secrets() -> None:
    files = {n: pf.read() for n, pf in scan_project(REPO / "device").items()}
    assert secret_warnings(files) == []
