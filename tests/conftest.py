"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from luatos_testing.mosquitto import MosquittoBroker, broker_for_test


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A real Mosquitto on a free loopback port (skips locally without it, fails on CI)."""
    base = tmp_path / "mosquitto"
    base.mkdir()
    with broker_for_test(base) as broker:
        yield broker
