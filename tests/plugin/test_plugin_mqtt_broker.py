"""The mqtt_broker fixture: a real broker when Mosquitto is there; without it, skipped locally
with the reason and failed on CI (CI must run every test)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from luatos_testing.mosquitto import SETUP_HINT, broker_for_test


def test_fixture_gives_a_listening_broker_that_restarts_on_its_port(mqtt_broker: Any) -> None:
    port = mqtt_broker.port
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    mqtt_broker.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    mqtt_broker.start()
    assert mqtt_broker.port == port
    socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_missing_mosquitto_skips_locally(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOSQUITTO", str(tmp_path / "no-such-mosquitto"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make sysdeps"):
        with broker_for_test(tmp_path):
            pass


def test_missing_mosquitto_fails_on_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOSQUITTO", str(tmp_path / "no-such-mosquitto"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Mosquitto not installed"):
        with broker_for_test(tmp_path):
            pass
    assert "make sysdeps" in SETUP_HINT
