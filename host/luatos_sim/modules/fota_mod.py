"""fota: the firmware's upgrade-package writer (behaviour.md §7.1), over the device's FOTA area.

libfota2 picks fota mode (rather than downloading to ``/update.bin``) because this global
exists, so every model has it. The write/done/end results come from
:mod:`luatos_sim.platform.fota_area`; this module only maps them to the Lua return conventions:
run/file ``true,false,r`` (more wanted) / ``true,true,0`` (complete) / ``false,true,r``
(refused), isDone ``true,false`` / ``true,true`` / ``false,true``.

``D/user.fota.run true false 1`` in the Air8101 logs is a ``luat:U`` line, i.e. printed by
the demo script (``log.debug("fota.run", fota.run(buf))``), not by the firmware, so the
firmware here prints nothing per chunk.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .. import upgrade_checks
from ..platform.fota_area import area_for
from .zbuff import ZBuff

if TYPE_CHECKING:
    from ..vm import Boot

FILE_CHUNK = 4096


def _run_result(r: int) -> tuple[bool, bool, int]:
    if r > 0:
        return True, False, r
    if r == 0:
        return True, True, 0
    return False, True, r


def install(boot: Boot) -> None:
    area = area_for(boot)
    air8101 = boot.profile.model.startswith("Air8101")

    def chunk_of(buf: Any, off: Any, length: Any) -> bytes | None:
        if isinstance(buf, bytes):
            data = buf
        elif isinstance(buf, ZBuff):
            data = buf.query()
        else:
            return None
        start = int(off) if isinstance(off, int | float) else 0
        if isinstance(length, int | float):
            return data[start:start + int(length)]
        return data[start:]

    def init(*_: Any) -> bool:
        return area.begin()

    def wait(*_: Any) -> bool:
        # Never ready on Air8101 (libfota3 skips it there); elsewhere ready once init ran.
        if air8101:
            return False
        return area.in_progress

    def run(buf: Any = None, off: Any = None, length: Any = None) -> tuple[bool, bool, int]:
        data = chunk_of(buf, off, length)
        if data is None:
            return False, True, -1
        return _run_result(area.write(data))

    def file(path: Any = None, *_: Any) -> tuple[bool, bool, int]:
        host = None
        if isinstance(path, bytes):
            host, _err = boot.platform.fs.host_path(path)
        if host is None or not os.path.isfile(host):
            return False, False, 0
        if not area.in_progress:
            area.begin()
        r = 1
        with open(host, "rb") as f:
            while True:
                chunk = f.read(FILE_CHUNK)
                if not chunk:
                    break
                r = area.write(chunk)
                if r < 0:
                    return _run_result(r)
        boot.log_c("I", "fota", "fota file write done, call fota.done()")
        d = area.is_done()
        if d == 0:
            boot.log_c("I", "fota", "fota done success, call fota.end()")
            return True, True, 0
        boot.log_c("I", "fota", f"fota done fail {d}")
        return _run_result(d)

    def is_done(*_: Any) -> tuple[bool, bool]:
        d = area.is_done()
        if d > 0:
            return True, False
        if d == 0:
            return True, True
        return False, True

    def finish(ok: Any = None, *_: Any) -> bool:
        good = bool(ok) and ok != 0
        return area.end(good)

    boot.firmware_module("fota", {
        "init": init, "wait": wait, "run": run, "file": file, "isDone": is_done,
        "done": is_done, "finish": finish, "end": finish,
    })
    upgrade_checks.install(boot)
    _trace_wlan_disconnect(boot)


def _trace_wlan_disconnect(boot: Boot) -> None:
    """Trace wlan.disconnect (the PSM sequence's first step) so a test can order it against
    the FOTA callback, the dtimer and the sleep. wlan is installed before fota."""
    boot.execute(b"""
      local trace = ...
      if wlan and rawget(wlan, "disconnect") then
        local disconnect = wlan.disconnect
        wlan.disconnect = function(...)
          trace()
          return disconnect(...)
        end
      end
    """, lambda *_: boot.trace("wlan_disconnect"))
