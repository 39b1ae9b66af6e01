"""lcd: init for the common controllers, the draw calls, fonts, QR codes, images, buffering.

Everything lands on the panel a test can look at (``dev.lcd``, see
:mod:`luatos_sim.platform.screen`). Before ``lcd.init`` succeeds the draw calls do nothing
and return nothing, as the firmware's do with no configured panel; drawing outside the screen
is clipped like the controller's window is, with one emulator note per call name and boot.
Colours are RGB565 integers; the defaults are a white background and a black foreground.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import segno
from PIL import Image

from ..cfunc import BadArgument, lua_type_name
from ..platform.screen import Screen, font, rgb565, to_rgb565
from .zbuff import ZBuff

if TYPE_CHECKING:
    from ..vm import Boot

NOTHING = ()
WHITE, BLACK = 0xFFFF, 0x0000

# Controller -> default (width, height) when lcd.init's table gives none.
CONTROLLERS: dict[str, tuple[int, int]] = {
    "st7735": (128, 160), "st7735s": (128, 160), "st7735v": (128, 160),
    "st7789": (240, 320), "st7796": (320, 480), "gc9a01": (240, 240), "gc9106l": (128, 160),
    "gc9306x": (240, 320), "ili9341": (240, 320), "ili9486": (320, 480), "nv3037": (480, 272),
    "jd9261t": (480, 480), "custom": (240, 320), "h050iwv": (800, 480), "hx8282": (800, 480),
    "nv3052c": (720, 1280), "st7701s": (480, 480), "st7701sn": (480, 854),
}
# Port names scripts pass to lcd.init (values are emulator choices; scripts use the names).
CONSTANTS: dict[str, Any] = {
    "HWID_0": 0x20, "WIRE_3_BIT_9_BUS": 0x21, "WIRE_4_BIT_8_BUS": 0x22,
    "WIRE_3_BIT_9_BUS_V2": 0x23, "WIRE_4_BIT_8_BUS_V2": 0x24, "DATA_2_LANE": 0x25,
    "RGB": 0x26, "QSPI": 0x27,
    "direction_0": 0, "direction_90": 1, "direction_180": 2, "direction_270": 3,
}


@dataclass(frozen=True)
class LcdFont:
    """A firmware font constant (``lcd.font_opposansm12``): its name and pixel height."""

    name: str
    px: int

    def __str__(self) -> str:
        return f"lcd font {self.name}"


FONTS = [LcdFont(f"font_opposansm{px}", px) for px in (8, 10, 12, 16, 18, 20, 22, 24, 32)] + \
    [LcdFont("font_unifont_t_symbols", 16), LcdFont("font_opposansm12_chinese", 12),
     LcdFont("font_opposansm16_chinese", 16), LcdFont("font_sarasa_m12_chinese", 12)]


@functools.lru_cache(maxsize=32)
def qr_image(text: bytes, size: int) -> Image.Image:
    """A QR code ``size`` pixels square (at least one pixel per module), black on white.
    Cached: encoding is pure Python (~25 ms) and screens redraw the same code."""
    qr = segno.make(text, error="m", micro=False)
    modules = qr.symbol_size(border=0)[0]
    side = max(modules, size)
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=max(1, side // modules), border=0, dark="black",
            light="white")
    buf.seek(0)
    img = Image.open(buf).convert("RGB")
    if img.size[0] != side:
        img = img.resize((side, side), Image.Resampling.NEAREST)
    return img


def _int(v: Any, default: int | None = None) -> int | None:
    if isinstance(v, bool):
        return default
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    return default


def install(boot: Boot) -> None:
    screen: Screen = boot.platform.lcd  # powered off at boot: Platform.begin_boot
    boot.closers.append(screen.power_off)
    colors = {"back": WHITE, "fore": BLACK}
    current_font: dict[str, LcdFont] = {"font": FONTS[2]}
    noted: set[str] = set()

    def note(key: str, text: str) -> None:
        if key not in noted:
            noted.add(key)
            boot.note(text)

    def ready(name: str) -> bool:
        if screen.ready:
            return True
        boot.log_c("W", "lcd", "lcd not init")
        note("init", f"lcd.{name} before a successful lcd.init: nothing drawn")
        return False

    def outside(name: str, *points: tuple[int, int]) -> None:
        for x, y in points:
            if not (0 <= x < screen.width and 0 <= y < screen.height):
                note(f"out:{name}", f"lcd.{name}: ({x}, {y}) is outside the {screen.width}x"
                     f"{screen.height} screen; the part outside is not drawn")
                return

    def color(v: Any, default: str = "fore") -> tuple[int, int, int]:
        c = _int(v)
        return rgb565((colors[default] if c is None else c) & 0xFFFF)

    def field(table: Any, key: str) -> Any:
        if table is None or boot.lua_type(table) != b"table":
            return None
        return table[key.encode()]

    def init(kind: Any = None, args: Any = None, spi_dev: Any = None, *_: Any) -> bool:
        name = kind.decode("utf-8", "replace").lower() if isinstance(kind, bytes) else ""
        if name not in CONTROLLERS:
            boot.log_c("E", "lcd", f"lcd tp {name or kind!r} not support")
            return False
        w0, h0 = CONTROLLERS[name]
        w = _int(field(args, "w"), w0) or w0
        h = _int(field(args, "h"), h0) or h0
        if w <= 0 or h <= 0 or w * h > 4096 * 4096:
            boot.log_c("E", "lcd", f"bad lcd size {w}x{h}")
            return False
        screen.power_on(name, w, h)
        colors.update(back=WHITE, fore=BLACK)
        boot.trace("lcd_init", controller=name, w=w, h=h)
        return True

    def get_size(*_: Any) -> Any:
        return (screen.width, screen.height) if screen.ready else NOTHING

    def clear(c: Any = None, *_: Any) -> Any:
        if not ready("clear"):
            return NOTHING
        screen.canvas().rectangle((0, 0, screen.width - 1, screen.height - 1),
                                  fill=color(c, "back"))
        screen.after_draw()
        return True

    def fill(x1: int, y1: int, x2: int, y2: int, c: Any = None) -> Any:
        if not ready("fill"):
            return NOTHING
        outside("fill", (x1, y1), (x2 - 1, y2 - 1))
        if x2 > x1 and y2 > y1:
            screen.canvas().rectangle((x1, y1, x2 - 1, y2 - 1), fill=color(c, "back"))
        screen.after_draw()
        return True

    def draw_point(x: int, y: int, c: Any = None) -> Any:
        if not ready("drawPoint"):
            return NOTHING
        outside("drawPoint", (x, y))
        screen.canvas().point((x, y), fill=color(c))
        screen.after_draw()
        return True

    def draw_line(x1: int, y1: int, x2: int, y2: int, c: Any = None) -> Any:
        if not ready("drawLine"):
            return NOTHING
        outside("drawLine", (x1, y1), (x2, y2))
        screen.canvas().line((x1, y1, x2, y2), fill=color(c))
        screen.after_draw()
        return True

    def draw_rectangle(x1: int, y1: int, x2: int, y2: int, c: Any = None) -> Any:
        if not ready("drawRectangle"):
            return NOTHING
        outside("drawRectangle", (x1, y1), (x2, y2))
        screen.canvas().rectangle((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)),
                                  outline=color(c))
        screen.after_draw()
        return True

    def draw_circle(x: int, y: int, r: int, c: Any = None) -> Any:
        if not ready("drawCircle"):
            return NOTHING
        outside("drawCircle", (x - r, y - r), (x + r, y + r))
        screen.canvas().ellipse((x - r, y - r, x + r, y + r), outline=color(c))
        screen.after_draw()
        return True

    def set_color(back: Any = None, fore: Any = None, *_: Any) -> bool:
        if _int(back) is not None:
            colors["back"] = _int(back, WHITE) or 0
        if _int(fore) is not None:
            colors["fore"] = _int(fore, BLACK) or 0
        return True

    def set_font(f: Any = None, *_: Any) -> Any:
        if isinstance(f, LcdFont):
            current_font["font"] = f
        else:
            note("font", "lcd.setFont: not a font this firmware has; the font is unchanged")
        return NOTHING

    def draw_str(x: int, y: int, text: bytes, c: Any = None) -> Any:
        if not ready("drawStr"):
            return NOTHING
        s = text.decode("utf-8", "replace")
        screen.draws += 1
        box = font(current_font["font"].px).draw(screen.target(), x, y, s, color(c))
        outside("drawStr", (box[0], box[1]), (box[2] - 1, box[3] - 1))
        screen.after_draw()
        return NOTHING

    def str_width(text: bytes, *_: Any) -> int:
        return font(current_font["font"].px).width(text.decode("utf-8", "replace"))

    def draw_qrcode(x: int, y: int, text: bytes, size: int = 0) -> Any:
        if not ready("drawQrcode"):
            return NOTHING
        img = qr_image(text, size)
        side = img.width
        outside("drawQrcode", (x, y), (x + side - 1, y + side - 1))
        screen.target().paste(img, (x, y))
        screen.draws += 1
        screen.after_draw()
        return True

    def show_image(x: int, y: int, path: bytes, *_: Any) -> bool:
        if not ready("showImage"):
            return False
        host, err = boot.platform.fs.host_path(path)
        if host is None:
            note(f"img:{path!r}", f"lcd.showImage: {err}")
            return False
        try:
            with Image.open(host) as im:
                img = im.convert("RGB")
        except (OSError, ValueError) as e:
            boot.log_c("E", "lcd", f"decode image fail {path.decode('utf-8', 'replace')}")
            note(f"img:{path!r}", f"lcd.showImage: {path.decode('utf-8', 'replace')} is not an "
                 f"image Pillow can decode ({e})")
            return False
        outside("showImage", (x, y), (x + img.width - 1, y + img.height - 1))
        screen.target().paste(img, (x, y))
        screen.draws += 1
        screen.after_draw()
        return True

    def draw(x1: int, y1: int, x2: int, y2: int, data: Any = None) -> Any:
        """A block of RGB565 pixels from a zbuff or string (little-endian, row by row)."""
        if not ready("draw"):
            return NOTHING
        raw = bytes(data.buf) if isinstance(data, ZBuff) else \
            (data if isinstance(data, bytes) else b"")
        w, h = x2 - x1 + 1, y2 - y1 + 1
        if w <= 0 or h <= 0 or len(raw) < w * h * 2:
            return False
        img = Image.new("RGB", (w, h))
        img.putdata([rgb565(raw[i] | raw[i + 1] << 8) for i in range(0, w * h * 2, 2)])
        outside("draw", (x1, y1), (x2, y2))
        screen.target().paste(img, (x1, y1))
        screen.draws += 1
        screen.after_draw()
        return True

    def draw_xbm(x: int, y: int, w: int, h: int, data: bytes) -> Any:
        if not ready("drawXbm"):
            return NOTHING
        stride = (w + 7) // 8
        if len(data) < stride * h:
            return False
        canvas = screen.canvas()
        fg = color(None)
        pts = [(x + i, y + j) for j in range(h) for i in range(w)
               if data[j * stride + i // 8] >> (i % 8) & 1]
        if pts:
            canvas.point(pts, fill=fg)
        screen.after_draw()
        return True

    def setup_buff(conf: Any = None, onheap: Any = None, *_: Any) -> Any:
        if not ready("setupBuff"):
            return NOTHING
        screen.setup_buffer()
        return True

    def auto_flush(enable: Any = True, *_: Any) -> Any:
        screen.auto_flush = enable is not False
        return NOTHING

    def flush(*_: Any) -> Any:
        if not ready("flush"):
            return NOTHING
        screen.flush()
        return True

    def rgb565_of(*args: Any) -> int:
        """1-2 arguments: a 24-bit 0xRRGGBB (and swap); 3-4: red, green, blue (and swap).
        The result is byte-swapped unless swap is false, as the firmware returns it."""
        if len(args) in (1, 2):
            rgb = _int(args[0])
            if rgb is None:
                raise BadArgument("bad argument #1 to 'rgb565' (number expected, got "
                                  f"{lua_type_name(args[0])})")
            r, g, b, swap = rgb >> 16 & 0xFF, rgb >> 8 & 0xFF, rgb & 0xFF, args[1:2]
        elif len(args) in (3, 4):
            vals = [_int(v) for v in args[:3]]
            for i, v in enumerate(vals):
                if v is None:
                    raise BadArgument(f"bad argument #{i + 1} to 'rgb565' (number expected, "
                                      f"got {lua_type_name(args[i])})")
            r, g, b = (int(v or 0) & 0xFF for v in vals)
            swap = args[3:4]
        else:
            boot.log_c("W", "lcd", f"unkown args count {len(args)}")
            return 0
        c = to_rgb565((r, g, b))
        return c if swap and swap[0] is False else ((c & 0xFF) << 8 | c >> 8)

    def backlight(on: bool) -> Any:
        def set_state(*_: Any) -> Any:
            if screen.ready:
                screen.backlight = on
            return NOTHING
        return set_state

    def invert(on: bool) -> Any:
        def set_state(*_: Any) -> Any:
            if screen.ready:
                screen.inverted = on
            return NOTHING
        return set_state

    def close(*_: Any) -> Any:
        screen.power_off()
        return NOTHING

    functions: dict[str, Any] = {
        "init": init, "getSize": get_size, "clear": clear, "fill": fill,
        "drawPoint": draw_point, "drawLine": draw_line, "drawRectangle": draw_rectangle,
        "drawCircle": draw_circle, "setColor": set_color, "setFont": set_font,
        "drawStr": draw_str, "getStrWidth": str_width, "drawQrcode": draw_qrcode,
        "showImage": show_image, "draw": draw, "drawXbm": draw_xbm, "setupBuff": setup_buff,
        "autoFlush": auto_flush, "flush": flush, "rgb565": rgb565_of,
        "on": backlight(True), "off": backlight(False), "wakeup": backlight(True),
        "sleep": backlight(False), "invon": invert(True), "invoff": invert(False),
        "close": close,
    }
    constants = dict(CONSTANTS)
    constants.update({f.name: f for f in FONTS})
    boot.firmware_module("lcd", functions, constants)
