"""LCD benchmark: a full 480x272 frame drawn from Lua and flushed, and a snapshot PNG.

A frame is what a status screen does: clear, a header bar, twelve lines of changing text, a
frame of lines and rectangles, a circle and a QR code (the same one every frame, as a device
link is; a new QR text costs ~25 ms of pure-Python encoding once), then ``lcd.flush()``.
Prints medians of several runs and the ratio to each goal (below 1.0 meets it). Run with
``.venv/bin/python bench/bench_lcd.py``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from luatos_sim import Device

FRAMES = 60
RUNS = 5
GOAL_FRAME_MS = 5.0
GOAL_SNAPSHOT_MS = 50.0

SRC = f"""
lcd.init("nv3037", {{port = lcd.RGB, w = 480, h = 272}})
lcd.setupBuff(nil, true)
lcd.autoFlush(false)
lcd.setFont(lcd.font_opposansm16)
sys.taskInit(function()
    sys.wait(10)
    log.info("mark", "start")
    for f = 1, {FRAMES} do
        lcd.clear(0x0000)
        lcd.fill(0, 0, 480, 32, 0x001F)
        lcd.drawStr(8, 24, "Air8101 frame " .. f, 0xFFFF)
        for i = 0, 11 do
            lcd.drawStr(8, 56 + i * 18, "sensor " .. i .. ": " .. (f * 7 + i) % 100 .. ".5 C", 0x07E0)
        end
        lcd.drawRectangle(240, 40, 470, 262, 0xFFFF)
        lcd.drawLine(240, 150, 470, 150, 0xF800)
        lcd.drawCircle(300, 100, 40, 0xFFE0)
        lcd.drawQrcode(360, 160, "https://example.com/dev/C8C2C68CD602", 96)
        lcd.flush()
    end
    log.info("mark", "end")
end)
sys.run()
"""


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-lcd-"))
    (root / "main.lua").write_text(SRC)
    frame_ms, snap_ms = [], []
    for _ in range(RUNS):
        with Device(root) as dev:
            marks: dict[str, float] = {}

            def mark(rec, marks=marks):  # type: ignore[no-untyped-def]
                if rec.line.startswith("I/user.mark "):
                    marks[rec.line.split()[1]] = time.perf_counter()
            dev.add_listener(mark)
            dev.run_for("2s")
            frame_ms.append((marks["end"] - marks["start"]) / FRAMES * 1000)
            assert dev.lcd.flushes == FRAMES
            for _ in range(5):
                t = time.perf_counter()
                dev.lcd.snapshot(root / "snap.png")
                snap_ms.append((time.perf_counter() - t) * 1000)
    f, s = statistics.median(frame_ms), statistics.median(snap_ms)
    print(f"{'what':<42} {'median':>10} {'goal':>8} {'ratio':>6}")
    print(f"{'480x272 frame: draw from Lua + flush':<42} {f:>8.2f}ms {GOAL_FRAME_MS:>6.0f}ms "
          f"{f / GOAL_FRAME_MS:>6.2f}")
    print(f"{'snapshot PNG (480x272)':<42} {s:>8.2f}ms {GOAL_SNAPSHOT_MS:>6.0f}ms "
          f"{s / GOAL_SNAPSHOT_MS:>6.2f}")


if __name__ == "__main__":
    main()
