"""bluetooth/ble: GATT server with a phone on the bench, the central role against a bench
peripheral, and bad input (unknown handle, missing permission, no subscription)."""

from __future__ import annotations

from luatos_sim.platform.ble import NOTIFY, READ, WRITE

SERVER = """
local function cb(dev, ev, p)
    if ev == ble.EVENT_CONN then log.info("conn", p.addr:toHex(), p.addr_type)
    elseif ev == ble.EVENT_DISCONN then log.info("disconn", p.reason); dev:adv_start()
    elseif ev == ble.EVENT_WRITE then
        log.info("write", p.uuid_service:toHex(), p.uuid_characteristic:toHex(), p.data, p.handle)
        log.info("notify", dev:write_notify({uuid_service = string.fromHex("FA00"),
            uuid_characteristic = string.fromHex("EA01")}, "echo " .. p.data))
    elseif ev == ble.EVENT_READ then log.info("read", p.uuid_characteristic:toHex())
    elseif ev == ble.EVENT_ADV_START then log.info("advertising")
    end
end
sys.taskInit(function()
    local bt = bluetooth.init()
    local dev = bt:ble(cb)
    log.info("types", type(bt), type(dev), (tostring(dev):gsub("0x%x+", "ADDR")))
    log.info("gatt", dev:gatt_create({string.fromHex("FA00"),
        {string.fromHex("EA01"), ble.NOTIFY | ble.READ | ble.WRITE},
        {string.fromHex("EA02"), ble.WRITE | ble.WRITE_CMD},
        {string.fromHex("EA03"), ble.READ, "v1"}}))
    log.info("adv", dev:adv_create({addr_mode = ble.PUBLIC, adv_data = {
        {ble.FLAGS, string.char(0x06)}, {ble.COMPLETE_LOCAL_NAME, "LuatOS"}}}), dev:adv_start())
    log.info("local", dev:read_value({uuid_service = string.fromHex("FA00"),
        uuid_characteristic = string.fromHex("EA03")}))
    sys.wait(2000)
    dev:write_value({uuid_service = string.fromHex("FA00"),
        uuid_characteristic = string.fromHex("EA03")}, "v2")
end)
sys.run()
"""


def user(dev, tag):
    return [ln.split(" ", 1)[1] if " " in ln else "" for ln in dev.lines()
            if ln.startswith(f"I/user.{tag} ") or ln == f"I/user.{tag}"]


def notes(dev):
    return [r.text for r in dev.log if r.tag == "luatos-sim"]


def test_gatt_server_with_a_phone(boot):
    dev = boot(SERVER)
    phone = dev.ble.peer("phone", addr="A1B2C3D4E5F6")
    dev.run_for("1s")
    (adv,) = phone.scan()
    assert adv.name == "LuatOS" and adv.data == b"\x02\x01\x06\x07\x09LuatOS"
    ops = [phone.connect(), phone.write("FA00", "EA02", b"before sub", at="10ms"),
           phone.subscribe("FA00", "EA01", at="20ms"), phone.write("FA00", "EA01", b"hi",
                                                                   at="30ms"),
           phone.read("FA00", "EA03", at="40ms")]
    dev.run_for("100ms")
    assert all(op.ok for op in ops), ops
    assert phone.scan() == []  # connected: no longer advertising
    assert user(dev, "types") == ["userdata userdata BLE*: ADDR"]
    assert user(dev, "gatt") == ["true"]
    assert user(dev, "adv") == ["true true"]
    assert user(dev, "local") == ["v1"]
    assert user(dev, "conn") == ["A1B2C3D4E5F6 0"]
    writes = user(dev, "write")
    assert writes[0].startswith("FA00 EA02 before sub") and writes[1].startswith("FA00 EA01 hi")
    assert user(dev, "notify") == ["true", "true"]
    assert [n[3] for n in phone.notifications] == [b"echo hi"]  # not before the subscription
    assert any("has not enabled notifications" in t for t in notes(dev))
    assert ops[4].value == b"v1" and user(dev, "read") == ["EA03 4"]
    dev.run_for("2s")
    later = phone.read("FA00", "EA03")
    bye = phone.disconnect(at="10ms")
    dev.run_for("100ms")
    assert later.value == b"v2" and bye.ok
    assert user(dev, "disconn") == ["19"]
    assert phone.scan(), "advertising again after the disconnect"
    stranger = dev.ble.peer("stranger")
    other = stranger.connect()
    dev.run_for("10ms")
    assert other.ok  # the device advertises again, so a second phone can connect
    third = dev.ble.peer("third").connect()
    dev.run_for("10ms")
    assert not third.ok and "not advertising" in third.error


def test_bad_writes_are_att_errors_with_a_note(boot):
    dev = boot(SERVER)
    phone = dev.ble.peer("phone")
    ops = [phone.connect(at="1s"), phone.write("FA00", "EA09", b"x", at="1.01s"),
           phone.write("FA00", "EA03", b"x", at="1.02s"),
           phone.write("FA00", "EA02", b"y" * 300, at="1.03s"),
           phone.read("FA00", "EA02", at="1.04s"),
           phone.write("FA00", "EA02", b"ok", at="1.05s", response=False)]
    dev.run_for("1.2s")
    assert [op.att_error for op in ops] == [None, 0x0A, 0x03, 0x0D, 0x02, None]
    assert ops[-1].ok
    assert [w.split()[2] for w in user(dev, "write")] == ["ok"]  # only the good one reached Lua
    n = notes(dev)
    assert any("FA00/EA09, which the device's GATT database does not have" in t for t in n)
    assert any("EA03, which has no WRITE property" in t for t in n)
    assert not any("Traceback" in r.text for r in dev.log)
    not_connected = dev.ble.peer("other").write("FA00", "EA02", b"z")
    dev.run_for("10ms")
    assert not_connected.error == "not connected"


def test_central_scans_connects_reads_and_gets_notifications(boot):
    dev = boot("""
        local target
        local function cb(d, ev, p)
            if ev == ble.EVENT_SCAN_REPORT then
                if not target and p.data:find("Sensor") then
                    target = p
                    log.info("found", p.adv_addr:toHex(), p.rssi)
                    d:scan_stop()
                    d:connect(p.adv_addr, p.addr_type)
                end
            elseif ev == ble.EVENT_CONN then log.info("conn", p.addr:toHex())
            elseif ev == ble.EVENT_GATT_DONE then
                log.info("gatt", #p, p[1][1]:toHex(), p[1][2][1]:toHex(), p[1][2][2])
                d:notify_enable({uuid_service = string.fromHex("181A"),
                                 uuid_characteristic = string.fromHex("2A6E")}, true)
                d:read_value({uuid_service = string.fromHex("181A"),
                              uuid_characteristic = string.fromHex("2A6E")})
                d:write_value({uuid_service = string.fromHex("181A"),
                               uuid_characteristic = string.fromHex("2A6F")}, "cfg")
            elseif ev == ble.EVENT_READ_VALUE then
                log.info("value", p.uuid_characteristic:toHex(), p.data:toHex())
            end
        end
        sys.taskInit(function()
            local d = bluetooth.init():ble(cb)
            log.info("scan", d:scan_create({}), d:scan_start())
        end)
        sys.run()
    """)
    dev.ble.peer("noise", addr="112233445566").serve({"FFF0": {"FFF1": (READ, b"")}},
                                                     adv_data=b"\x02\x01\x06")
    sensor = dev.ble.peer("Sensor", addr="C8478C4E027D", rssi=-61).serve(
        {"181A": {"2A6E": (READ | NOTIFY, b"\x10\x09"), "2A6F": (WRITE, b"")}})
    dev.run_for("2s")
    assert user(dev, "scan") == ["true true"]
    assert user(dev, "found") == ["C8478C4E027D -61"]
    assert user(dev, "conn") == ["C8478C4E027D 12"]
    assert user(dev, "gatt") == [f"1 181A 2A6E {READ | NOTIFY}"]
    assert user(dev, "value")[0] == "2A6E 1009 4"
    assert [r[3] for r in sensor.received] == [b"cfg"]
    note = sensor.notify("181A", "2A6E", b"\x11\x09")
    dev.run_for("100ms")
    assert note.ok and user(dev, "value")[-1] == "2A6E 1109 4"


def test_scanning_with_nothing_around_reports_nothing(boot):
    dev = boot("""
        local n = 0
        sys.taskInit(function()
            local d = bluetooth.init():ble(function(_, ev) if ev == ble.EVENT_SCAN_REPORT then
                n = n + 1 end end)
            d:scan_start()
            sys.wait(3000)
            log.info("reports", n)
        end)
        sys.run()
    """)
    dev.run_for("5s")
    assert user(dev, "reports") == ["0"]
    assert any("no peer on the bench advertises" in t for t in notes(dev))


def test_air780e_has_no_bluetooth(boot):
    dev = boot('log.info("bt", bluetooth, ble)\nsys.run()', model="Air780E")
    dev.run_for("1s")
    assert user(dev, "bt") == ["nil nil"]
