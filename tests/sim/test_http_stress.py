"""Back-to-back http.request under load: no emulator error, ever (issue 9 item 2).

The event queue used to carry each event's Python handler and arguments into the VM; lupa frees
a Python object that is pushed again while its previous userdata awaits finalization, so a busy
exchange stream sooner or later called a freed handler ("'_Exchange' object is not callable").
Events now stay in Python under an integer key. These runs hit that window thousands of times.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator

import pytest

from luatos_common.logline import LogRecord
from luatos_sim import Device, DeviceOptions
from luatos_sim.platform.http_transport import RawTransport

OPTIONS = DeviceOptions(epoch_at_power_on=1_700_000_000)


@pytest.fixture
def ok_server() -> Iterator[int]:
    """Loopback HTTP server: one thread per connection, answers 200 "ok" at once."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)

    def one(c: socket.socket) -> None:
        with c:
            try:
                c.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    more = c.recv(4096)
                    if not more:
                        return
                    data += more
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            except OSError:
                pass

    def accept() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=one, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def _project(total: int, tasks: int, pause_ms: int) -> str:
    return f"""
PROJECT = "stress" VERSION = "1.0.0"
local codes, left, started = {{}}, {tasks}, 0
wlan.init()
wlan.connect("ap", "pw")
for t = 1, {tasks} do
    sys.taskInit(function()
        sys.waitUntil("IP_READY")
        for i = 1, {total // tasks} do
            local code, headers, body = http.request("GET", "http://api.example.com/r").wait()
            if code == 200 and body ~= "ok" then code = "badbody" end
            codes[code] = (codes[code] or 0) + 1
            if code ~= 200 then sys.waitUntil("IP_READY", 500) end
            if {pause_ms} > 0 then sys.wait({pause_ms}) end
        end
        left = left - 1
        if left == 0 then
            local out = {{}}
            for k, n in pairs(codes) do out[#out + 1] = tostring(k) .. "=" .. n end
            table.sort(out)
            log.info("stress", table.concat(out, ","))
        end
    end)
end
sys.run()
"""


def _errors(dev: Device) -> list[str]:
    """Error records of any source (the VM's exit lines, a script's E/ lines, sim notes)."""
    return [r.line for r in dev.log if r.level == "E" or "Error" in r.line
            or "Traceback" in r.line or "not callable" in r.line]


def _finished_or_failed(rec: LogRecord) -> bool:
    return rec.line.startswith("I/user.stress ") or rec.level == "E"


def _counts(dev: Device) -> dict[str, int]:
    line = next(ln for ln in dev.lines() if ln.startswith("I/user.stress "))
    return {k: int(v) for k, v in (p.split("=") for p in line.split(" ", 1)[1].split(","))}


def test_ten_thousand_back_to_back_requests(ok_server: int, tmp_path: object) -> None:
    dev = Device(files={"main.lua": _project(10_000, 10, 0).encode()}, options=OPTIONS)
    try:
        dev.net.map_address("api.example.com", f"127.0.0.1:{ok_server}")
        dev.net.http_transport = RawTransport()
        dev.run_until(_finished_or_failed, within="1h")
        assert _errors(dev) == []
        assert _counts(dev) == {"200": 10_000}
        assert _errors(dev) == []
        assert len(dev.boots) == 1 and dev.boots[0].outcome == "running"
    finally:
        dev.close()


def test_a_thousand_requests_with_random_link_drops(ok_server: int) -> None:
    dev = Device(files={"main.lua": _project(1_000, 4, 10).encode()}, options=OPTIONS)
    try:
        dev.net.map_address("api.example.com", f"127.0.0.1:{ok_server}")
        dev.net.http_transport = RawTransport()
        dev.net.latency("20ms")  # exchanges span virtual time, so a drop can land inside one
        rng = random.Random(9)
        at = 2_000
        for _ in range(25):
            at += rng.randrange(50, 400)
            dev.net.link_down("wifi", at=f"{at}ms")
            at += rng.randrange(20, 300)
            dev.net.link_up("wifi", at=f"{at}ms")
        dev.run_until(_finished_or_failed, within="1h")
        assert _errors(dev) == []
        counts = _counts(dev)
        assert sum(counts.values()) == 1_000
        assert counts.get("200", 0) > 500  # most get through ...
        assert set(counts) - {"200"}, counts  # ... and the drops did hit some
        assert set(counts) <= {"200", "-1", "-4", "-5", "-8"}, counts
        assert _errors(dev) == []
        assert len(dev.boots) == 1 and dev.boots[0].outcome == "running"
    finally:
        dev.close()
