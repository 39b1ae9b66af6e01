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


def test_a_port_taken_by_someone_else_is_not_mistaken_for_the_broker(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Another server grabs the chosen port before mosquitto binds it (parallel tests on one
    machine): the start must notice mosquitto lost the race and move to fresh ports, not hand
    the test a port that a stranger answers."""
    from luatos_testing import mosquitto

    stranger = socket.create_server(("127.0.0.1", 0))
    ports = iter([stranger.getsockname()[1]])
    real_free_port = mosquitto.free_port
    monkeypatch.setattr(mosquitto, "free_port", lambda: next(ports, None) or real_free_port())
    try:
        with broker_for_test(tmp_path) as broker:
            assert broker.port != stranger.getsockname()[1]
            assert " running" in broker.log_text()
            with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as c:
                c.sendall(bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 0]))
                assert c.recv(4)[:1] == b"\x20"  # CONNACK from mosquitto, not the stranger
    finally:
        stranger.close()
