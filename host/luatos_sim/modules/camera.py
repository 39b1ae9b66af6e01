"""camera: USB/DVP (and SPI-sensor) cameras with frames from the bench (``dev.camera``).

``camera.init`` opens the interface (a table for USB/DVP, the positional form for an SPI
sensor) and returns its id; ``camera.on(id, "scanned", cb)`` registers the callback;
``camera.start``/``stop``/``close``; ``camera.capture(id, path_or_zbuff, quality, x, y, w, h)``
starts a capture and, when the frame is encoded, calls ``cb(id, size)``. With no camera on the
bench the capture yields ``cb(id, false)``, as a board with no sensor answering does. Values of
``camera.USB``/``camera.DVP`` follow the vendor's excamera library (32 and 0).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..platform.camera import CameraBench
from .zbuff import ZBuff

if TYPE_CHECKING:
    from ..vm import Boot

USB, DVP, SPI_ID = 32, 0, 1
CAPTURE_MS = 120  # sensor exposure + JPEG encode on the device (UNCONFIRMED)
QUALITY = {0: 50, 1: 80, 2: 90, 3: 95}  # camera.capture's quality argument -> JPEG quality


def install(boot: Boot) -> None:
    bench: CameraBench = boot.platform.camera
    opened: dict[int, dict[str, Any]] = {}  # id -> {"started": bool, "cb": fn}
    noted: set[str] = set()

    def note(key: str, text: str) -> None:
        if key not in noted:
            noted.add(key)
            boot.note(f"camera: {text}")

    def init(first: Any = None, *_: Any) -> Any:
        if first is not None and boot.lua_type(first) == b"table":
            cid = first[b"id"]
            if cid not in (USB, DVP):
                return False
        elif isinstance(first, int):
            cid = SPI_ID
        else:
            return False
        opened[cid] = {"started": False, "cb": None}
        boot.trace("camera_init", id=cid)
        return cid

    def on(cid: Any = None, event: Any = None, cb: Any = None, *_: Any) -> Any:
        if cid in opened and event == b"scanned":
            opened[cid]["cb"] = cb
        return ()

    def start(cid: Any = None, *_: Any) -> bool:
        if cid not in opened:
            return False
        opened[cid]["started"] = True
        return True

    def stop(cid: Any = None, *_: Any) -> bool:
        if cid in opened:
            opened[cid]["started"] = False
        return True

    def close(cid: Any = None, *_: Any) -> Any:
        opened.pop(cid, None)
        return ()

    def finish(cid: Any, target: Any, quality: int, box: Any) -> None:
        cam = opened.get(cid)
        if cam is None:
            return
        data = bench.jpeg(quality, box)
        result: Any = False
        if data is None:
            note("none", "capture with no camera on the bench (dev.camera.attach(...)); "
                 "no picture, the callback gets false")
        elif isinstance(target, ZBuff):
            target.seek(0)
            target.append(data)
            result = len(data)
        else:
            host, err = boot.platform.fs.host_path(target, write=True)
            if host is None:
                note(f"path{target!r}", f"capture to {target!r}: {err}")
            else:
                os.makedirs(os.path.dirname(host), exist_ok=True)
                with open(host, "wb") as f:
                    f.write(data)
                result = len(data)
        if cam["cb"] is not None:
            boot.post(0, cam["cb"], cid, result)

    def capture(cid: Any = None, target: Any = None, quality: Any = 1, x: Any = None,
                y: Any = None, w: Any = None, h: Any = None) -> bool:
        cam = opened.get(cid)
        if cam is None or not (isinstance(target, bytes | ZBuff)):
            return False
        if not cam["started"]:
            note("notstarted", "camera.capture before camera.start: nothing is captured")
            return False
        box = (int(x), int(y), int(w), int(h)) if all(isinstance(v, int | float)
                                                     for v in (x, y, w, h)) else None
        q = QUALITY.get(int(quality), 80) if isinstance(quality, int | float) else 80
        boot.post(CAPTURE_MS, finish, cid, target, q, box)
        return True

    boot.firmware_module("camera", {
        "init": init, "on": on, "start": start, "stop": stop, "close": close,
        "capture": capture,
    }, {"USB": USB, "DVP": DVP})
