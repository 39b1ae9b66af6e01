"""Which requests the device handlers take before Starlette routing (app.DeviceDispatcher)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from luatos_fota.app import FotaApp, create_app
from luatos_fota.checkin import CheckIn
from luatos_fota.downloads import Download
from luatos_fota.v2 import V2Check


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FotaApp]:
    a = create_app(tmp_path_factory.mktemp("d"), admin_token="t")
    yield a
    a.fota.close()
    a.state.store.close()


def scope(target: str, method: str = "GET") -> dict[str, Any]:
    path, _, qs = target.partition("?")
    return {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
            "query_string": qs.encode(), "headers": []}


@pytest.mark.parametrize("target, kind", [
    ("/api/site/firmware_upgrade?mac=C8C2C68CD602&project_key=K&firmware_name=F&version=1.2.3", CheckIn),
    ("/api/site/firmware_upgrademac=C8C2C68CD602&project_key=K&firmware_name=F&version=1.2.3", CheckIn),
    ("/any/path?imei=860000000000001&project_key=K", CheckIn),
    ("/api/site/turnkey_fota?mac=C8C2C68CD602", V2Check),
    ("/dl/" + "a" * 64 + ".bin", Download),
    ("/dl/artifact/3", Download),
    ("/admin/api/devices?mac=C8C2C68CD602", None),  # server-owned paths are never check-ins
    ("/dashboard/index.html?project_key=K", None),
    ("/healthz", None),
    ("/api/site/turnkey_fota_result", None),  # a Starlette route (POST)
    ("/", None),
])
def test_device_requests_go_to_their_handler(app: FotaApp, target: str, kind: type | None) -> None:
    handler = app.devices.handler(scope(target))
    if kind is None:
        assert handler is None
    else:
        assert isinstance(handler, kind)


def test_the_handlers_share_one_edge(app: FotaApp) -> None:
    d = app.devices
    assert d.checkin.edge is d.v2_check.edge is d.download.edge is app.edge
    assert app.fota is app.edge.service and app.blob_cache is app.edge.blob_cache
