"""Compare what the emulated screen shows with a stored picture, with a tolerance.

    from luatos_sim.screencheck import assert_screen
    assert_screen(dev.lcd, Path(__file__).parent / "screens" / "home.png")

A pixel differs when any channel is off by more than ``channel_tolerance``; the check fails
when more than ``max_diff_ratio`` of the pixels differ (or the sizes differ), and then writes
``<name>.actual.png`` and ``<name>.diff.png`` next to the stored picture so the failure can
be looked at. A missing picture is an error, unless ``LUATOS_UPDATE_SCREENS=1`` is set: then
the current screen is stored (the way to create or accept a new reference).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image, ImageChops


class _HasImage(Protocol):
    def image(self) -> Image.Image: ...


@dataclass(frozen=True)
class ScreenDiff:
    differing: int
    total: int

    @property
    def ratio(self) -> float:
        return self.differing / self.total if self.total else 0.0


def screen_diff(actual: Image.Image, expected: Image.Image,
                channel_tolerance: int = 8) -> tuple[ScreenDiff, Image.Image]:
    """How many pixels differ by more than the tolerance, and a mask image of them."""
    a, e = actual.convert("RGB"), expected.convert("RGB")
    if a.size != e.size:
        raise ValueError(f"screen is {a.size[0]}x{a.size[1]}, stored picture is "
                         f"{e.size[0]}x{e.size[1]}")
    delta = ImageChops.difference(a, e)
    worst = _max_channel(delta)
    mask = worst.point(lambda v: 255 if v > channel_tolerance else 0)
    differing = int(mask.histogram()[255])
    return ScreenDiff(differing, a.size[0] * a.size[1]), mask


def _max_channel(img: Image.Image) -> Image.Image:
    r, g, b = img.split()
    return ImageChops.lighter(ImageChops.lighter(r, g), b)


def assert_screen(screen: _HasImage | Image.Image, expected: str | os.PathLike[str], *,
                  max_diff_ratio: float = 0.001, channel_tolerance: int = 8) -> ScreenDiff:
    path = Path(expected)
    actual = screen if isinstance(screen, Image.Image) else screen.image()
    if not path.exists():
        if os.environ.get("LUATOS_UPDATE_SCREENS") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            actual.save(path, format="PNG")
            return ScreenDiff(0, actual.size[0] * actual.size[1])
        raise AssertionError(f"{path}: no stored picture; run with LUATOS_UPDATE_SCREENS=1 "
                             "to store the current screen as the reference")
    with Image.open(path) as stored:
        try:
            diff, mask = screen_diff(actual, stored, channel_tolerance)
        except ValueError as e:
            raise AssertionError(f"{path}: {e}") from None
    if diff.ratio > max_diff_ratio:
        stem = path.with_suffix("")
        actual.save(f"{stem}.actual.png", format="PNG")
        mask.save(f"{stem}.diff.png", format="PNG")
        raise AssertionError(
            f"{path}: {diff.differing} of {diff.total} pixels differ ({diff.ratio:.3%} > "
            f"{max_diff_ratio:.3%}); see {stem}.actual.png and {stem}.diff.png")
    return diff
