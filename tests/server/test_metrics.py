"""``/metrics``, ``/healthz`` and ``/readyz`` after a scripted run against a real server.

The registry is per process and other tests in this worker also count into it, so each test
compares two scrapes, before and after its own traffic.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from luatos_common.packages import build_air8101_ota
from luatos_fota import metrics
from luatos_fota.push import running_hub
from luatos_fota.testing import RunningServer, device_request, running_server

KEY = "metrics_key"
FW = "MDEMO_LuatOS-SoC_Air8101"


def scrape(srv: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = requests.get(f"{srv.base_url}/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def check_in(srv: RunningServer, mac: str, version: str, key: str = KEY, headers: bytes = b"") -> Any:
    return device_request(srv.port, f"/api/site/firmware_upgrade?mac={mac}&project_key={key}"
                          f"&firmware_name={FW}&version={version}", extra_headers=headers)


def test_metrics_count_a_scripted_run(tmp_path: Path) -> None:
    with running_server(tmp_path / "d", loop_max_serves=2) as srv:
        product = srv.store.products.add(KEY, FW)
        data = build_air8101_ota({"main.lua": b"PROJECT='MDEMO'\nVERSION='001.000.002'\n"})
        rel = srv.store.releases.add(data, product_id=product.id, version="001.000.002")
        srv.app.fota.invalidate()
        before = scrape(srv)
        assert check_in(srv, "AA0000000001", "2001.001.002").status == 304
        assert check_in(srv, "AA0000000002", "2001.001.002").status == 304
        unknown = check_in(srv, "AA0000000001", "2001.001.000", key="nope")
        assert unknown.status == 404
        full = check_in(srv, "AA0000000003", "2001.001.000")
        assert full.status == 200 and full.body == data
        part = check_in(srv, "AA0000000003", "2001.001.000", headers=b"Range: bytes=100-\r\n")
        assert part.status == 206
        # Third full serve to one device with loop_max_serves=2: the loop guard bans it.
        assert check_in(srv, "AA0000000003", "2001.001.000").status == 200
        banned = check_in(srv, "AA0000000003", "2001.001.000")
        assert banned.status == 403 and banned.json()["code"] == 40
        dl = device_request(srv.port, rel.download_path,  # packages are private: the operator's token
                            extra_headers=f"Authorization: Bearer {srv.admin_token}\r\n".encode())
        assert dl.status == 200
        after = scrape(srv)

    assert delta(before, after, "luatos_fota_checkins_total", channel="v1", outcome="up_to_date") == 2
    assert delta(before, after, "luatos_fota_checkins_total", channel="v1", outcome="unknown_project") == 1
    assert delta(before, after, "luatos_fota_checkins_total", channel="v1", outcome="upgrade") == 3
    assert delta(before, after, "luatos_fota_checkins_total", channel="v1", outcome="loop_banned") == 1
    assert delta(before, after, "luatos_fota_serves_total", mode="full") == 2
    assert delta(before, after, "luatos_fota_serves_total", mode="continuation") == 1
    assert delta(before, after, "luatos_fota_serves_total", mode="download") == 1
    assert delta(before, after, "luatos_fota_loop_bans_total") == 1
    # Two full serves and one from byte 100 by check-in, plus the two JSON refusals.
    sent = 3 * len(data) - 100 + len(unknown.body) + len(banned.body)
    assert delta(before, after, "luatos_fota_response_bytes_total", endpoint="device") == sent
    assert delta(before, after, "luatos_fota_response_bytes_total", endpoint="download") == len(data)
    assert delta(before, after, "luatos_fota_request_duration_seconds_count", endpoint="device", status="304") == 2
    assert delta(before, after, "luatos_fota_request_duration_seconds_count", endpoint="device", status="206") == 1
    assert delta(before, after, "luatos_fota_request_duration_seconds_count", endpoint="download", status="200") == 1
    # Device-path store calls are timed by name (at least the serve counting of the loop guard).
    assert any(k[0] == "luatos_fota_store_call_duration_seconds_count" and v > before.get(k, 0)
               for k, v in after.items())


def test_preflight_counter_is_callable_from_anywhere(tmp_path: Path) -> None:
    with running_server(tmp_path / "d") as srv:
        before = scrape(srv)
        metrics.preflight("failed")
        metrics.preflight("passed")
        metrics.preflight("passed")
        after = scrape(srv)
    assert delta(before, after, "luatos_fota_preflight_results_total", result="passed") == 2
    assert delta(before, after, "luatos_fota_preflight_results_total", result="failed") == 1


def test_push_sessions_online_gauge(tmp_path: Path) -> None:
    with running_hub() as hub, running_server(tmp_path / "d", push_hub=hub) as srv:
        before = scrape(srv)[("luatos_fota_push_sessions_online", ())]
        with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as dev:
            dev.sendall(json.dumps({"login": {"device": "C8C2C68C7701", "version": "2001.001.000"}}).encode()
                        + b"\n")
            assert json.loads(dev.makefile().readline()) == {"login": "ok"}
            online = scrape(srv)[("luatos_fota_push_sessions_online", ())]
            assert online - before == 1
        deadline = time.monotonic() + 10
        while scrape(srv)[("luatos_fota_push_sessions_online", ())] != before:
            assert time.monotonic() < deadline, "the closed session is still counted"
            time.sleep(0.05)


def test_healthz_and_readyz(tmp_path: Path) -> None:
    with running_server(tmp_path / "d") as srv:
        h = requests.get(f"{srv.base_url}/healthz", timeout=30)
        assert h.status_code == 200 and h.json()["ok"] is True
        r = requests.get(f"{srv.base_url}/readyz", timeout=30)
        assert r.status_code == 200 and r.json() == {"ok": True, "database": "ok", "blobs": "ok"}
        # The blob directory gone (a lost mount): not ready, and the answer says why.
        (tmp_path / "d" / "blobs" / "tmp").rmdir()
        r = requests.get(f"{srv.base_url}/readyz", timeout=30)
        assert r.status_code == 503 and r.json()["database"] == "ok"
        assert "blob directory" in r.json()["blobs"]
        # Parameters on an ops path never make it a device check-in.
        m = requests.get(f"{srv.base_url}/metrics?mac=AA&project_key=k&firmware_name=f&version=1", timeout=30)
        assert m.status_code == 200


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz"])
def test_ops_endpoints_reject_writes(tmp_path: Path, path: str) -> None:
    with running_server(tmp_path / "d") as srv:
        r = requests.post(f"{srv.base_url}{path}", timeout=30)
        assert r.status_code == 405
