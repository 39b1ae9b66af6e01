"""Review findings on error handling (docs/behaviour.md §2.5)."""

from __future__ import annotations


def test_task_error_exit_text_has_no_position_prefix(boot):
    """behaviour.md §2.5 A: the C line after `Luat: ` is the same text as the resume line, no position."""
    dev = boot("""
        sys.taskInit(function() sys.wait(100); error("boom") end)
        sys.run()
    """)
    dev.run_for("3s")
    resume = [r for r in dev.log if r.line.startswith("E/user.coroutine.resume ")][0]
    text = resume.line[len("E/user.coroutine.resume "):]
    c_texts = [r.text for r in dev.log if r.source == "c" and r.tag == "main"]
    i = c_texts.index("Luat: ")
    assert c_texts[i + 1] == text
    assert text.startswith("main.lua:1: boom\r\nstack traceback:")



def test_error_in_a_firmware_callback_is_case_b_with_the_bare_lua_text(boot):
    """behaviour.md §2.5 B: a callback run by a C handler (here a gpio interrupt) dies like a timer
    callback: `Luat: `, then `<file>:<line>: <msg>` (no host exception name, no traceback)."""
    dev = boot("""
        gpio.setup(5, function(level)
          local z = nil
          z.x = level
        end, gpio.PULLUP)
        sys.run()
    """)
    dev.gpio.set_input(5, 0, at="1500ms")
    dev.run_for("2s")
    c_texts = [r.text for r in dev.log if r.source == "c" and r.tag == "main"]
    i = c_texts.index("Luat: ")
    assert c_texts[i + 1] == "main.lua:3: attempt to index a nil value (local 'z')"
    assert c_texts[i + 2] == "Lua VM exit!! reboot in 15000ms"
    assert dev.boots[0].error == "main.lua:3: attempt to index a nil value (local 'z')"


def test_error_in_a_socket_callback_is_case_b_with_the_bare_lua_text(boot):
    """The socket callback is called by the emulator's Python handler; a Lua error in it must
    still read like the device's case B line, not a host exception with lupa's traceback."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    try:
        dev = boot(f"""
            sys.taskInit(function()
              wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
              local c = socket.create(nil, function(c, e, p)
                local z = nil
                z.x = e
              end)
              socket.config(c)
              socket.connect(c, "127.0.0.1", {port})
              sys.wait(1000)
            end)
            sys.run()
        """)
        dev.run_until("Lua VM exit", within="10s")
    finally:
        srv.close()
    c_texts = [r.text for r in dev.log if r.source == "c" and r.tag == "main"]
    i = c_texts.index("Luat: ")
    assert c_texts[i + 1] == "main.lua:5: attempt to index a nil value (local 'z')"
