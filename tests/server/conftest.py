"""Shared fixtures for the server tests.

PostgreSQL: ``pg_cluster`` (one throwaway cluster per test session, i.e. per xdist worker) and
``pg_url`` (a fresh, empty database on it for each test). Without PostgreSQL the tests that use
them are skipped, or fail when the env var CI is set (CI must run them).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _load_sibling(name: str) -> Any:
    """Import a helper module next to this conftest (tests run with --import-mode=importlib)."""
    qualified = f"_server_tests_{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    spec = importlib.util.spec_from_file_location(qualified, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    spec.loader.exec_module(module)
    return module


pg_fixture = _load_sibling("pg_fixture")


def missing_dependency(reason: str) -> None:
    """Skip locally, fail on CI: CI must exercise every test."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A running throwaway PostgreSQL cluster (pg_fixture.PgCluster)."""
    if pg_fixture.find_bin_dir() is None:
        missing_dependency(pg_fixture.SETUP_HINT)
    cluster = pg_fixture.start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Any) -> str:
    """SQLAlchemy URL (postgresql+psycopg://...) of a new empty database for this test."""
    return pg_cluster.create_database(f"t_{uuid.uuid4().hex[:16]}")


s3_fixture = _load_sibling("s3_fixture")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """A running moto S3 server on loopback (s3_fixture.S3Server), one per xdist worker."""
    if not s3_fixture.available():
        missing_dependency(s3_fixture.SETUP_HINT)
    srv = s3_fixture.start_server()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def own_s3_server() -> Iterator[Any]:
    """A moto S3 server for this test alone (for tests that stop it)."""
    if not s3_fixture.available():
        missing_dependency(s3_fixture.SETUP_HINT)
    srv = s3_fixture.start_server()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test credentials in the environment, where botocore's default chain finds them."""
    for k, v in s3_fixture.CREDENTIAL_ENV.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def s3_url(s3_server: Any, s3_env: None) -> str:
    """``blob_url`` of a fresh bucket on the loopback S3 server."""
    return str(s3_server.url(s3_server.new_bucket()))
