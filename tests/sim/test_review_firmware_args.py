"""Review finding: C functions on the device ignore extra arguments (Lua C API convention)."""

from __future__ import annotations


def test_firmware_functions_ignore_extra_and_trailing_nil_arguments(boot):
    dev = boot("""
        log.info("bsp", pcall(rtos.bsp, nil))
        log.info("ver", pcall(rtos.version, nil, "extra"))
        log.info("mac", pcall(wlan.getMac, 0, true, "extra"))
        log.info("meminfo", pcall(rtos.meminfo, "sys", 1, 2))
        sys.run()
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert "I/user.bsp true Air8101" in lines
    assert "I/user.ver true V2001" in lines
    assert "I/user.mac true C8C2C68CD602" in lines
    assert any(ln.startswith("I/user.meminfo true 233872 ") for ln in lines)


def test_string_extensions_ignore_extra_arguments(boot):
    dev = boot("""
        log.info("b64", pcall(string.toBase64, "hi", "extra"))
        sys.run()
    """)
    dev.run_for("1s")
    assert "I/user.b64 true aGk=" in dev.lines()
