"""lcd: drawing onto the panel, frame buffer and flush, fonts, QR, images, touch, snapshots."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from luatos_sim.screencheck import assert_screen

SCREENS = Path(__file__).parent / "screens"
RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def user(dev, tag):
    return [ln.split(" ", 1)[1] if " " in ln else "" for ln in dev.lines()
            if ln.startswith(f"I/user.{tag} ")]


def notes(dev):
    return [r.text for r in dev.log if r.tag == "luatos-sim"]


def test_primitives_land_on_exact_pixels(boot):
    dev = boot("""
        log.info("init", lcd.init("st7789", {port = 0, pin_dc = 6, pin_rst = 7}), lcd.getSize())
        lcd.clear()                                  -- default background: white
        lcd.drawPoint(5, 6, 0xF800)
        lcd.drawLine(0, 10, 239, 10, 0x07E0)
        lcd.drawRectangle(20, 20, 40, 30, 0x001F)
        lcd.fill(100, 100, 110, 105, 0xF800)
        lcd.drawCircle(120, 200, 10)                 -- default foreground: black
        lcd.setColor(0x0000, 0xFFFF)
        lcd.drawPoint(7, 7)
        log.info("rgb", lcd.rgb565(255, 0, 0, false), lcd.rgb565(255, 0, 0),
                 lcd.rgb565(0xFF0000), lcd.rgb565(0x00FF00, false), lcd.rgb565(0))
        sys.run()
    """)
    dev.run_for("1s")
    assert user(dev, "init") == ["true 240 320"]
    lcd = dev.lcd
    assert lcd.pixel(5, 6) == RED and lcd.pixel(4, 6) == WHITE
    assert all(lcd.pixel(x, 10) == GREEN for x in (0, 120, 239))
    assert lcd.pixel(20, 20) == BLUE and lcd.pixel(40, 30) == BLUE and lcd.pixel(30, 25) == WHITE
    assert lcd.pixel(100, 100) == RED and lcd.pixel(109, 104) == RED
    assert lcd.pixel(110, 105) == WHITE  # fill's end corner is exclusive
    assert lcd.pixel(130, 200) == BLACK and lcd.pixel(120, 200) == WHITE
    assert lcd.pixel(7, 7) == WHITE  # the new foreground
    assert user(dev, "rgb") == ["63488 248 248 2016 0"]
    dev.run_for("10ms")


def test_frame_buffer_reaches_the_panel_only_on_flush(boot):
    dev = boot("""
        lcd.init("nv3037", {port = lcd.RGB, w = 480, h = 272})
        lcd.clear(0x0000)
        lcd.setupBuff(nil, true)
        lcd.autoFlush(false)
        sys.taskInit(function()
            lcd.clear(0xF800)
            sys.wait(100)
            log.info("flush", lcd.flush())
            sys.wait(100)
            lcd.autoFlush(true)
            lcd.fill(0, 0, 10, 10, 0x07E0)
        end)
        sys.run()
    """)
    dev.run_for("850ms")
    assert dev.lcd.pixel(200, 200) == BLACK and dev.lcd.flushes == 0
    dev.run_for("100ms")
    assert dev.lcd.pixel(200, 200) == RED and dev.lcd.flushes == 1
    dev.run_for("200ms")
    assert dev.lcd.pixel(0, 0) == GREEN and dev.lcd.flushes == 2  # auto flush after the draw


def test_bad_input_is_the_devices_behaviour_with_a_note(boot):
    dev = boot("""
        log.info("before", lcd.drawPoint(1, 1, 0), lcd.getSize())
        log.info("unknown", lcd.init("nosuchpanel", {}))
        lcd.init("st7735", {port = 0})
        log.info("outside", lcd.drawPoint(500, 10, 0xF800), lcd.drawLine(-20, 5, 200, 5, 0xF800))
        lcd.setFont("not a font")
        lcd.drawStr(120, 12, "clipped text")
        log.info("img", lcd.showImage(0, 0, "/luadb/missing.jpg"))
        log.info("alive")
        sys.run()
    """)
    dev.run_for("1s")
    assert user(dev, "before") == ["nil"]  # drawPoint gave no value; getSize none either
    assert "lcd:lcd not init" in dev.lines()
    assert user(dev, "unknown") == ["false"]
    assert user(dev, "outside") == ["true true"]
    assert dev.lcd.pixel(0, 5) == RED and dev.lcd.pixel(127, 5) == RED  # clipped, not dropped
    assert user(dev, "img") == ["false"]
    assert "I/user.alive" in dev.lines()
    n = notes(dev)
    assert any("lcd.drawPoint: (500, 10) is outside the 128x160 screen" in t for t in n)
    assert any("lcd.drawLine: (-20, 5) is outside" in t for t in n)
    assert any("lcd.drawStr" in t and "outside" in t for t in n)
    assert any("lcd.setFont" in t for t in n)
    assert not any(r.level == "E" and "Traceback" in r.text for r in dev.log)


def test_text_qrcode_image_and_zbuff_block(boot, tmp_path):
    png = io.BytesIO()
    Image.new("RGB", (8, 4), (0, 0, 255)).save(png, format="PNG")
    dev = boot("""
        lcd.init("st7796", {port = 0})
        lcd.clear(0xFFFF)
        lcd.setFont(lcd.font_opposansm16)
        lcd.drawStr(10, 40, "Hi 42", 0x0000)
        log.info("w", lcd.getStrWidth("Hi 42") > 20, type(lcd.font_opposansm16))
        lcd.drawQrcode(100, 100, "https://example.com/dev/1", 100)
        log.info("img", lcd.showImage(10, 300, "/luadb/logo.png"))
        local z = zbuff.create(2 * 2 * 2)
        z:writeU16(0xF800) z:writeU16(0x07E0) z:writeU16(0x001F) z:writeU16(0xFFFF)
        lcd.draw(200, 400, 201, 401, z)
        sys.run()
    """, files={})
    (dev.image_dir / "logo.png").write_bytes(png.getvalue())
    dev._image_cache = None
    dev.run_for("1s")
    img = dev.lcd.image()
    ink = [(x, y) for x in range(0, 100) for y in range(20, 45) if img.getpixel((x, y)) == BLACK]
    assert ink and min(y for _, y in ink) >= 40 - 16 and max(y for _, y in ink) <= 40
    assert user(dev, "w") == ["true userdata"]
    # the QR code: finder patterns in three corners, a light quiet module beside them
    assert img.getpixel((101, 101)) == BLACK and img.getpixel((198, 101)) == BLACK
    assert img.getpixel((101, 198)) == BLACK
    assert user(dev, "img") == ["true"]
    assert img.getpixel((10, 300)) == BLUE and img.getpixel((17, 303)) == BLUE
    assert img.getpixel((18, 303)) == WHITE
    assert [img.getpixel(p) for p in ((200, 400), (201, 400), (200, 401), (201, 401))] == \
        [RED, GREEN, BLUE, WHITE]


def test_touch_reports_reach_the_callback_and_absent_panel_fails_init(boot):
    src = """
        local t = tp.init("gt911", {port = 0, w = 480, h = 272}, function(dev, data)
            for _, p in ipairs(data) do log.info("tp", p.event, p.x, p.y) end
        end)
        log.info("init", t ~= nil, t and (tostring(t):gsub("0x%x+", "ADDR")))
        log.info("consts", tp.EVENT_DOWN, tp.EVENT_UP, tp.EVENT_MOVE)
        sys.run()
    """
    dev = boot(src)
    dev.touch.attach()
    dev.touch.tap(100, 50, at="1s")
    dev.touch.swipe(10, 10, 50, 30, at="2s", steps=2)
    dev.run_for("3s")
    assert user(dev, "init") == ["true TP*: ADDR"]
    d, u, m = (int(v) for v in user(dev, "consts")[0].split())
    assert user(dev, "tp") == [f"{d} 100 50", f"{u} 100 50", f"{d} 10 10", f"{m} 30 20",
                               f"{m} 50 30", f"{u} 50 30"]
    bare = boot(src)
    bare.run_for("1s")
    assert user(bare, "init") == ["false nil"]
    assert any("no touch controller on the bench" in t for t in notes(bare))


STATUS_SCREEN = """
    lcd.init("nv3037", {port = lcd.RGB, w = 480, h = 272})
    lcd.setupBuff(nil, true)
    lcd.autoFlush(false)
    lcd.clear(0x0000)
    lcd.fill(0, 0, 480, 32, %s)
    lcd.setFont(lcd.font_opposansm16)
    lcd.drawStr(8, 24, "FOTA_KIT_DEMO 001.000.001", 0xFFFF)
    lcd.drawStr(8, 60, "%s", 0x07E0)
    lcd.drawRectangle(240, 40, 470, 262, 0xFFFF)
    lcd.drawCircle(300, 100, 40, 0xFFE0)
    lcd.drawQrcode(360, 160, "https://example.com/dev/C8C2C68CD602", 96)
    lcd.flush()
    sys.run()
"""


def test_status_screen_matches_the_stored_picture(boot, tmp_path):
    # Glyphs come from the FreeType in Pillow's wheel, which may move a few pixels between
    # versions: the reference match allows 1% of the pixels to differ.
    dev = boot(STATUS_SCREEN % ("0x001F", "upgrade ok"))
    dev.run_for("1s")
    assert_screen(dev.lcd, SCREENS / "status.png", max_diff_ratio=0.01)
    other = boot(STATUS_SCREEN % ("0xF800", "upgrade FAILED"))  # the error screen: red bar
    other.run_for("1s")
    copy = tmp_path / "status.png"
    copy.write_bytes((SCREENS / "status.png").read_bytes())
    with pytest.raises(AssertionError, match="pixels differ"):
        assert_screen(other.lcd, copy, max_diff_ratio=0.01)
    assert (tmp_path / "status.actual.png").exists() and (tmp_path / "status.diff.png").exists()
    # a tolerance lets differences through, and a channel tolerance ignores small shifts
    assert_screen(other.lcd, copy, max_diff_ratio=0.2)
    with pytest.raises(AssertionError, match="no stored picture"):
        assert_screen(other.lcd, tmp_path / "missing.png")


def test_u8g2_draws_on_the_oled_panel_after_send_buffer(boot):
    dev = boot("""
        log.info("begin", u8g2.begin({ic = "ssd1306", direction = 0, mode = "i2c_hw",
                                      i2c_id = 0, i2c_addr = 0x3C}))
        log.info("size", u8g2.GetDisplayWidth(), u8g2.GetDisplayHeight())
        u8g2.SetFont(u8g2.font_opposansm12)
        u8g2.ClearBuffer()
        u8g2.DrawUTF8("21.5 C", 0, 14)
        u8g2.DrawBox(100, 40, 10, 10)
        u8g2.DrawFrame(0, 40, 20, 20)
        sys.taskInit(function()
            sys.wait(100)
            u8g2.SendBuffer()
        end)
        sys.run()
    """)
    dev.run_for("850ms")
    oled = dev.oled
    assert oled.pixel(105, 45) == BLACK  # drawn into the buffer only
    dev.run_for("100ms")
    assert user(dev, "begin") == ["1"] and user(dev, "size") == ["128 64"]
    assert oled.pixel(105, 45) == WHITE and oled.pixel(0, 40) == WHITE
    assert oled.pixel(10, 50) == BLACK
    img = oled.image()
    assert any(img.getpixel((x, y)) == WHITE for x in range(0, 60) for y in range(0, 15))


def test_invon_inverts_what_the_panel_shows(boot):
    dev = boot("""
        lcd.init("st7735", {port = 0})
        lcd.clear(0xF800)
        sys.timerStart(lcd.invon, 100)
        sys.timerStart(lcd.invoff, 200)
        sys.run()
    """)
    dev.run_for("850ms")
    assert dev.lcd.pixel(1, 1) == RED
    dev.run_for("100ms")
    assert dev.lcd.pixel(1, 1) == (0, 255, 255) and dev.lcd.image().getpixel((1, 1)) == (0, 255, 255)
    dev.run_for("100ms")
    assert dev.lcd.pixel(1, 1) == RED


def test_screen_match_fixture_reads_screens_next_to_the_test(boot, screen_match):
    dev = boot(STATUS_SCREEN % ("0x001F", "upgrade ok"))
    dev.run_for("1s")
    screen_match(dev.lcd, "status.png", max_diff_ratio=0.01)
