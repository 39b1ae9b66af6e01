"""The emulator never sends traffic off this machine unless told to."""

from __future__ import annotations


def test_unmapped_private_address_is_refused_with_a_diagnostic(boot):
    dev = boot("""
        sys.taskInit(function()
          wlan.init()
          wlan.connect("ssid", "pw")
          sys.waitUntil("IP_READY", 5000)
          local code = http.request("GET", "http://192.168.1.10:8000/x").wait()
          log.info("code", code)
          local code2 = http.request("GET", "http://ota.example.com/x").wait()
          log.info("code2", code2)
        end)
        sys.run()
    """)
    dev.run_until("I/user.code2", within="1m")
    assert "I/user.code -4" in dev.lines()
    assert "I/user.code2 -4" in dev.lines()
    notes = [r.text for r in dev.log if r.source == "sim" and "not mapped" in r.text]
    assert any("192.168.1.10:8000" in n for n in notes)
    assert any("ota.example.com:80" in n for n in notes)
