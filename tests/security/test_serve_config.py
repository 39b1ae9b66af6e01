"""Every limit is a `serve` flag and a config-file key; bad files are refused by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from luatos_fota.config import ServerConfig
from luatos_fota.serveconfig import ConfigFileError, flag_fields, load

LIMITS = ["max_head_bytes", "max_request_line", "header_timeout_s", "body_timeout_s", "keep_alive_s",
          "max_connections", "max_connections_per_ip", "json_max_depth", "audit_ip_rate", "audit_ip_burst",
          "audit_detail_max", "audit_max_age_s", "audit_max_rows", "new_device_ip_rate",
          "new_device_product_rate", "push_keepalive_idle_s", "push_idle_timeout_s", "push_line_rate",
          "push_max_connections", "push_max_connections_per_ip", "private_downloads", "signed_url_ttl_s",
          "orphan_gc_interval_s"]


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "luatos_fota.cli", "serve", *args], capture_output=True,
                          text=True, timeout=60)


def test_every_limit_has_a_flag_and_a_file_key(tmp_path: Path) -> None:
    flags = flag_fields()
    assert set(LIMITS) <= set(flags)
    help_text = _serve("--help").stdout
    for name in LIMITS:
        assert "--" + name.replace("_", "-") in help_text, name
    f = tmp_path / "serve.toml"
    f.write_text("max_connections = 77\nheader_timeout_s = 3\nprivate_downloads = false\nport = 9\n")
    app, proc = load(f)
    assert app == {"max_connections": 77, "header_timeout_s": 3.0, "private_downloads": False}
    assert proc == {"port": 9}
    assert ServerConfig.from_kwargs(**app).header_timeout_s == 3.0


def test_bad_config_files_and_values_are_named(tmp_path: Path) -> None:
    f = tmp_path / "serve.toml"
    for text, needle in (("max_conections = 5\n", "unknown key 'max_conections'"),
                         ("max_connections = \"many\"\n", "must be int"),
                         ("max_connections = [\n", "not valid TOML")):
        f.write_text(text)
        try:
            load(f)
        except ConfigFileError as e:
            assert needle in str(e) and str(f) in str(e)
        else:
            raise AssertionError(f"{text!r} was accepted")
    f.write_text("max_conections = 5\n")
    out = _serve("--data", str(tmp_path / "d"), "--config", str(f))
    assert out.returncode == 2 and "max_conections" in out.stderr and "Traceback" not in out.stderr
    out = _serve("--data", str(tmp_path / "d"), "--max-connections", "-3")
    assert out.returncode == 2 and "max_connections must be >= 0" in out.stderr
    out = _serve("--data", str(tmp_path / "d"), "--tls-cert", str(f))
    assert out.returncode == 2 and "--tls-key" in out.stderr
