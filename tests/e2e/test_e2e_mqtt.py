"""FAQ 7.4 end to end: "upgrade when the server sends `update`" over MQTT.

A real Mosquitto, the real luatos-fota server and the unchanged device/ project (periodic
scenario, config.mqtt_enabled switched on, the edit a user makes) on an emulated Air8101.
The test plays the cloud: it publishes to the device's command topic and reads its replies.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from luatos_testing.dut import SimDut
from luatos_testing.mosquitto import MosquittoBroker
from luatos_testing.mqtt_client import MqttTestClient

from .conftest import NEW, OLD, Fota, booted, package, project, result_codes, vm_exits

DEVICE_MQTT = "192.168.1.10:1883"  # device/config.lua's mqtt_host:mqtt_port


def mqtt_on(files: dict[str, bytes]) -> dict[str, bytes]:
    cfg = files["config.lua"]
    assert cfg.count(b"mqtt_enabled = false,") == 1
    return {**files, "config.lua": cfg.replace(b"mqtt_enabled = false,", b"mqtt_enabled = true,")}


def seen(dev: Any, pattern: str, within: str, count: int = 1) -> None:
    """Run until ``pattern`` has been logged ``count`` times (in any order with other lines)."""
    rx = re.compile(pattern)

    def done(_rec: Any = None) -> bool:
        return sum(1 for ln in dev.lines() if rx.search(ln)) >= count
    if not done():
        dev.run_until(done, within=within)


def send(cloud: MqttTestClient, topic: str, payload: str) -> None:
    cloud.publish(topic, payload, qos=1)
    time.sleep(0.2)  # wall time for the broker to forward it before virtual time moves on


def replies(cloud: MqttTestClient, topic: str, n: int) -> list[dict[str, Any]]:
    return [json.loads(cloud.wait_message(topic, timeout=10).payload) for _ in range(n)]


def test_update_payload_upgrades_and_reports(fota: Fota, make_device: Any,
                                             mqtt_broker: MosquittoBroker) -> None:
    dev = make_device(project(OLD, patch=mqtt_on), fota.srv)
    dev.net.map_address(DEVICE_MQTT, f"127.0.0.1:{mqtt_broker.port}")
    dev.net.reply_window_ms = 3000  # the broker's answers, even on a loaded machine
    mac = dev.profile.mac
    cmd, reply = f"fota/{mac}/cmd", f"fota/{mac}/reply"
    log = SimDut(dev)
    log.expect(r"^W/user\.fota_result 4 ", "1m")  # the boot check: nothing released yet
    seen(dev, r"^I/user\.mqtt subscribed true 1", within="1m")
    fota.release(package(NEW, patch=mqtt_on))
    with MqttTestClient("127.0.0.1", mqtt_broker.port, "cloud") as cloud:
        cloud.subscribe(reply, 1)
        send(cloud, cmd, "update")
        log.expect(r"^I/user\.mqtt_cmd fota started http://192\.168\.1\.10:8000/", "10s")
        log.expect(r"^I/user\.fota_result 0 ", "5m")
        ack, result = replies(cloud, reply, 2)
        log.expect(booted(NEW), "1m")
        seen(dev, r"^I/user\.mqtt subscribed true 1", within="1m", count=2)  # new version online
    assert ack["ack"] == "fota" and ack["status"] == "started"
    assert result["fota_result"] == 0 and result["trigger"] == "mqtt"
    assert result["version"] == OLD
    assert result_codes(dev) == [4, 0, 4]  # the new version's own boot check: up to date
    assert [b.reason for b in dev.boots] == ["power-on", "reboot"]
    assert vm_exits(dev) == []


def test_broker_down_device_keeps_working_and_bad_payloads_are_ignored(
        fota: Fota, make_device: Any, mqtt_broker: MosquittoBroker) -> None:
    mqtt_broker.stop()
    dev = make_device(project(OLD, patch=mqtt_on), fota.srv)
    dev.net.map_address(DEVICE_MQTT, f"127.0.0.1:{mqtt_broker.port}")
    dev.net.reply_window_ms = 3000  # the broker's answers, even on a loaded machine
    mac = dev.profile.mac
    cmd, reply = f"fota/{mac}/cmd", f"fota/{mac}/reply"
    log = SimDut(dev)
    log.expect(r"^W/user\.mqtt error connect 0", "1m")
    log.expect(r"^W/user\.mqtt disconnected 0 retry in 5000 ms", "1s")
    seen(dev, r"^W/user\.fota_result 4 ", within="1m")  # the periodic check still runs
    dev.run_for("20s")
    retries = sum(1 for ln in dev.lines() if ln.startswith("W/user.mqtt error connect 0"))
    assert retries >= 4  # one attempt every 5 s while the broker is down
    mqtt_broker.start()
    seen(dev, r"^I/user\.mqtt subscribed true 1", within="30s")
    with MqttTestClient("127.0.0.1", mqtt_broker.port, "cloud") as cloud:
        cloud.subscribe(reply, 1)
        send(cloud, cmd, "{not json")
        log.expect(r"^W/user\.mqtt_cmd invalid JSON", "10s")
        send(cloud, cmd, '{"fota":"true","url":"ftp://x"}')
        log.expect(r"^W/user\.mqtt_cmd fota rejected bad url ftp://x", "10s")
        send(cloud, cmd, "x" * 4500)  # fits the receive buffer, over the payload limit
        log.expect(r"^W/user\.mqtt_cmd payload ignored 4500 bytes", "10s")
        got = replies(cloud, reply, 3)
        assert [g["ack"] for g in got] == ["error", "fota", "error"]
        assert got[1]["status"] == "error"
        fota.release(package(NEW, patch=mqtt_on))
        send(cloud, cmd, " update\n")
        log.expect(r"^I/user\.fota_result 0 ", "5m")
        log.expect(booted(NEW), "1m")
    assert vm_exits(dev) == []
