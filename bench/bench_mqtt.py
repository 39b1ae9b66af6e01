"""MQTT benchmark: one publish/receive round trip of the emulated device through a real
loopback Mosquitto, in wall time, next to the same round trip by a plain Python client.

Run ``.venv/bin/python bench/bench_mqtt.py`` (needs mosquitto: make sysdeps). Medians of a few
runs; the machines here are shared and noisy.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from luatos_sim import Device, DeviceOptions
from luatos_testing.mosquitto import find_mosquitto, start_broker
from luatos_testing.mqtt_client import MqttTestClient

RUNS = 5
N = 300

SRC = f"""
sys.taskInit(function()
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
  local c = mqtt.create(nil, "broker.example.com", 1883)
  c:auth("bench")
  c:on(function(cl, ev, topic, payload)
    if ev == "conack" then cl:subscribe("bench/rt")
    elif ev == "suback" then sys.publish("READY")
    elseif ev == "recv" then sys.publish("RT", payload) end
  end)
  c:connect()
  sys.waitUntil("READY", 10000)
  log.info("mark", "start")
  for i = 1, {N} do
    c:publish("bench/rt", tostring(i))
    local ok, p = sys.waitUntil("RT", 5000)
    if not ok or p ~= tostring(i) then log.info("mark", "lost", i); break end
  end
  log.info("mark", "end")
end)
sys.run()
""".replace("elif", "elseif")


def device_round_trip_ms(port: int) -> float:
    d = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    (d / "main.lua").write_text(SRC)
    marks: dict[str, float] = {}
    with Device(d, options=DeviceOptions()) as dev:
        dev.net.map_address("broker.example.com:1883", f"127.0.0.1:{port}")

        def listener(rec) -> None:  # type: ignore[no-untyped-def]
            if rec.line.startswith("I/user.mark "):
                marks[rec.line.split(" ", 2)[1]] = time.perf_counter()
        dev.add_listener(listener)
        dev.run_until("I/user.mark end", within="1h")
        if "lost" in marks:
            raise SystemExit("a round trip was lost")
    return (marks["end"] - marks["start"]) / N * 1000


def python_round_trip_ms(port: int) -> float:
    with MqttTestClient("127.0.0.1", port, "bench-py") as c:
        c.subscribe("bench/py")
        t = time.perf_counter()
        for i in range(N):
            c.publish("bench/py", str(i))
            c.wait_message("bench/py")
        return (time.perf_counter() - t) / N * 1000


def main() -> int:
    if find_mosquitto() is None:
        print("mosquitto not installed: run make sysdeps")
        return 1
    broker = start_broker()
    try:
        dev = statistics.median(device_round_trip_ms(broker.port) for _ in range(RUNS))
        py = statistics.median(python_round_trip_ms(broker.port) for _ in range(RUNS))
    finally:
        broker.stop()
    print(f"{'measure':<44} {'result':<12} {'goal':<8} status")
    print(f"{'device publish -> broker -> recv (wall)':<44} {dev:<9.3f} ms {'< 2 ms':<8} "
          f"{'ok' if dev < 2 else 'MISSED'}")
    print(f"{'same round trip, plain Python client':<44} {py:<9.3f} ms")
    print(f"{'emulated device vs plain client':<44} {dev / py:<9.1f} x")
    print(f"(median of {RUNS} runs of {N} round trips; python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
