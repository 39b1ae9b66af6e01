"""u8g2: the monochrome (OLED) display library, drawing on the same kind of panel as lcd.

The display is ``dev.oled`` (a :class:`~luatos_sim.platform.screen.Screen`): drawing goes to
u8g2's buffer and reaches the panel on ``SendBuffer()``, as on the device; white is a lit
pixel. ``u8g2.begin`` takes the controller's size from its name (SSD1306/SH1106 128x64 unless
``width``/``height`` say otherwise) and returns 1; u8g2 does not read the display back, so a
missing display is not detected on the device either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..platform.screen import Screen, font
from .lcd import FONTS, LcdFont, qr_image

if TYPE_CHECKING:
    from ..vm import Boot

NOTHING = ()
SIZES = {"ssd1306": (128, 64), "sh1106": (128, 64), "ssd1309": (128, 64),
         "st7567": (128, 64), "ssd1315": (128, 64), "ssd1306_128x32": (128, 32)}
ON, OFF = (255, 255, 255), (0, 0, 0)


def install(boot: Boot) -> None:
    screen: Screen = boot.platform.oled  # powered off at boot: Platform.begin_boot
    boot.closers.append(screen.power_off)
    state: dict[str, Any] = {"font": FONTS[2], "color": 1, "transparent": False}

    def ready() -> bool:
        if screen.ready:
            return True
        boot.note("u8g2: drawing before u8g2.begin: nothing drawn")
        return False

    def ink() -> tuple[int, int, int]:
        return OFF if state["color"] == 0 else ON

    def begin(conf: Any = None, *_: Any) -> int:
        ic = conf[b"ic"] if conf is not None and boot.lua_type(conf) == b"table" else None
        name = ic.decode("utf-8", "replace").lower() if isinstance(ic, bytes) else "ssd1306"
        w, h = SIZES.get(name, (128, 64))
        if conf is not None and boot.lua_type(conf) == b"table":
            w = int(conf[b"width"] or w)
            h = int(conf[b"height"] or h)
        screen.power_on(name, w, h)
        screen.setup_buffer()
        screen.auto_flush = False
        screen.canvas().rectangle((0, 0, w - 1, h - 1), fill=OFF)
        screen.flush()
        boot.trace("u8g2_begin", ic=name, w=w, h=h)
        return 1

    def close(*_: Any) -> Any:
        screen.power_off()
        return NOTHING

    def clear_buffer(*_: Any) -> Any:
        if ready():
            screen.canvas().rectangle((0, 0, screen.width - 1, screen.height - 1), fill=OFF)
        return NOTHING

    def send_buffer(*_: Any) -> Any:
        if ready():
            screen.flush()
        return NOTHING

    def set_font(f: Any = None, *_: Any) -> Any:
        if isinstance(f, LcdFont):
            state["font"] = f
        return NOTHING

    def set_font_mode(mode: Any = 0, *_: Any) -> Any:
        state["transparent"] = mode == 1
        return NOTHING

    def set_draw_color(c: Any = 1, *_: Any) -> Any:
        state["color"] = int(c) if isinstance(c, int | float) else 1
        return NOTHING

    def draw_utf8(text: bytes, x: int, y: int) -> Any:
        if not ready():
            return NOTHING
        s = text.decode("utf-8", "replace")
        screen.draws += 1
        font(state["font"].px).draw(screen.target(), x, y, s, ink())
        return NOTHING

    def utf8_width(text: bytes, *_: Any) -> int:
        return font(state["font"].px).width(text.decode("utf-8", "replace"))

    def draw_line(x0: int, y0: int, x1: int, y1: int) -> Any:
        if ready():
            screen.canvas().line((x0, y0, x1, y1), fill=ink())
        return NOTHING

    def draw_pixel(x: int, y: int) -> Any:
        if ready():
            screen.canvas().point((x, y), fill=ink())
        return NOTHING

    def draw_box(x: int, y: int, w: int, h: int) -> Any:
        if ready() and w > 0 and h > 0:
            screen.canvas().rectangle((x, y, x + w - 1, y + h - 1), fill=ink())
        return NOTHING

    def draw_frame(x: int, y: int, w: int, h: int) -> Any:
        if ready() and w > 0 and h > 0:
            screen.canvas().rectangle((x, y, x + w - 1, y + h - 1), outline=ink())
        return NOTHING

    def draw_circle(x: int, y: int, r: int, *_: Any) -> Any:
        if ready():
            screen.canvas().ellipse((x - r, y - r, x + r, y + r), outline=ink())
        return NOTHING

    def draw_disc(x: int, y: int, r: int, *_: Any) -> Any:
        if ready():
            screen.canvas().ellipse((x - r, y - r, x + r, y + r), fill=ink())
        return NOTHING

    def draw_xbm(x: int, y: int, w: int, h: int, data: bytes) -> Any:
        if not ready():
            return NOTHING
        stride = (w + 7) // 8
        pts = [(x + i, y + j) for j in range(h) for i in range(w)
               if j * stride + i // 8 < len(data) and data[j * stride + i // 8] >> (i % 8) & 1]
        if pts:
            screen.canvas().point(pts, fill=ink())
        return NOTHING

    def draw_qrcode(x: int, y: int, text: bytes, size: int = 0) -> Any:
        if ready():
            img = qr_image(text, size).point(lambda v: 255 - v)  # lit modules on black
            screen.target().paste(img, (x, y))
        return NOTHING

    def width(*_: Any) -> int:
        return screen.width

    def height(*_: Any) -> int:
        return screen.height

    def noop(*_: Any) -> Any:
        return NOTHING

    constants: dict[str, Any] = {f.name: f for f in FONTS}
    boot.firmware_module("u8g2", {
        "begin": begin, "close": close, "ClearBuffer": clear_buffer, "SendBuffer": send_buffer,
        "SetFont": set_font, "SetFontMode": set_font_mode, "SetDrawColor": set_draw_color,
        "DrawUTF8": draw_utf8, "GetUTF8Width": utf8_width, "DrawLine": draw_line,
        "DrawPixel": draw_pixel, "DrawBox": draw_box, "DrawFrame": draw_frame,
        "DrawCircle": draw_circle, "DrawDisc": draw_disc, "DrawXBM": draw_xbm,
        "DrawDrcode": draw_qrcode, "GetDisplayWidth": width, "GetDisplayHeight": height,
        "SetContrast": noop, "SetPowerSave": noop,
    }, constants)
