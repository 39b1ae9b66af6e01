"""Device lifecycle: reboot, errors, persistence, watchdog, reboot loops, heap, namespace."""

from __future__ import annotations

import pytest

from luatos_sim import Device, DeviceOptions, RebootLoopError, UntilTimeout
from luatos_sim.scripts import ScriptError

from .conftest import write_project


def c_lines(dev, boot=None):
    return [r for r in dev.log if r.source == "c" and (boot is None or r.boot == boot)]


def test_reboot_halts_at_once_even_inside_pcall(boot):
    dev = boot("""
        local n = fskv.init() and (fskv.get("boots") or 0) + 1
        fskv.set("boots", n)
        log.info("boot", n, pm.lastReson())
        if n == 1 then
          sys.taskInit(function()
            sys.wait(100)
            local ok = pcall(rtos.reboot)
            log.info("after", "reboot", ok)          -- must never print
            while true do fskv.set("leak", 1) end    -- must never run
          end)
        end
        sys.run()
    """)
    dev.run_for("2s")
    lines = dev.lines()
    assert "I/user.boot 1 0 0 0 0" in lines
    assert "I/user.boot 2 0 0 3 0" in lines
    assert not any("after" in ln for ln in lines)
    assert dev.fskv.get("leak") is None
    assert [b.outcome for b in dev.boots] == ["reboot", "running"]
    second = c_lines(dev, 2)
    assert [r.text for r in second][:4] == [
        "reset native reason: 1", "boot up by reboot", "reset reason: SWRESET", "poweron reason 3"]
    # one monotonic ms counter across the soft reboot (UNCONFIRMED default)
    assert dev.boots[1].started_ms == 800 + 100


def test_task_error_timing_and_lines(boot):
    dev = boot("""
        sys.taskInit(function()
          sys.wait(1000)
          local x = nil
          x.y = 1
        end)
        sys.run()
    """)
    dev.run_for("20s")
    err = [r for r in dev.log if r.line.startswith("E/user.coroutine.resume")][0]
    assert err.device_ms == 1800
    assert "main.lua:4: attempt to index a nil value (local 'x')" in err.line
    assert "\r\nstack traceback:" in err.line
    exit_line = [r for r in dev.log if "Lua VM exit!!" in r.text][0]
    assert exit_line.device_ms == 2300  # +500 ms: sys's assert timer kills the main chunk
    assert exit_line.uart() == "luat:E(2300):main:Lua VM exit!! reboot in 15000ms"
    assert dev.boots[1].started_ms == 2300 + 15000
    assert dev.boots[0].outcome == "error"


def test_task_error_with_restart_only_reboots_at_once(boot):
    dev = boot("""
        COROUTINE_ERROR_ROLL_BACK = false
        sys.taskInit(function() sys.wait(10); error("boom") end)
        sys.run()
    """)
    dev.run_for("2s")
    assert dev.boots[0].outcome == "reboot"
    assert dev.boots[1].started_ms == 810


def test_task_error_with_both_flags_false_only_kills_the_task(boot):
    dev = boot("""
        COROUTINE_ERROR_ROLL_BACK = false
        COROUTINE_ERROR_RESTART = false
        sys.taskInit(function() sys.wait(10); error("boom") end)
        sys.timerStart(function() log.info("still", "alive") end, 1000)
        sys.run()
    """)
    dev.run_for("3s")
    assert "I/user.still alive" in dev.lines()
    assert len(dev.boots) == 1


def test_error_in_function_subscriber_is_immediate(boot):
    dev = boot("""
        sys.subscribe("X", function() error("sub failed") end)
        sys.timerStart(sys.publish, 100, "X")
        sys.run()
    """)
    dev.run_for("2s")
    texts = [r.text for r in c_lines(dev, 1)]
    i = texts.index("Luat: ")
    assert texts[i + 1] == "main.lua:1: sub failed"
    assert texts[i + 2] == "Lua VM exit!! reboot in 15000ms"
    assert [r for r in dev.log if "Lua VM exit" in r.text][0].device_ms == 900


def test_syntax_error_names_file_and_line(boot):
    dev = boot("""
        require "helper"
        sys.run()
    """, {"lib/helper.lua": "local x = = 1\n"})
    dev.run_for("2s")
    texts = [r.text for r in c_lines(dev, 1)]
    msg = texts[texts.index("Luat: ") + 1]
    assert "error loading module 'helper' from file '/luadb/helper.lua':" in msg
    assert "helper.lua:1: unexpected symbol near '='" in msg


def test_missing_main_nags_then_reboots(tmp_path):
    proj = write_project(tmp_path / "p", {"other.lua": "return 1"})
    with Device(proj) as dev:
        dev.run_for("10s")
        texts = [r.text for r in dev.log]
        assert "module 'main' not found" in texts
        assert sum("未找到main.lua" in t for t in texts) >= 8


def test_main_returning_exits_without_error_line(boot):
    dev = boot("""log.info("no", "sys.run")""")
    dev.run_for("20s")
    texts = [r.text for r in c_lines(dev, 1)]
    assert "Lua VM exit!! reboot in 15000ms" in texts
    assert "Luat: " not in texts
    assert dev.boots[0].outcome == "exit"


def test_fskv_and_files_persist_across_reboots(boot):
    dev = boot("""
        fskv.init()
        local n = (fskv.get("n") or 0) + 1
        fskv.set("n", n)
        fskv.set("t", {a = 1, b = "x"})
        local old = io.readFile("/data.txt")
        io.writeFile("/data.txt", "boot" .. n)
        local f = io.open("/sub/log.txt", "a"); f:write("line", n, "\\n"); f:close()
        local t = fskv.get("t")
        log.info("state", n, old, t and t.b, io.exists("/data.txt"), io.fileSize("/data.txt"))
        if n < 3 then sys.timerStart(rtos.reboot, 100) end
        sys.run()
    """)
    dev.run_for("5s")
    lines = dev.lines()
    assert "I/user.state 1 nil x true 5" in lines
    assert "I/user.state 2 boot1 x true 5" in lines
    assert "I/user.state 3 boot2 x true 5" in lines
    assert (dev.fs_root / "sub" / "log.txt").read_text() == "line1\nline2\nline3\n"


def test_filesystem_sandbox_refuses_escape_and_luadb_writes(boot, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host")
    dev = boot(f"""
        log.info("esc", io.open("/../../../../{secret}", "r"))
        log.info("rel", io.readFile("../secret.txt"))
        log.info("luadb", io.open("/luadb/main.lua", "w"))
        log.info("read", #io.readFile("/luadb/main.lua") > 0)
        log.info("gone", io.popen, os.execute, os.exit, dofile, package.loadlib)
        sys.run()
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert any(ln.startswith("I/user.esc nil") for ln in lines)
    assert "I/user.rel nil" in lines
    assert any(ln.startswith("I/user.luadb nil /luadb/main.lua: Read-only") for ln in lines)
    assert "I/user.read true" in lines
    assert "I/user.gone nil nil nil nil nil" in lines


def test_watchdog_resets_a_device_that_stops_feeding(boot):
    dev = boot("""
        fskv.init()
        local n = (fskv.get("n") or 0) + 1
        fskv.set("n", n)
        log.info("boot", n, select(3, pm.lastReson()))
        wdt.init(9000)
        local feeding = sys.timerLoopStart(wdt.feed, 3000)
        if n == 1 then sys.timerStart(sys.timerStop, 30000, feeding) end
        sys.run()
    """)
    dev.run_for("60s")
    assert dev.boots[0].outcome == "watchdog"
    assert "I/user.boot 2 8 0" in dev.lines()
    # feeds at 3.8 s, 6.8 s ... 27.8 s; the stop (armed first) wins the 30.8 s tie; bitten 9 s later
    assert dev.boots[1].started_ms == 27800 + 9000


def test_busy_loop_is_reset_like_a_watchdog(boot):
    dev = boot("""
        fskv.init()
        if not fskv.get("looped") then
          fskv.set("looped", true)
          local x = 0
          while true do x = x + 1 end
        end
        log.info("second", "boot")
        sys.run()
    """, options=DeviceOptions(busy_loop_instructions=2_000_000))
    dev.run_for("2s")
    assert dev.boots[0].outcome == "watchdog"
    assert "I/user.second boot" in dev.lines()
    assert any("without yielding" in r.text for r in dev.log if r.source == "sim")


def test_reboot_loop_detector(boot):
    dev = boot("""
        sys.taskInit(function() sys.wait(100); error("broken config") end)
        sys.run()
    """)
    with pytest.raises(RebootLoopError, match="reboot loop.*broken config"):
        dev.run_until("never printed", within="10m")
    assert len(dev.boots) == 3


def test_run_until_timeout_shows_last_lines(boot):
    dev = boot("""
        log.info("hello", "world")
        sys.run()
    """)
    with pytest.raises(UntilTimeout, match="did not appear within 1m00.000s(.|\\n)*hello world"):
        dev.run_until("nope", within="1m")


def test_heap_cap_raises_not_enough_memory(boot):
    dev = boot("""
        sys.taskInit(function()
          local t = {}
          for i = 1, 1e7 do t[i] = string.rep("x", 64) .. i end
        end)
        sys.run()
    """)
    dev.run_for("2s")
    err = [r for r in dev.log if r.line.startswith("E/user.coroutine.resume")]
    assert err and "not enough memory" in err[0].line
    total = dev.profile.lua_heap
    assert total == 2_097_144


# A chain of small tables: every allocation is tiny and stays reachable from the task's stack,
# so the task dies with only a few bytes under the cap, whatever the boot's own usage is.
_FILL_HEAP = """
    local function fill()
      local head, n = nil, 0
      while true do head = {head}; n = n + 1; FILLED = n end
    end
"""


def test_task_oom_with_no_headroom_left_is_a_task_error(boot):
    dev = boot(_FILL_HEAP + """
        sys.taskInit(fill)
        sys.run()
    """)
    dev.run_for("2s")
    task = [r for r in dev.log if r.line.startswith("E/user.coroutine.resume")]
    assert task and task[0].line.startswith("E/user.coroutine.resume not enough memory")
    assert "main.lua:3: in function <main.lua:1>" in task[0].line  # the task's traceback, kept alive with its memory
    main = [r for r in c_lines(dev, 1) if r.device_ms > task[0].device_ms]
    assert [r.line for r in main] == [
        "main:Luat: ", "main:" + task[0].text, "main:Lua VM exit!! reboot in 15000ms"]
    assert main[0].device_ms - task[0].device_ms == 500  # sys's roll-back timer fired it


def test_heap_lent_for_the_report_is_taken_back(boot):
    dev = boot(_FILL_HEAP + """
        COROUTINE_ERROR_ROLL_BACK = false
        COROUTINE_ERROR_RESTART = false
        sys.taskInit(function()
          local first = coroutine.create(fill)
          coroutine.resume(first)
          local n1 = FILLED
          first = nil
          collectgarbage()
          sys.wait(10)
          sys.taskInit(fill)
          log.info("heap", n1, FILLED, rtos.meminfo())
        end)
        sys.run()
    """)
    dev.run_for("2s")
    line = next(ln for ln in dev.lines() if ln.startswith("I/user.heap "))
    n1, n2, total = (int(x) for x in line.split()[1:4])
    assert n1 > 10_000
    assert abs(n2 - n1) < 100  # the second task meets the same cap, not cap + the loan
    assert total == 2_097_144
    assert any(ln.startswith("E/user.coroutine.resume not enough memory") for ln in dev.lines())


def test_meminfo_reports_the_profile_heap(boot):
    dev = boot("""
        local total, used, maxu = rtos.meminfo()
        log.info("mem", total, used > 0, maxu >= used, rtos.meminfo("sys"))
        sys.run()
    """)
    dev.run_for("1s")
    assert any(ln.startswith("I/user.mem 2097144 true true 233872") for ln in dev.lines())


def test_missing_firmware_function_is_named(boot):
    dev = boot("""
        sys.taskInit(function()
          sys.wait(10)
          log.info("probe", type(rtos.nonexistent))
          rtos.setCpuFreq(240)
        end)
        sys.run()
    """)
    dev.run_for("2s")
    err = [r for r in dev.log if r.line.startswith("E/user.coroutine.resume")][0]
    assert "attempt to call a nil value (field 'setCpuFreq')" in err.line
    sim = [r.text for r in dev.log if r.source == "sim"]
    assert any("rtos.setCpuFreq is not emulated" in t for t in sim)
    assert "I/user.probe nil" in dev.lines()


def test_flat_namespace_and_duplicate_names(tmp_path):
    proj = write_project(tmp_path / "ok", {
        "main.lua": 'local m = require "netdrv_wifi"; log.info("m", m.name); sys.run()',
        "netdrv/netdrv_wifi.lua": 'return {name = "wifi"}',
    })
    with Device(proj) as dev:
        dev.run_for("1s")
        assert "I/user.m wifi" in dev.lines()
    dup = write_project(tmp_path / "dup", {
        "main.lua": "sys.run()", "a/util.lua": "return 1", "b/util.lua": "return 2"})
    with pytest.raises(ScriptError, match="duplicate file name 'util.lua'.*a/util.lua.*b/util.lua"):
        Device(dup)


def test_require_is_case_sensitive_and_names_the_module(boot):
    dev = boot("""
        local ok, err = pcall(require, "netdrv_4G")
        log.info("req", ok, err)
        log.info("len", pcall(require, string.rep("x", 49)))
        sys.run()
    """, {"netdrv_4g.lua": "return {}"})
    dev.run_for("1s")
    lines = dev.lines()
    assert any("module 'netdrv_4G' not found" in ln for ln in lines)
    assert any("len 49 is invalid" in ln for ln in lines)


def test_lib_dir_takes_precedence_over_builtin_sys(tmp_path):
    lib = write_project(tmp_path / "lib", {
        "sys.lua": """
            -- a user's own sys: proves the firmware reaches sys only through the seam
            local real = {}
            function real.run()
              log.info("custom", "sys.run")
              while true do
                local msg, id = rtos.receive(-1)
                if msg == rtos.MSG_TIMER and real.cb[id] then real.cb[id]() end
              end
            end
            real.cb = {}
            function real.after(ms, f) real.cb[42] = f; rtos.timer_start(42, ms) end
            return real
        """,
        "extra.lua": "return 'from lib'",
    })
    proj = write_project(tmp_path / "p", {
        "main.lua": """
            log.info("lib", require("extra"))
            sys.after(500, function() log.info("fired", "custom timer") end)
            sys.run()
        """,
    })
    with Device(proj, lib_dirs=[lib]) as dev:
        dev.run_for("2s")
        lines = dev.lines()
    assert "I/user.lib from lib" in lines
    assert "I/user.custom sys.run" in lines
    assert "I/user.fired custom timer" in lines


def test_project_file_beats_lib_dir(tmp_path):
    lib = write_project(tmp_path / "lib", {"util.lua": "return 'lib'"})
    proj = write_project(tmp_path / "p", {
        "main.lua": 'log.info("u", require "util"); sys.run()', "util.lua": "return 'project'"})
    with Device(proj, lib_dirs=[lib]) as dev:
        dev.run_for("1s")
        assert "I/user.u project" in dev.lines()


def test_device_bytecode_is_refused_with_advice(tmp_path):
    import struct
    header = b"\x1bLua\x53\x00\x19\x93\r\n\x1a\n" + bytes([4, 4, 4, 8, 8]) + struct.pack("<q", 0x5678)
    proj = write_project(tmp_path / "p", {"main.lua": 'require "mod"; sys.run()'})
    (proj / "mod.luac").write_bytes(header + b"\0" * 16)
    with Device(proj) as dev:
        dev.run_for("1s")
        text = "\n".join(r.text for r in dev.log)
    assert "size_t=4" in text and "Build the package from sources" in text


def test_os_time_runs_on_the_virtual_clock(boot):
    dev = boot("""
        local t0 = os.time()
        sys.taskInit(function()
          sys.wait(3600 * 1000)
          log.info("dt", os.time() - t0, os.date("%Y", 0) ~= nil, os.clock() > 3600)
        end)
        sys.run()
    """)
    dev.run_for("2h")
    assert "I/user.dt 3600 true true" in dev.lines()


def test_power_cycle_keeps_flash_and_boots_as_power_on(boot):
    dev = boot("""
        fskv.init()
        local n = (fskv.get("n") or 0) + 1
        fskv.set("n", n)
        log.info("boot", n, select(3, pm.lastReson()))
        sys.timerLoopStart(function() log.info("tick") end, 1000)
        sys.run()
    """)
    dev.run_for("2500ms")
    dev.power_cycle()
    dev.run_for("2s")
    assert "I/user.boot 1 0 0" in dev.lines()
    assert "I/user.boot 2 0 0" in dev.lines()
    assert [b.outcome for b in dev.boots] == ["power-off", "running"]
    assert dev.boots[1].reason == "power-on"
    assert dev.lines(boot=2)[0] == "pm:reset native reason: 0"


def test_boots_from_a_luadb_image_or_package_file(tmp_path):
    from luatos_common.bkcrc import frame
    from luatos_common.luadb import build_luadb
    from luatos_common.packages import build_air8101_ota

    files = {"main.lua": b'log.info("from", "image"); sys.run()'}
    for name, data in [("plain.bin", build_luadb(files)), ("framed.bin", frame(build_luadb(files))),
                       ("ota.bin", build_air8101_ota(files))]:
        (tmp_path / name).write_bytes(data)
        with Device(tmp_path / name) as dev:
            dev.run_for("1s")
            assert "I/user.from image" in dev.lines(), name
    (tmp_path / "junk.bin").write_bytes(b"\x00junk" * 10)
    with pytest.raises(ScriptError, match="junk.bin"):
        Device(tmp_path / "junk.bin")
