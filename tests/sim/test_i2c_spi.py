"""i2c and spi: slaves on a bench bus, NACK with nothing attached, soft buses, device objects."""

from __future__ import annotations

from luatos_sim.platform.i2c import CallbackDevice, RegisterDevice
from luatos_sim.platform.sensors import AHT10, EEPROM24C02, SHT20, SHT30, crc8
from luatos_sim.platform.spi import W25Q, SpiChip


def user(dev, tag):
    return [ln.split(" ", 1)[1] if " " in ln else "" for ln in dev.lines()
            if ln.startswith(f"I/user.{tag} ") or ln == f"I/user.{tag}"]


def notes(dev):
    return [r.text for r in dev.log if r.tag == "luatos-sim"]


def test_sht20_demo_reads_the_bench_temperature_and_early_read_is_nacked(boot):
    # The vendor Air8101 I2C demo's sequence: 0xF3 (no hold), wait, read 2 bytes.
    dev = boot("""
        sys.taskInit(function()
            log.info("setup", i2c.setup(0))
            i2c.send(0, 0x40, string.char(0xF3))
            log.info("early", #i2c.recv(0, 0x40, 2))
            for _, cmd in ipairs({0xF3, 0xF5}) do
                i2c.send(0, 0x40, string.char(cmd))
                sys.wait(100)
                local raw = string.unpack(">H", i2c.recv(0, 0x40, 2))
                log.info("raw", cmd, raw)
            end
        end)
        sys.run()
    """)
    sensor = dev.i2c(0).attach(0x40, SHT20(temperature=21.5, humidity=63.0))
    dev.run_for("1s")
    assert user(dev, "setup") == ["1"]
    assert user(dev, "early") == ["0"]  # conversion not done: NACK -> empty string
    (t_line, h_line) = user(dev, "raw")
    t_raw, h_raw = int(t_line.split()[1]), int(h_line.split()[1])
    assert abs(-46.85 + 175.72 * t_raw / 65536 - 21.5) < 0.05
    assert abs(-6 + 125 * h_raw / 65536 - 63.0) < 0.05
    assert h_raw & 0x2 and not t_raw & 0x2  # status bits as on the chip
    sensor.temperature = -10.0
    assert sensor._raw(False)[2] == crc8(sensor._raw(False)[:2], init=0)


def test_nothing_attached_is_a_nack_with_one_note(boot):
    dev = boot("""
        sys.taskInit(function()
            i2c.setup(0)
            log.info("r", i2c.send(0, 0x44, 0x2c), #i2c.recv(0, 0x44, 6),
                     #i2c.readReg(0, 0x44, 0, 2), i2c.writeReg(0, 0x44, 1, "ab"),
                     i2c.transfer(0, 0x44, "\\1", nil, 2), i2c.readSHT30(0))
            log.info("unopened", i2c.send(1, 0x44, 1), #i2c.recv(1, 0x44, 2))
            log.info("badid", i2c.setup(7), i2c.exist(7), i2c.exist(0))
        end)
        sys.run()
    """)
    dev.run_for("1s")
    assert user(dev, "r") == ["false 0 0 false false false"]
    assert user(dev, "unopened") == ["false 0"]
    assert user(dev, "badid") == ["0 false true"]
    n = notes(dev)
    assert sum("nothing answers at address 0x44" in t for t in n) == 1
    assert any("i2c1 was not opened with i2c.setup" in t for t in n)
    assert "i2c:i2c receive result -1" in dev.lines()


def test_register_device_write_read_and_transfer_into_zbuff(boot):
    dev = boot("""
        sys.taskInit(function()
            i2c.setup(1, i2c.FAST)
            log.info("id", i2c.readReg(1, 0x1D, 0x0F, 1):toHex())
            log.info("w", i2c.writeReg(1, 0x1D, 0x20, string.char(0x57, 0x08)))
            log.info("rb", i2c.readReg(1, 0x1D, 0x20, 2):toHex())
            local ok, data = i2c.transfer(1, 0x1D, {0x0F}, nil, 1)
            log.info("t", ok, data:toHex())
            local z = zbuff.create(8)
            local ok2, nothing = i2c.transfer(1, 0x1D, 0x20, z, 2)
            log.info("z", ok2, nothing, z:query():toHex())
            log.info("consts", i2c.SLOW, i2c.FAST, i2c.PLUS, i2c.HSMODE)
        end)
        sys.run()
    """)
    regs = dev.i2c(1).attach(0x1D, RegisterDevice({0x0F: 0x33}))
    dev.run_for("1s")
    assert user(dev, "id") == ["33 2"]
    assert user(dev, "w") == ["true"]
    assert regs[0x20] == 0x57 and regs[0x21] == 0x08
    assert user(dev, "rb") == ["5708 4"]
    assert user(dev, "t") == ["true 33 2"]
    assert user(dev, "z") == ["true nil 5708 4"]
    assert user(dev, "consts") == ["0 1 2 3"]
    assert dev.i2c(1).writes(0x1D)[0] == b"\x0f"


def test_soft_i2c_object_aht10_busy_then_data(boot):
    dev = boot("""
        sys.taskInit(function()
            local s = i2c.createSoft(20, 21)
            log.info("obj", (tostring(s):gsub("0x%x+", "ADDR")))
            i2c.send(s, 0x38, {0xE1, 0x08, 0x00})
            i2c.send(s, 0x38, {0xAC, 0x33, 0x00})
            log.info("busy", i2c.recv(s, 0x38, 1):byte() & 0x80)
            sys.wait(80)
            local d = i2c.recv(s, 0x38, 6)
            local h = ((d:byte(2) << 12) | (d:byte(3) << 4) | (d:byte(4) >> 4)) * 100 / 1048576
            local t = (((d:byte(4) & 0xF) << 16) | (d:byte(5) << 8) | d:byte(6)) * 200 / 1048576 - 50
            log.info("aht", d:byte(1) & 0x80, string.format("%.1f %.1f", t, h))
            log.info("hw", #i2c.recv(0, 0x38, 1))
        end)
        sys.run()
    """)
    dev.i2c.soft(20, 21).attach(0x38, AHT10(temperature=30.2, humidity=45.5))
    dev.run_for("1s")
    assert user(dev, "obj") == ["EI2C*: ADDR"]
    assert user(dev, "busy") == ["128"]
    assert user(dev, "aht") == ["0 30.2 45.5"]
    assert user(dev, "hw") == ["0"]  # the sensor is on the soft bus, not on hardware bus 0


def test_sht30_readsht30_and_eeprom_page_wrap_and_write_cycle(boot):
    dev = boot("""
        sys.taskInit(function()
            i2c.setup(0)
            log.info("sht30", i2c.readSHT30(0))
            i2c.send(0, 0x50, string.char(0x01) .. "1234abcd")   -- crosses the 8-byte page
            log.info("busy", #i2c.readReg(0, 0x50, 0x01, 8))
            sys.wait(10)
            log.info("read", i2c.readReg(0, 0x50, 0x00, 8))
        end)
        sys.run()
    """)
    dev.i2c(0).attach(0x44, SHT30(temperature=24.5, humidity=40.0))
    dev.i2c(0).attach(0x50, EEPROM24C02())
    dev.run_for("1s")
    assert user(dev, "sht30") == ["true 400 245"]
    assert user(dev, "busy") == ["0"]
    assert user(dev, "read") == ["d1234abc"]  # the 8th byte wrapped to the page start


def test_callback_device_sees_writes_and_answers_reads(boot):
    seen = []
    dev = boot("""
        sys.taskInit(function()
            i2c.setup(0)
            log.info("r", i2c.send(0, 0x2A, "ping"), i2c.recv(0, 0x2A, 4), i2c.send(0, 0x2A, "no"))
        end)
        sys.run()
    """)
    dev.i2c(0).attach(0x2A, CallbackDevice(on_write=lambda d: seen.append(d) or d != b"no",
                                           on_read=lambda n: b"pong"[:n]))
    dev.run_for("1s")
    assert seen == [b"ping", b"no"]
    assert user(dev, "r") == ["true pong false"]
    assert not notes(dev)  # the slave itself refused: no "nothing answers" note


def test_spi_flash_demo_with_gpio_chip_select(boot):
    # The vendor Air8101 SPI demo's shape: CS on a GPIO, spi.send then spi.recv.
    dev = boot("""
        local cs = gpio.setup(3, 1)
        local function xfer(data, n)
            cs(0)
            if data then spi.send(1, data) end
            local r = n and spi.recv(1, n) or ""
            cs(1)
            return r
        end
        sys.taskInit(function()
            log.info("open", spi.setup(1, nil, 0, 0, 8, 1000000))
            log.info("id", xfer(string.char(0x9f), 3):toHex())
            xfer(string.char(0x02, 0, 0, 1) .. "lost")          -- no write enable: ignored
            xfer(string.char(0x06))
            xfer(string.char(0x02, 0, 0, 1) .. "test data 123456")
            sys.wait(10)
            log.info("read", xfer(string.char(0x03, 0, 0, 1), 16))
            log.info("idle", spi.transfer(1, "ab", nil, 2):toHex())
            log.info("close", spi.close(1), spi.send(1, "x"), spi.recv(1, 2))
            log.info("bad", spi.setup(9))
        end)
        sys.run()
    """)
    flash = dev.spi(1).attach(3, W25Q(jedec_id=0xEF4017))
    dev.run_for("1s")
    assert user(dev, "open") == ["0"]
    assert user(dev, "id") == ["EF4017 6"]
    assert user(dev, "read") == ["test data 123456"]
    assert bytes(flash.memory[1:17]) == b"test data 123456"
    assert user(dev, "idle") == ["FFFF 4"]
    assert user(dev, "close") == ["0 -1 nil"]
    assert user(dev, "bad") == ["-1"]
    assert any("spi1: no chip is selected" in t for t in notes(dev))


def test_spi_device_objects_drive_their_own_chip_select(boot):
    dev = boot("""
        sys.taskInit(function()
            local a = spi.deviceSetup(0, 7, 0, 0, 8, 10000000)
            local b = spi.deviceSetup(0, 8)
            log.info("obj", (tostring(a):gsub("0x%x+", "ADDR")))
            log.info("a", a:transfer(string.char(0x9f), nil, 3):toHex())
            log.info("b", spi.deviceTransfer(b, {0x9f}, nil, 3):toHex())
            log.info("send", a:send("abc"), spi.deviceSend(b, "xy"))
            log.info("recv", a:recv(2):toHex(), a:transfer("q", nil, 0) == "")
            local z = zbuff.create(4)
            log.info("zrecv", spi.recv(0, 2, z), spi.setup(0), spi.recv(0, 2, z), z:used())
            log.info("close", a:close(), a:recv(1))
        end)
        sys.run()
    """)
    dev.spi(0).attach(7, W25Q(jedec_id=0xEF4017))
    log = []

    class Echo(SpiChip):
        def exchange(self, tx, now_ms):
            log.append(tx)
            return bytes(reversed(tx))

    dev.spi(0).attach(8, Echo())
    dev.run_for("1s")
    assert user(dev, "obj") == ["SPI*: ADDR"]
    assert user(dev, "a") == ["EF4017 6"]
    assert user(dev, "b") == ["FFFFFF 6"]  # half duplex: the reply to the dummy bytes
    assert user(dev, "send") == ["3 2"]
    assert user(dev, "recv") == ["FFFF true"]
    assert user(dev, "zrecv") == ["nil 0 2 2"]
    assert user(dev, "close") == ["true nil"]
    assert log[:2] == [b"\x9f", b"\xff\xff\xff"]
    assert b"xy" in log


def test_wrong_argument_types_fail_with_the_firmwares_wording(boot):
    dev = boot("""
        for _, f in ipairs({
            function() return i2c.setup("a") end,
            function() return i2c.send("x", 1, 2) end,
            function() return i2c.writeReg(0, 0x10, 1, {}) end,
            function() return spi.send(0, {1, 2}) end,
            function() return adc.open("x") end,
            function() return pwm.open(1) end,
        }) do
            local ok, err = pcall(f)
            log.info("err", ok, err)
        end
        sys.run()
    """)
    dev.run_for("1s")
    assert user(dev, "err") == [
        "false bad argument #1 to 'setup' (number expected, got string)",
        "false bad argument #1 to 'send' (number expected, got string)",
        "false bad argument #4 to 'writeReg' (string expected, got table)",
        "false bad argument #2 to 'send' (string expected, got table)",
        "false bad argument #1 to 'open' (number expected, got string)",
        "false bad argument #2 to 'open' (number expected, got no value)",
    ]
    assert not any("Traceback" in r.text for r in dev.log)
