"""Emulator diagnostics carry the current virtual time and come in order (issue 9 item 9)."""

from __future__ import annotations

from collections.abc import Callable

from luatos_common.logline import SIM
from luatos_sim import Device


def test_refused_connection_note_is_stamped_when_it_happens(boot: Callable[..., Device]) -> None:
    dev = boot("""
        PROJECT = "n" VERSION = "1.0.0"
        sys.taskInit(function()
            wlan.init() wlan.connect("ap", "pw")
            log.info("ip", sys.waitUntil("IP_READY", 10000))
            sys.wait(5000)
            local sc = socket.create(socket.LWIP_STA, function() end)
            log.info("connect", socket.connect(sc, "10.1.2.3", 5000))
            sys.wait(1000)
            log.info("done")
        end)
        sys.run()
    """)
    dev.run_until("I/user.done", within="20s")
    records = list(dev.log)
    note = next(i for i, r in enumerate(records)
                if r.source == SIM and "10.1.2.3:5000 is not mapped" in r.text)
    connect = next(i for i, r in enumerate(records) if r.line.startswith("I/user.connect"))
    assert note > connect
    assert records[note].device_ms == records[connect].device_ms
    assert (records[note].device_ms or 0) >= 6_900
