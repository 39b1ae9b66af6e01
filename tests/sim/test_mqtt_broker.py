"""The mqtt module against a real Mosquitto: events, QoS, will, faults and bad input.

Each test boots a small project whose broker address (broker.example.com:1883) is mapped to
the test's broker; a Python client on the same broker plays the cloud side.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from luatos_common.logline import SIM
from luatos_sim import Device
from luatos_testing.mqtt_client import MqttTestClient

BROKER = "broker.example.com:1883"

# A client that logs every event with its arguments (and the virtual time of each).
CLIENT = """
local function evlog(c, ev, a, b, m)
  if ev == "recv" then
    log.info("ev", ev, a, #b, b:sub(1, 20), m.qos, m.retain, m.dup, m.message_id)
  else
    log.info("ev", ev, a, b)
  end
  sys.publish("MQEV", ev, a, b)
end
local function up()
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
end
"""


def run_project(boot: Callable[..., Device], broker: Any, body: str) -> Device:
    dev = boot(CLIENT + body + "\nsys.run()\n")
    dev.net.map_address(BROKER, f"127.0.0.1:{broker.port}")
    dev.net.reply_window_ms = 3000  # the broker's answers, even on a loaded machine
    return dev


def notes(dev: Device) -> list[str]:
    """The emulator's own notes (not device output)."""
    return [r.text for r in dev.log if r.source == SIM]


@pytest.fixture
def cloud(mqtt_broker: Any) -> Iterator[MqttTestClient]:
    c = MqttTestClient("127.0.0.1", mqtt_broker.port, "cloud")
    yield c
    c.close()


def test_round_trip_qos_012_and_object(boot: Callable[..., Device], mqtt_broker: Any,
                                       cloud: MqttTestClient) -> None:
    cloud.subscribe("dev/up", 2)
    dev = run_project(boot, mqtt_broker, """
sys.taskInit(function()
  up()
  local c = mqtt.create(nil, "broker.example.com", 1883)
  log.info("obj", type(c), tostring(c):match("^MQTTCTRL%*: 0x%x+$") ~= nil, c:state(), c:ready())
  log.info("auth", c:auth("dev-1", "user", "pass"))
  c:keepalive(60)
  c:on(evlog)
  log.info("connect", c:connect(), c:state(), mqtt.STATE_SCONNECT)
  sys.waitUntil("MQEV", 5000)
  log.info("ready", c:ready(), c:state() == mqtt.STATE_READY)
  log.info("sub", c:subscribe("dev/down", 1), c:subscribe({["dev/a"] = 0}))
  sys.wait(200)
  log.info("pub0", c:publish("dev/up", "q0"))
  log.info("pub1", c:publish("dev/up", "q1", 1))
  log.info("pub2", c:publish("dev/up", "q2", 2, 1))
  sys.wait(200)
  log.info("waiting")
  sys.wait(3000)
  log.info("unsub", c:unsubscribe({"dev/a"}))
  sys.wait(200)
  c:disconnect()
  sys.wait(100)
  log.info("after", c:state(), c:ready(), c:publish("dev/up", "late"))
  c:close()
  log.info("done")
end)
""")
    # Mosquitto hands a QoS 2 message on only after the device's PUBREL; on a loaded machine
    # its PUBREC can come after the 200 ms, so run on until the device saw the PUBCOMP too.
    dev.run_until(lambda rec: {"I/user.waiting", "I/user.ev sent 4 nil"} <= set(dev.lines()), within="30s")
    got = [cloud.wait_message("dev/up") for _ in range(3)]
    assert [(m.payload, m.qos) for m in got] == [(b"q0", 0), (b"q1", 1), (b"q2", 2)]
    cloud.publish("dev/down", "cmd-1", qos=1)
    time.sleep(0.2)  # wall time for the broker to forward it before virtual time moves
    dev.run_until("I/user.done", within="30s")
    lines = dev.lines()
    assert "I/user.obj userdata true 0 false" in lines
    assert "I/user.auth true" in lines
    assert "I/user.connect true 1 1" in lines
    assert "I/user.ev conack nil nil" in lines
    assert "I/user.ready true true" in lines
    assert "I/user.sub 1 2" in lines
    assert "I/user.ev suback true 1" in lines
    assert "I/user.ev suback true 0" in lines
    # QoS 0: sent at once with id 0; QoS 1 and 2: their ids once acknowledged
    assert "I/user.pub0 0" in lines and "I/user.pub1 3" in lines and "I/user.pub2 4" in lines
    sent = [ln for ln in lines if ln.startswith("I/user.ev sent")]
    assert sent == ["I/user.ev sent 0 nil", "I/user.ev sent 3 nil", "I/user.ev sent 4 nil"]
    recv = [ln for ln in lines if ln.startswith("I/user.ev recv")]
    assert len(recv) == 1 and recv[0].startswith("I/user.ev recv dev/down 5 cmd-1 1 0 0 ")
    assert "I/user.unsub 5" in lines and "I/user.ev unsuback nil nil" in lines
    # disconnect(): disconnect event (error state 0), then close (no autoreconn); offline publish
    assert lines.index("I/user.ev disconnect 0 nil") < lines.index("I/user.ev close nil nil")
    assert "I/user.after 0 false nil" in lines


def test_retained_message_and_will_on_link_loss(boot: Callable[..., Device], mqtt_broker: Any,
                                                cloud: MqttTestClient) -> None:
    cloud.publish("dev/cfg", "retained-cfg", qos=1, retain=True)
    cloud.subscribe("dev/will")
    dev = run_project(boot, mqtt_broker, """
sys.taskInit(function()
  up()
  local c = mqtt.create(nil, "broker.example.com", 1883)
  c:auth("dev-will")
  log.info("will", c:will("dev/will", "gone", 1, 0))
  c:on(evlog)
  c:connect()
  sys.waitUntil("MQEV", 5000)
  c:subscribe("dev/cfg")
  sys.wait(1000)
  log.info("linked")
  sys.wait(60000)
end)
""")
    # On a loaded machine the broker's retained PUBLISH can come after the 1 s wait: run on
    # (in the script's 60 s wait) until it is there too.
    def retained(_rec: Any) -> bool:
        lines = dev.lines()
        return "I/user.linked" in lines and any(ln.startswith("I/user.ev recv dev/cfg") for ln in lines)
    dev.run_until(retained, within="30s")
    assert any(ln.startswith("I/user.ev recv dev/cfg 12 retained-cfg 0 1 0") for ln in dev.lines())
    dev.net.link_down("wifi")
    dev.run_for("2s")
    will = cloud.wait_message("dev/will")
    assert will.payload == b"gone"
    lines = dev.lines()
    assert "I/user.ev error other 0" in lines
    assert "I/user.ev disconnect 0 nil" in lines


def test_broker_down_then_up_reconnect_timing(boot: Callable[..., Device], mqtt_broker: Any) -> None:
    mqtt_broker.stop()
    dev = run_project(boot, mqtt_broker, """
sys.taskInit(function()
  up()
  local c = mqtt.create(nil, "broker.example.com", 1883)
  c:auth("dev-re")
  c:autoreconn(true, 5000)
  c:on(function(cl, ev, a, b)
    log.info("ev", ev, a, b, mcu.ticks())
    sys.publish("MQEV", ev)
  end)
  c:connect()
  while true do
    local _, ev = sys.waitUntil("MQEV", 60000)
    if ev == "conack" then log.info("online", mcu.ticks()); break end
  end
  sys.wait(600000)
end)
""")
    dev.run_for("17s")
    lines = dev.lines()
    errors = [ln for ln in lines if ln.startswith("I/user.ev error connect 0")]
    ticks = [int(ln.split()[-1]) for ln in errors]
    # the first attempt once WiFi is up (~1.9 s), then a retry every 5 s of virtual time
    assert len(ticks) == 4 and ticks[0] < 2500
    # (Lua runs in virtual time too: the callback's own instructions before mcu.ticks() may
    # land a tick either side, as on a device)
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert len(gaps) == 3 and all(abs(g - 5000) <= 2 for g in gaps), gaps
    assert all(re.match(r"I/user.ev (error connect 0|disconnect 0 nil)", ln)
               for ln in lines if ln.startswith("I/user.ev"))
    assert not any("ev close" in ln for ln in lines)  # autoreconn: never closed
    mqtt_broker.start()
    dev.run_until("I/user.online", within="30s")


def test_broker_restart_mid_session(boot: Callable[..., Device], mqtt_broker: Any) -> None:
    dev = run_project(boot, mqtt_broker, """
sys.taskInit(function()
  up()
  local c = mqtt.create(nil, "broker.example.com", 1883)
  c:auth("dev-rs")
  c:autoreconn(true)
  c:on(function(cl, ev, a, b)
    log.info("ev", ev, a, b)
    if ev == "conack" then cl:subscribe("dev/x") end
  end)
  c:connect()
  sys.wait(600000)
end)
""")
    dev.run_until("I/user.ev conack", within="10s")
    mqtt_broker.stop()
    dev.run_until("I/user.ev disconnect", within="10s")
    dev.run_for("7s")
    mqtt_broker.start()
    dev.run_until(lambda r: sum(1 for ln in dev.lines() if ln == "I/user.ev conack nil nil") == 2,
                  within="30s")
    lines = [ln for ln in dev.lines() if ln.startswith("I/user.ev")]
    first_drop = lines.index("I/user.ev error other 0")
    assert lines[first_drop + 1] == "I/user.ev disconnect 0 nil"
    assert "I/user.ev error connect 0" in lines[first_drop:]  # refused while down
    with MqttTestClient("127.0.0.1", mqtt_broker.port, "cloud2") as cloud:
        cloud.publish("dev/x", "after-restart", qos=1)
        time.sleep(0.2)  # wall time for the broker to forward it before virtual time moves
        dev.run_until("I/user.ev recv dev/x after-restart", within="10s")


def test_connack_refused_without_auth(boot: Callable[..., Device], mqtt_broker: Any) -> None:
    """Without auth() the firmware's broker struct is all zero: empty client id and no clean
    session, which a 3.1.1 broker refuses with return code 2."""
    dev = run_project(boot, mqtt_broker, """
sys.taskInit(function()
  up()
  local c = mqtt.create(nil, "broker.example.com", 1883)
  c:on(evlog)
  c:connect()
  sys.wait(3000)
  log.info("state", c:state(), c:ready())
end)
""")
    dev.run_until("I/user.state", within="20s")
    lines = dev.lines()
    ev = [ln for ln in lines if ln.startswith("I/user.ev")]
    assert ev == ["I/user.ev disconnect 2 nil", "I/user.ev close nil nil",
                  "I/user.ev error conack 2"]
    assert "mqtt:CONACK 0x02" in lines
    assert "I/user.state 0 false" in lines


class GarbageServer:
    """A TCP server that answers anything with bytes that are not MQTT."""

    def __init__(self, answer: bytes) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)  # kept open: the device must time out, not see a close
                c.recv(1000)
                c.sendall(self.answer)
            except OSError:
                return


@pytest.mark.parametrize("answer", [b"\x00\x00HTTP/1.1 400 Bad Request\r\n\r\n", b"\x20\x05"])
def test_broker_answering_garbage_times_out(boot: Callable[..., Device], answer: bytes) -> None:
    srv = GarbageServer(answer)
    try:
        dev = boot(CLIENT + """
sys.taskInit(function()
  up()
  local c = mqtt.create(nil, "broker.example.com", 1883, nil, {conn_timeout = 10})
  c:auth("dev-g")
  c:on(evlog)
  c:connect()
  sys.wait(15000)
  log.info("state", c:state())
end)
sys.run()
""")
        dev.net.map_address(BROKER, f"127.0.0.1:{srv.port}")
        dev.run_until("I/user.state", within="30s")
        lines = dev.lines()
        ev = [ln for ln in lines if ln.startswith("I/user.ev")]
        assert ev[:2] == ["I/user.ev error timeout 0", "I/user.ev disconnect 0 nil"], \
            lines + notes(dev)
        assert "mqtt:connect timeout broker.example.com 1883!! expect conack in 10s" in lines
        assert "I/user.state 0" in lines
        assert not any("Traceback" in ln for ln in lines)
    finally:
        srv.sock.close()


def test_erroring_callback_is_a_lua_error(boot: Callable[..., Device], mqtt_broker: Any) -> None:
    dev = run_project(boot, mqtt_broker, """
sys.taskInit(function()
  up()
  local c = mqtt.create(nil, "broker.example.com", 1883)
  c:auth("dev-err")
  c:on(function(cl, ev)
    if ev == "conack" then
      local t = nil
      log.info("boom", t.field)
    end
  end)
  c:connect()
  sys.wait(60000)
end)
""")
    dev.run_until(re.compile(r"attempt to index a nil value"), within="30s")
    text = "\n".join(dev.lines())
    assert "main.lua:" in text and "attempt to index a nil value (local 't')" in text
    assert "Traceback" not in text and "lupa" not in text


def test_one_megabyte_payload_overflows_the_receive_buffer(boot: Callable[..., Device],
                                                           mqtt_broker: Any,
                                                           cloud: MqttTestClient) -> None:
    cloud.subscribe("dev/big")
    dev = run_project(boot, mqtt_broker, """
sys.taskInit(function()
  up()
  local c = mqtt.create(nil, "broker.example.com", 1883)
  c:auth("dev-big")
  c:on(evlog)
  c:connect()
  sys.waitUntil("MQEV", 5000)
  c:subscribe("dev/big")
  sys.wait(500)
  local zb = zbuff.create(1024 * 1024, 0x78)
  zb:seek(0, zbuff.SEEK_END)
  log.info("pub", c:publish("dev/big", zb, 1))
  sys.wait(5000)
  log.info("state", c:state())
end)
""")
    dev.run_until("I/user.state", within="60s")
    assert len(cloud.wait_message("dev/big", timeout=10).payload) == 1024 * 1024
    lines = dev.lines()
    assert "I/user.pub 2" in lines
    assert any(ln.startswith("mqtt:too many data wait for recv") for ln in lines)
    assert any("receive buffer" in ln and "rxSize" in ln for ln in notes(dev))
    assert "I/user.ev disconnect 0 nil" in lines
    assert "I/user.state 0" in lines


def test_invalid_topic_gets_a_note_and_the_brokers_answer(boot: Callable[..., Device],
                                                          mqtt_broker: Any) -> None:
    dev = run_project(boot, mqtt_broker, """
sys.taskInit(function()
  up()
  local c = mqtt.create(nil, "broker.example.com", 1883)
  c:auth("dev-topic")
  c:on(evlog)
  c:connect()
  sys.waitUntil("MQEV", 5000)
  log.info("pub", c:publish("dev/#", "bad"))
  sys.wait(2000)
  log.info("state", c:state())
  log.info("badarg", pcall(c.publish, c))
end)
""")
    dev.run_until("I/user.badarg", within="30s")
    lines = dev.lines()
    assert "I/user.pub 0" in lines
    assert any("wildcards in a published topic" in ln for ln in notes(dev))
    assert "I/user.ev error other 0" in lines and "I/user.state 0" in lines
    assert any("bad argument #1 to 'publish' (string expected, got no value)" in ln
               for ln in lines if ln.startswith("I/user.badarg false"))
