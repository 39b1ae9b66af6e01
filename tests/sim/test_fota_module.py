"""The fota firmware module: return mappings of run/file/isDone/finish, and its log lines."""

from __future__ import annotations

from luatos_common.packages import build_air8101_ota


def pkg_bytes() -> bytes:
    return build_air8101_ota({"main.lua": b'log.info("app", "new")\nsys.run()\n',
                              "blob.bin": bytes(range(256)) * 40})


def user(dev, tag):
    return [ln for ln in dev.lines() if ln.startswith(f"I/user.{tag} ")]


def test_run_mappings_with_strings_zbuff_offsets_and_errors(boot):
    dev = boot("""
        sys.taskInit(function()
          log.info("before", fota.isDone())
          log.info("norun", fota.run("abc"))
          log.info("init", fota.init(), fota.wait())
          local data = io.readFile("/p.bin")
          -- first 1024 bytes as a zbuff with an offset/length
          local z = zbuff.create(2048)
          z:write(string.rep("Z", 10) .. data:sub(1, 1024))
          log.info("zb", fota.run(z, 10, 1024))
          log.info("busy", fota.isDone())
          log.info("mid", fota.run(data:sub(1025, #data - 1)))
          log.info("last", fota.run(data:sub(#data)))
          log.info("done", fota.isDone(), fota.done())
          log.info("extra", fota.run("x"))
          log.info("fin", fota["end"](true))
          log.info("again", fota.init(), fota.run("garbage"))
          log.info("bad", fota.isDone(), fota.finish(true), fota.finish(false))
        end)
        sys.run()
    """)
    (dev.fs_root / "p.bin").write_bytes(pkg_bytes())
    dev.run_for("2s")
    assert user(dev, "before") == ["I/user.before false true"]
    assert user(dev, "norun") == ["I/user.norun false true -2"]
    assert user(dev, "init") == ["I/user.init true false"]
    assert user(dev, "zb") == ["I/user.zb true false 1"]
    assert user(dev, "busy") == ["I/user.busy true false"]
    assert user(dev, "mid") == ["I/user.mid true false 1"]
    assert user(dev, "last") == ["I/user.last true true 0"]
    assert user(dev, "done") == ["I/user.done true true true"]  # first call truncated to 1 value
    assert user(dev, "extra") == ["I/user.extra false true -1"]
    assert user(dev, "fin") == ["I/user.fin false"]  # refused by the extra byte
    assert user(dev, "again") == ["I/user.again true false true -1"]
    assert user(dev, "bad") == ["I/user.bad false false true"]


def test_file_writes_in_4k_chunks_and_logs_like_the_device(boot):
    dev = boot("""
        sys.taskInit(function()
          log.info("missing", fota.file("/nope.bin"))
          fota.init()
          log.info("file", fota.file("/p.bin"))
          log.info("state", fota.isDone())
          log.info("fin", fota.finish(true))
          rtos.reboot()
        end)
        sys.run()
    """)
    data = pkg_bytes()
    (dev.fs_root / "p.bin").write_bytes(data)
    dev.run_until("I/user.app new", within="10s")
    assert user(dev, "missing") == ["I/user.missing false false 0"]
    assert user(dev, "file") == ["I/user.file true true 0"]
    assert user(dev, "fin") == ["I/user.fin true"]
    fota_c = [r.text for r in dev.log if r.source == "c" and r.tag == "fota"]
    assert fota_c[0] == f"升级包类型: type=1, expected_len={len(data)}"
    assert fota_c[-3:] == ["fota file write done, call fota.done()",
                           f"fota done, write {len(data)} bytes",
                           "fota done success, call fota.end()"]
    writes = [t for t in dev.trace if t.kind == "fota_progress"]
    assert 1 <= len(writes) <= 3  # a few progress events, not one per chunk


def test_file_with_a_truncated_package_reports_done_fail(boot):
    dev = boot("""
        sys.taskInit(function()
          fota.init()
          log.info("file", fota.file("/p.bin"))
        end)
        sys.run()
    """)
    (dev.fs_root / "p.bin").write_bytes(pkg_bytes()[:-100])
    dev.run_for("1s")
    assert user(dev, "file") == ["I/user.file true false 1"]
    assert any(r.text == "fota done fail 1" for r in dev.log if r.source == "c")


def test_fota_exists_on_every_model_and_wait_is_ready_off_air8101(boot):
    dev = boot("""
        log.info("wait", fota.wait(), fota.init(), fota.wait(), mobile ~= nil)
        sys.run()
    """, model="Air780E")
    dev.run_for("1s")
    assert user(dev, "wait") == ["I/user.wait false true true true"]
