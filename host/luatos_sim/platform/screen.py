"""The LCD panel a test can look at, and its touch controller.

The panel is an in-memory RGB image (Pillow). Drawing goes to the panel directly, or, after
``lcd.setupBuff``, to a frame buffer that reaches the panel on ``lcd.flush()`` (or after every
call while auto-flush is on), as on the device. What a test sees is the panel:

    dev.lcd.snapshot("screen.png")      # the panel as PNG; also returns the Pillow image
    dev.lcd.pixel(10, 20)               # (r, g, b)
    dev.lcd.flushes                     # how many times the buffer reached the panel

Text is drawn with the Aileron font that Pillow ships (``ImageFont.load_default``; licence
CC0 1.0, public domain), unanti-aliased at the pixel size of the firmware font the script
chose. Glyph shapes therefore differ from the device's u8g2 fonts; positions, sizes and
colours follow the firmware.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from ..duration import Duration, parse_duration

if TYPE_CHECKING:
    from ..device import Device


@functools.lru_cache(maxsize=4096)
def rgb565(color: int) -> tuple[int, int, int]:
    """A firmware colour (RGB565) as 8-bit RGB, with the low bits filled as panels do."""
    r = (color >> 11) & 0x1F
    g = (color >> 5) & 0x3F
    b = color & 0x1F
    return (r << 3) | (r >> 2), (g << 2) | (g >> 4), (b << 3) | (b >> 2)


def to_rgb565(rgb: tuple[int, int, int]) -> int:
    r, g, b = rgb[:3]
    return ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3)


class GlyphFont:
    """A font at one pixel size, drawn glyph by glyph from a cache of 1-bit masks.

    Pillow's text call lays out and rasterises the whole string each time (about 0.5 ms);
    a status screen redraws the same few dozen characters every frame, so each glyph is
    rendered once and pasted after that (about 10 us)."""

    def __init__(self, px: int) -> None:
        self.px = px
        self.face = ImageFont.load_default(px)
        self._glyphs: dict[str, tuple[Image.Image | None, int, int, float]] = {}

    def _glyph(self, ch: str) -> tuple[Image.Image | None, int, int, float]:
        g = self._glyphs.get(ch)
        if g is None:
            left, top, right, bottom = (int(v) for v in self.face.getbbox(ch, anchor="ls"))
            advance = float(self.face.getlength(ch))
            mask = None
            if right > left and bottom > top:
                mask = Image.new("1", (right - left, bottom - top), 0)
                d = ImageDraw.Draw(mask)
                d.fontmode = "1"
                d.text((-left, -top), ch, font=self.face, fill=1, anchor="ls")
            g = (mask, left, top, advance)
            self._glyphs[ch] = g
        return g

    def width(self, text: str) -> int:
        return int(sum(self._glyph(ch)[3] for ch in text))

    def draw(self, img: Image.Image, x: int, y: int, text: str,
             color: tuple[int, int, int]) -> tuple[int, int, int, int]:
        """Draw ``text`` with its baseline at ``y``; returns the inked box (x0, y0, x1, y1)."""
        pen = float(x)
        x0 = y0 = 1 << 30
        x1 = y1 = -(1 << 30)
        for ch in text:
            mask, left, top, advance = self._glyph(ch)
            if mask is not None:
                gx, gy = int(pen) + left, y + top
                img.paste(color, (gx, gy), mask)
                x0, y0 = min(x0, gx), min(y0, gy)
                x1, y1 = max(x1, gx + mask.width), max(y1, gy + mask.height)
            pen += advance
        return (x0, y0, x1, y1) if x1 > x0 else (x, y, x, y)


@functools.lru_cache(maxsize=64)
def font(px: int) -> GlyphFont:
    return GlyphFont(px)


@dataclass
class Screen:
    """``dev.lcd``: the panel of the running (or last) boot."""

    device: Device
    width: int = 0
    height: int = 0
    controller: str | None = None
    panel: Image.Image | None = None
    buffer: Image.Image | None = None  # lcd.setupBuff's frame buffer
    auto_flush: bool = True
    backlight: bool = True
    inverted: bool = False  # lcd.invon(): the panel shows the colours inverted
    flushes: int = 0
    draws: int = 0
    _draw: ImageDraw.ImageDraw | None = field(default=None, repr=False)

    # -- the firmware side (modules/lcd.py) ---------------------------------------------------

    def power_on(self, controller: str, width: int, height: int) -> None:
        self.controller, self.width, self.height = controller, width, height
        self.panel = Image.new("RGB", (width, height), (0, 0, 0))
        self.buffer = None
        self.auto_flush = True
        self.backlight = True
        self.inverted = False
        self._draw = ImageDraw.Draw(self.panel)

    def power_off(self) -> None:
        """A reboot: the controller loses its configuration (the last picture is kept for
        tests to look at)."""
        self.controller = None
        self.buffer = None
        self._draw = None

    @property
    def ready(self) -> bool:
        return self.controller is not None and self.panel is not None

    def setup_buffer(self) -> None:
        assert self.panel is not None
        self.buffer = self.panel.copy()
        self._draw = ImageDraw.Draw(self.buffer)

    def canvas(self) -> ImageDraw.ImageDraw:
        """Where drawing goes now (the buffer, else the panel)."""
        assert self._draw is not None
        self.draws += 1
        return self._draw

    def target(self) -> Image.Image:
        img = self.buffer if self.buffer is not None else self.panel
        assert img is not None
        return img

    def flush(self) -> None:
        if self.buffer is not None and self.panel is not None:
            self.panel.paste(self.buffer)
            self.flushes += 1

    def after_draw(self) -> None:
        if self.buffer is not None and self.auto_flush:
            self.flush()

    # -- the test side ------------------------------------------------------------------------

    def image(self) -> Image.Image:
        """A copy of what the panel shows now (inverted after ``lcd.invon()``)."""
        if self.panel is None:
            raise RuntimeError("the LCD was never initialised (lcd.init)")
        if self.inverted:
            from PIL import ImageOps
            return ImageOps.invert(self.panel)
        return self.panel.copy()

    def snapshot(self, path: str | os.PathLike[str] | None = None) -> Image.Image:
        """The panel as an image, saved as PNG when ``path`` is given."""
        img = self.image()
        if path is not None:
            img.save(path, format="PNG", compress_level=1)
        return img

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        if self.panel is None:
            raise RuntimeError("the LCD was never initialised (lcd.init)")
        r, g, b = self.panel.getpixel((x, y))  # type: ignore[misc]
        return (255 - r, 255 - g, 255 - b) if self.inverted else (r, g, b)


@dataclass
class TouchPanel:
    """``dev.touch``: a touch controller on the board, and a finger on it.

    Absent until :meth:`attach` (``tp.init`` then fails as with no controller soldered);
    :meth:`tap` / :meth:`swipe` deliver down / move / up reports to the script's callback.
    """

    device: Device
    present: bool = False
    controller: str = "gt911"
    listener: object | None = None  # set by the tp module for the running boot

    def attach(self, controller: str = "gt911") -> TouchPanel:
        self.present, self.controller = True, controller
        return self

    def _report(self, event: str, x: int, y: int) -> None:
        deliver = self.listener
        if deliver is None:
            self.device.emit_sim(f"touch {event} at ({x}, {y}) dropped: no tp.init in this boot")
            return
        deliver(event, x, y)  # type: ignore[operator]

    def _later(self, event: str, x: int, y: int) -> Callable[[], None]:
        return lambda: self._report(event, x, y)

    def tap(self, x: int, y: int, at: Duration = 0, hold: Duration = "80ms") -> None:
        start = self.device.current_ms() + parse_duration(at)
        self.device.schedule_at(start, self._later("down", x, y), "touch down")
        self.device.schedule_at(start + parse_duration(hold), self._later("up", x, y),
                                "touch up")

    def swipe(self, x0: int, y0: int, x1: int, y1: int, at: Duration = 0,
              steps: int = 5, step: Duration = "20ms") -> None:
        start = self.device.current_ms() + parse_duration(at)
        dt = parse_duration(step)
        self.device.schedule_at(start, self._later("down", x0, y0), "touch down")
        for i in range(1, steps + 1):
            x = x0 + (x1 - x0) * i // steps
            y = y0 + (y1 - y0) * i // steps
            self.device.schedule_at(start + i * dt, self._later("move", x, y), "touch move")
        self.device.schedule_at(start + (steps + 1) * dt, self._later("up", x1, y1), "touch up")
