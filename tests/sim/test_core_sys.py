"""sys stand-in semantics, each against the contract (docs/behaviour.md §3)."""

from __future__ import annotations

import re


def user_lines(dev, tag=None):
    out = [line for line in dev.lines() if re.match(r"^[DIWE]/user\.", line)]
    if tag:
        out = [line for line in out if line.split(" ", 1)[0].endswith("." + tag)]
    return out


def test_task_init_runs_immediately_until_first_wait(boot):
    dev = boot("""
        log.info("order", "before")
        sys.taskInit(function(a, b)
          log.info("order", "task", a, b)
          sys.wait(10)
          log.info("order", "after wait")
        end, "x", 2)
        log.info("order", "after taskInit")
        sys.run()
    """)
    dev.run_for("1s")
    assert user_lines(dev, "order") == [
        "I/user.order before", "I/user.order task x 2", "I/user.order after taskInit",
        "I/user.order after wait"]


def test_wait_advances_virtual_time_exactly(boot):
    dev = boot("""
        sys.taskInit(function()
          local t0 = mcu.ticks()
          sys.wait(250)
          log.info("dt", mcu.ticks() - t0)
          sys.wait(4 * 3600 * 1000)
          log.info("dt", mcu.ticks() - t0)
        end)
        sys.run()
    """)
    dev.run_for("5h")
    assert user_lines(dev, "dt") == ["I/user.dt 250", "I/user.dt 14400250"]


def test_wait_zero_logs_timer_start_error_and_does_not_yield(boot):
    dev = boot("""
        sys.taskInit(function()
          sys.wait(0)
          log.info("r", "continued")
          log.info("r", sys.waitUntil("NEVER", 0))
        end)
        sys.run()
    """)
    dev.run_for("1s")
    lines = dev.lines()
    assert "D/user.rtos.timer_start error" in lines
    assert "I/user.r continued" in lines
    assert "I/user.r false" in lines


def test_wait_non_integral_ms_raises(boot):
    dev = boot("""
        sys.taskInit(function()
          local ok, err = pcall(sys.wait, 1.5)
          log.info("r", ok, err)
        end)
        sys.run()
    """)
    dev.run_for("1s")
    (line,) = user_lines(dev, "r")
    assert line.startswith("I/user.r false") and "integer representation" in line


def test_wait_until_returns_true_and_args_or_false(boot):
    dev = boot("""
        sys.taskInit(function()
          log.info("a", sys.waitUntil("GO", 1000))
          log.info("a", sys.waitUntil("GO", 1000))
          log.info("a", sys.waitUntilExt("GO", 1000))
        end)
        sys.timerStart(sys.publish, 500, "GO", 1, "two")
        sys.timerStart(sys.publish, 2000, "GO", 3)
        sys.run()
    """)
    dev.run_for("5s")
    assert user_lines(dev, "a") == ["I/user.a true 1 two", "I/user.a false", "I/user.a GO 3"]


def test_publish_is_never_synchronous_and_fifo(boot):
    dev = boot("""
        local got = {}
        sys.subscribe("M", function(x) got[#got + 1] = x end)
        sys.publish("M", 1)
        sys.publish("M", 2)
        log.info("sync", #got)
        sys.timerStart(function() log.info("later", table.concat(got, ",")) end, 10)
        sys.run()
    """)
    dev.run_for("1s")
    assert "I/user.sync 0" in dev.lines()
    assert "I/user.later 1,2" in dev.lines()


def test_unsubscribe_and_table_of_ids(boot):
    dev = boot("""
        local n = 0
        local function cb() n = n + 1 end
        sys.subscribe({"A", "B"}, cb)
        sys.publish("A"); sys.publish("B")
        sys.timerStart(function()
          sys.unsubscribe("A", cb)
          sys.publish("A"); sys.publish("B")
          sys.timerStart(function() log.info("n", n) end, 10)
        end, 10)
        sys.run()
    """)
    dev.run_for("1s")
    assert "I/user.n 3" in dev.lines()


def test_timer_start_replaces_same_function_and_args(boot):
    dev = boot("""
        local function f(tag) log.info("fired", tag) end
        sys.timerStart(f, 100, "a")
        sys.timerStart(f, 300, "a")          -- replaces the first
        sys.timerStart(f, 200, "b")          -- different args: a second timer
        local g = function() log.info("fired", "g") end
        sys.timerStart(function() log.info("fired", "anon") end, 50)
        sys.timerStart(function() log.info("fired", "anon") end, 60)  -- another function object
        log.info("active", sys.timerIsActive(f, "a"), select("#", sys.timerIsActive(f, "zzz")))
        sys.run()
    """)
    dev.run_for("2s")
    assert user_lines(dev, "fired") == [
        "I/user.fired anon", "I/user.fired anon", "I/user.fired b", "I/user.fired a"]
    assert "I/user.active true 0" in dev.lines()  # not found: no value, not even nil


def test_timer_with_args_does_not_replace_the_argless_timer_of_the_same_function(boot):
    """Mutation audit: ``sys.timerStart(f, ms, "x")`` stopped a running argless ``f`` timer.
    A timer is its function *and* its arguments: no arguments is a different timer."""
    dev = boot("""
        local function f(tag) log.info("fired", tostring(tag)) end
        sys.timerStart(f, 300)               -- argless
        sys.timerStart(f, 100, "x")          -- another timer: the argless one keeps running
        sys.timerStart(f, 200)               -- the argless one again: replaces it (now 200 ms)
        log.info("active", sys.timerIsActive(f), sys.timerIsActive(f, "x"))
        sys.timerStart(f, 400, "y")          -- nor does this one
        sys.run()
    """)
    dev.run_for("3s")
    assert "I/user.active true true" in dev.lines()
    assert [(r.line, r.device_ms) for r in dev.log if r.line.startswith("I/user.fired")] == [
        ("I/user.fired x", 900), ("I/user.fired nil", 1000), ("I/user.fired y", 1200)]


def test_timer_stop_without_args_stops_only_the_argless_timer(boot):
    dev = boot("""
        local function f(tag) log.info("fired", tostring(tag)) end
        sys.timerStart(f, 100, "x")
        sys.timerStart(f, 100)
        sys.timerStop(f)
        sys.run()
    """)
    dev.run_for("3s")
    assert user_lines(dev, "fired") == ["I/user.fired x"]


def test_argless_timers_of_one_function_replace_each_other(boot):
    dev = boot("""
        local function f(tag) log.info("fired", tostring(tag)) end
        sys.timerStart(f, 100, "x")
        sys.timerStart(f, 200)
        sys.timerStart(f, 300)               -- replaces the 200 ms argless one
        sys.run()
    """)
    dev.run_for("3s")
    assert [(r.line, r.device_ms) for r in dev.log if r.line.startswith("I/user.fired")] == [
        ("I/user.fired x", 100 + 800), ("I/user.fired nil", 300 + 800)]


def test_timer_ids_and_loop_and_stop(boot):
    dev = boot("""
        local n = 0
        local id = sys.timerLoopStart(function() n = n + 1 end, 1000)
        log.info("id", id, id == 0x200000)
        sys.timerStart(function() sys.timerStop(id); log.info("n", n) end, 3500)
        sys.timerStart(function() log.info("n2", n) end, 9000)
        sys.run()
    """)
    dev.run_for("10s")
    assert "I/user.id 2097152 true" in dev.lines()
    assert "I/user.n 3" in dev.lines()
    assert "I/user.n2 3" in dev.lines()


def test_timer_stop_by_function_with_no_args_matches_only_argless(boot):
    dev = boot("""
        local function f(x) log.info("f", x) end
        sys.timerStart(f, 100, 1)
        sys.timerStart(f, 100)
        sys.timerStop(f)
        sys.timerStart(function() sys.timerStopAll(f) end, 1)
        sys.timerStart(f, 100, 2)
        sys.run()
    """)
    dev.run_for("1s")
    # The argless timer was stopped by timerStop(f); timerStopAll at 1 ms stopped f(1) and f(2)
    assert user_lines(dev, "f") == []


def test_task_init_ex_send_wait_msg(boot):
    dev = boot("""
        sys.taskInitEx(function()
          local m = sys.waitMsg("worker", "JOB")
          log.info("got", m[1], m[2], m[3])
          local t = sys.waitMsg("worker", "NONE", 500)
          log.info("timeout", tostring(t))
        end, "worker", function(msg) log.info("cb", msg[1]) end)
        log.info("send", sys.sendMsg("worker", "OTHER", 1), sys.sendMsg("nobody", "x"))
        sys.sendMsg("worker", "JOB", "a", "b")
        log.info("waitMsg outside", sys.waitMsg("unknown"))
        sys.run()
    """)
    dev.run_for("2s")
    lines = dev.lines()
    assert "I/user.send true false" in lines
    assert "I/user.cb OTHER" in lines
    assert "I/user.got JOB a b" in lines
    assert "I/user.timeout nil" in lines
    assert "E/user.sys sys.taskInitEx启动的task才能使用waitMsg" in lines
    assert "I/user.waitMsg outside false" in lines


def test_task_init_ex_without_name_logs_and_returns_nil(boot):
    dev = boot("""
        log.info("r", select("#", sys.taskInitEx(function() end, nil)))
        sys.run()
    """)
    dev.run_for("1s")
    assert any(line.startswith("E/user.sys taskName is nil") for line in dev.lines())
    assert "I/user.r 0" in dev.lines()  # returns no value at all


def test_sys_cw_results_lost_when_nobody_waits(boot):
    # http.request-style contract: results published to the topic reach only a waiting task.
    dev = boot("""
        local topic = "\\1" .. string.rep("\\0", 8)
        local obj = sys_cw(topic)
        sys_pub(topic, "early")            -- nobody waits yet: lost
        sys.taskInit(function()
          sys.wait(10)
          sys.timerStart(sys_pub, 10, topic, "late", 2)
          log.info("cw", obj.wait())
          local fail = sys_cw(nil, -4)
          log.info("fail", fail.wait())
        end)
        sys.run()
    """)
    dev.run_for("1s")
    assert user_lines(dev, "cw") == ["I/user.cw late 2"]
    assert "I/user.fail -4" in dev.lines()


def test_globals_set_by_sys(boot):
    dev = boot("""
        log.info("g", SCRIPT_LIB_VER, COROUTINE_ERROR_ROLL_BACK, COROUTINE_ERROR_RESTART,
          sys_pub == sys.publish, sys_send == sys.sendMsg, sys_wait == sys.waitMsg,
          sysplus == sys, sys.restart, sys.on)
        sys.run()
    """)
    dev.run_for("1s")
    assert "I/user.g 2.3.2 true true true true true true nil nil" in dev.lines()


def test_wait_outside_task_is_error_outside_task(boot):
    dev = boot("""
        sys.wait(100)
        sys.run()
    """)
    dev.run_for("2s")
    lines = dev.lines()
    # sys.check_task raises it with its position and a traceback (case B: no 500 ms delay)
    err = next(line for line in lines if "attempt to yield from outside a coroutine" in line)
    assert err.startswith("main:sys.lua:")
    assert "attempt to yield from outside a coroutine\nstack traceback:" in err
    assert "main:Lua VM exit!! reboot in 15000ms" in lines
    assert not any("coroutine.resume" in line for line in lines)


def test_coroutine_running_in_main_chunk_is_main(boot):
    dev = boot("""
        local co, ismain = coroutine.running()
        log.info("main", ismain, coroutine.isyieldable())
        sys.taskInit(function()
          local _, m = coroutine.running()
          log.info("task", m, coroutine.isyieldable())
        end)
        sys.run()
    """)
    dev.run_for("1s")
    assert "I/user.main true false" in dev.lines()
    assert "I/user.task false true" in dev.lines()


def test_rtos_timer_start_return_values(boot):
    dev = boot("""
        log.info("ret", rtos.timer_start(6, 0), rtos.timer_start(7, 10), rtos.timer_start(8, -5))
        rtos.timer_stop(7); rtos.timer_stop("junk"); rtos.timer_stop(99999)
        sys.run()
    """)
    dev.run_for("1s")
    assert "I/user.ret 0 1 0" in dev.lines()


def test_restarting_one_timer_in_a_loop_does_not_grow_memory(boot):
    # The device replaces a running timer id; lazily dropped queue entries must not pile up
    # against the 2 MB Lua heap. Live memory is measured (after a full collection): the count
    # before one depends on where the collector's cycle happens to be (string hash seeds vary).
    dev = boot("""
        for i = 1, 300000 do rtos.timer_start(5, 1000) end
        sys.timerStart(function()
          collectgarbage()
          log.info("alive", collectgarbage("count") < 1024)
        end, 10)
        sys.run()
    """)
    dev.run_for("30s")  # 300,000 calls take virtual time (the Lua cost)
    assert "I/user.alive true" in dev.lines()
