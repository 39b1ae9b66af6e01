"""errDump's logs: the system and the user error log, kept in flash so they outlive a boot.

On the device both are files of the flash file system (luat_lib_errdump.c); here they live in
the device's state folder, next to fskv, so a reboot, a crash or a power cycle keeps them and
``io`` does not list them (docs/defaults.md). Each is a bounded ring: the newest
``max_bytes`` are kept. What the running boot did with the module (recording on or off, the
write and read counters) is RAM: :meth:`begin_boot` forgets it, as a reset does.

A Lua error that ends the VM is saved to the system log by the firmware's ``report()``
(luat_main.c) when the script had turned recording on: :meth:`lua_error`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SYS, USR = 0, 1  # errDump.TYPE_SYS, errDump.TYPE_USR
KINDS = (SYS, USR)
LOG_MAX_BYTES = 4096  # ERR_DUMP_LEN_MAX: per log
_FILES = {SYS: "sys.log", USR: "usr.log"}


@dataclass
class ErrDumpLogs:
    """``dev.errdump``: read what the device has logged (``sys_log``, ``usr_log``), or seed it."""

    folder: Path
    max_bytes: int = LOG_MAX_BYTES
    # RAM of the running boot: errDump.config(true, ...) turned recording on; how many writes
    # each log had, and up to which write it was last read (dump or an upload).
    enabled: bool = False
    written: list[int] = field(default_factory=lambda: [0, 0])
    read_upto: list[int] = field(default_factory=lambda: [0, 0])

    def begin_boot(self) -> None:
        self.enabled = False
        self.written = [0, 0]
        self.read_upto = [0, 0]

    # -- for tests -------------------------------------------------------------------------------

    @property
    def sys_log(self) -> bytes:
        return self.read(SYS)

    @property
    def usr_log(self) -> bytes:
        return self.read(USR)

    # -- the firmware's side ---------------------------------------------------------------------

    def path(self, kind: int) -> Path:
        return self.folder / _FILES[kind]

    def read(self, kind: int) -> bytes:
        try:
            return self.path(kind).read_bytes()
        except OSError:
            return b""

    def size(self, kind: int) -> int:
        try:
            return self.path(kind).stat().st_size
        except OSError:
            return 0

    def save(self, kind: int, data: bytes) -> bool:
        """Append to a log as the firmware does: a record of ``max_bytes`` or more keeps only its
        newest ``max_bytes``; otherwise the oldest bytes go to make room. Nothing is written
        (False) while recording is off. The write counter moves either way."""
        self.written[kind] += 1
        if not self.enabled:
            return False
        limit = self.max_bytes
        if len(data) >= limit:
            content = data[len(data) - limit:]
        else:
            content = self.read(kind)[-(limit - len(data)):] + data
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path(kind).with_suffix(".tmp")
        tmp.write_bytes(content)
        os.replace(tmp, self.path(kind))
        return True

    def clear(self, kind: int) -> None:
        try:
            self.path(kind).unlink()
        except FileNotFoundError:
            pass

    def unread(self, kind: int) -> bool:
        """Written since the last dump or upload read it (in this boot)."""
        return self.read_upto[kind] != self.written[kind]

    def mark_read(self, kind: int) -> None:
        self.read_upto[kind] = self.written[kind]

    def lua_error(self, text: str) -> None:
        """The VM ended with a Lua error: its message goes to the system log."""
        self.save(SYS, text.encode("utf-8", "replace"))
