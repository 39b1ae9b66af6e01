"""tp: the touch controller, fed by the bench's finger (``dev.touch.tap(x, y)``).

``tp.init(name, opts, cb)`` returns the touch object when the board has a controller
(``dev.touch.attach()``) and nil otherwise, as a failed probe on the I2C bus does. Each report
reaches ``cb(tp, data)`` from the event loop, where ``data`` is a list of points
``{event=, x=, y=, track_id=, timestamp=}``. The event constant values are UNCONFIRMED (see
docs/defaults.md); scripts compare against the names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..platform.screen import TouchPanel

if TYPE_CHECKING:
    from ..vm import Boot

EVENTS = {"EVENT_NONE": 0, "EVENT_DOWN": 1, "EVENT_UP": 2, "EVENT_MOVE": 3}
CONTROLLERS = frozenset({"gt911", "gt9157", "cst820", "cst9220", "ft6336", "jd9261t_inited"})


class _Touch:
    def __init__(self, name: str) -> None:
        self.name = name


def install(boot: Boot) -> None:
    panel: TouchPanel = boot.platform.touch  # no listener at boot: Platform.begin_boot

    def forget() -> None:
        panel.listener = None
    boot.closers.append(forget)
    boot.objects.define(_Touch, "TP*")

    def init(name: Any = None, opts: Any = None, cb: Any = None, *_: Any) -> Any:
        kind = name.decode("utf-8", "replace").lower() if isinstance(name, bytes) else ""
        if kind not in CONTROLLERS:
            boot.log_c("E", "tp", f"tp {kind or name!r} not support")
            return None
        if not panel.present:
            boot.log_c("E", "tp", f"{kind} not found")
            boot.note(f"tp.init({kind!r}): no touch controller on the bench (call "
                            "dev.touch.attach() in the test); the probe fails as on a board "
                            "without one")
            return None
        obj = _Touch(kind)

        def report(event: str, x: int, y: int) -> None:
            if cb is None:
                return
            point = boot.table(event=EVENTS["EVENT_" + event.upper()], x=x, y=y, track_id=0,
                               timestamp=boot.now)
            boot.post(0, cb, obj, boot.table(point))
        panel.listener = report
        boot.trace("tp_init", controller=kind)
        return obj

    boot.firmware_module("tp", {"init": init}, EVENTS)
