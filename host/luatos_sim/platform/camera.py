"""The camera on the bench: what the lens sees is a picture the test gives.

    dev.camera.attach("scene.png")                 # a file, or a Pillow image
    dev.camera.attach(lambda ms: make_frame(ms))   # a frame per capture, from virtual time

Nothing attached (the default) is a board with no sensor answering: ``camera.init`` opens the
interface, but a capture produces no picture (the capture callback gets ``false``), which is
what the vendor's excamera library reports as "no photo".
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    from ..device import Device

FrameSource = Image.Image | str | os.PathLike[str] | Callable[[int], Image.Image]


@dataclass
class CameraBench:
    device: Device
    source: FrameSource | None = None
    captures: list[tuple[int, int, int]] = field(default_factory=list)  # (ms, width, bytes)

    def attach(self, source: FrameSource) -> CameraBench:
        self.source = source
        return self

    def detach(self) -> None:
        self.source = None

    def frame(self) -> Image.Image | None:
        src = self.source
        if src is None:
            return None
        if isinstance(src, Image.Image):
            return src.convert("RGB")
        if callable(src):
            return src(self.device.current_ms()).convert("RGB")
        with Image.open(src) as im:
            return im.convert("RGB")

    def jpeg(self, quality: int = 80, box: tuple[int, int, int, int] | None = None
             ) -> bytes | None:
        """The current frame as the camera's JPEG (cropped to ``box`` = x, y, w, h)."""
        img = self.frame()
        if img is None:
            return None
        if box is not None:
            x, y, w, h = box
            img = img.crop((x, y, x + w, y + h))
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=max(1, min(95, quality)))
        data = out.getvalue()
        self.captures.append((self.device.current_ms(), img.width, len(data)))
        return data
