"""The fota_server fixture: a real server on a free loopback port, with its own data dir."""

from __future__ import annotations

import os

from luatos_fota.testing import device_request, script_package

KEY = "plugin-key"
FW = "PLUGIN_LuatOS-SoC_Air8101"


def test_fota_server_serves_a_release_added_through_the_helper(fota_server) -> None:
    assert fota_server.url.startswith("http://127.0.0.1:")
    assert fota_server.device_url == fota_server.url + "/api/site/firmware_upgrade?"
    assert fota_server.data_dir.is_dir()
    product = fota_server.product(KEY, FW)
    assert fota_server.product(KEY, FW)["id"] == product["id"]  # found, not created twice
    package = script_package(FW, "001.000.002", "-- " + os.urandom(64).hex())
    release = fota_server.add_release(package, project_key=KEY, firmware_name=FW,
                                      version="001.000.002")
    assert release["product_id"] == product["id"]
    # a device on 001.000.001 asks, as libfota2 would, and gets the package bytes
    target = (f"/api/site/firmware_upgrade?mac=C8C2C68CD602&project_key={KEY}"
              f"&firmware_name={FW}&version=2001.001.000")
    reply = device_request(fota_server.port, target)  # RunningServer attribute, passed through
    assert reply.status == 200
    assert reply.body == package
