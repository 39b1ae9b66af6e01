"""serve_counts="memory": loop-guard counts in memory, serve rows through the batched writer.

The same guarantees as the default database counting within one process: the ban after N
serves, counts surviving a restart (seeded from the DB), fota_sn usable at once for a v2 result,
and stats that include serves still in the write buffer.
"""

from __future__ import annotations

import json
from pathlib import Path

from luatos_fota.testing import device_request, running_server, script_package

KEY = "memkey"
FW = "MEM_LuatOS-SoC_Air8101"
MAC = "C8C2C68CD602"


def check(version: str, mac: str = MAC) -> str:
    return f"/api/site/firmware_upgrade?mac={mac}&project_key={KEY}&firmware_name={FW}&version={version}"


def test_memory_counts_ban_and_survive_a_restart(tmp_path: Path) -> None:
    opts = {"serve_counts": "memory", "loop_max_serves": 3, "flush_interval_s": 60}
    with running_server(tmp_path / "d", **opts) as s:
        p = s.store.products.add(KEY, FW)
        rel = s.store.releases.add(script_package(FW, "001.000.002", "--2"), product_id=p.id, version="001.000.002")
        assert [device_request(s.port, check("2001.001.000")).status for _ in range(2)] == [200, 200]
        # still in the write buffer (flush interval 60 s), yet stats see them
        assert s.store.releases.stats(rel.id)[0].serves == 2
    with running_server(tmp_path / "d", **opts) as s:  # a restart: counts come back from the DB
        assert device_request(s.port, check("2001.001.000")).status == 200
        r = device_request(s.port, check("2001.001.000"))
        assert r.status == 403 and r.json()["code"] == 40
        assert s.store.devices.get(MAC).ban_code == 40


def test_memory_fota_sn_reportable_before_the_flush(tmp_path: Path) -> None:
    with running_server(tmp_path / "d", serve_counts="memory", flush_interval_s=60) as s:
        p = s.store.products.add(KEY, FW)
        s.store.releases.add(script_package(FW, "001.000.002", "--2"), product_id=p.id, version="001.000.002")
        r = device_request(s.port, f"/api/site/turnkey_fota?mac={MAC}&project_key={KEY}&core_version=V2001"
                                   "&script_version=001.000.000&script_name=MEM")
        sn = r.json()["fota_sn"]
        assert sn
        body = json.dumps({"fota_sn": sn, "result_code": 0}).encode()
        res = device_request(s.port, "/api/site/turnkey_fota_result", method=b"POST",
                             extra_headers=f"Content-Length: {len(body)}\r\n".encode(), body=body)
        assert res.status == 200 and res.json()["success"] is True
        # and the version change confirms the buffered serve
        assert device_request(s.port, check("2001.001.002")).status == 304
        assert s.store.releases.stats(1)[0].confirmed == 1
