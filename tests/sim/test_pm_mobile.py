"""mobile: present on Cat.1 profiles only; flymode returns the previous state."""

from __future__ import annotations


def test_mobile_on_air780e(boot):
    dev = boot("""
        log.info("imei", mobile.imei(), mobile.status())
        log.info("fly", mobile.flymode(0, true), mobile.status(), mobile.flymode(0, false),
                 mobile.flymode(0), mobile.status())
        sys.run()
    """, model="Air780E")
    dev.run_for("1s")
    assert "I/user.imei 864536071234561 1" in dev.lines()
    assert "I/user.fly false 0 true false 1" in dev.lines()
    fly = [t.detail for t in dev.trace if t.kind == "flymode"]
    assert fly == [{"on": True, "previous": False}, {"on": False, "previous": True}]


def test_mobile_is_nil_on_air8101(boot):
    dev = boot('log.info("m", mobile, type(gpio), type(fota), pm.dtimerStart ~= nil)\nsys.run()')
    dev.run_for("1s")
    assert "I/user.m nil table table true" in dev.lines()
