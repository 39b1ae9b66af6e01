"""The device's FOTA area: where a downloaded upgrade package waits for the next boot.

On a real module the package is written to a flash partition as it arrives and the boot
loader copies it over the script partition (or the firmware) at the next reset. What matters
to a user is the guarantee around that: a power cut at any byte never bricks the device. So
a *staged* package here is either complete and valid or absent: bytes stream into
``partial.bin`` (validated as they arrive, so a bad package is refused at the first bad byte),
and only ``end(True)`` turns them into ``staged.bin`` through a temp file, fsync and rename.
Whatever is half-written when the next boot starts is thrown away; a staged package is
validated once more and applied, or refused with the old scripts kept.

``area_for(boot)`` is the one interface the ``fota`` module and ``http.request``'s fota mode
share (begin / write / is_done / end), as the firmware's platform layer would be. The area
itself is a device part (``dev.fota``), created with the Device.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luatos_common.fsutil import fsync_dir
from luatos_common.packages import (
    KIND_AIR8101,
    KIND_FULL,
    KIND_LFTA,
    Package,
    PackageError,
    StreamValidator,
    detect_and_validate,
)

if TYPE_CHECKING:
    from ..device import Device
    from ..vm import Boot

PARTIAL = "partial.bin"
STAGED = "staged.bin"
STAGING_TMP = "staged.tmp"
CORE_FILE = "core.json"

# write() results (what the platform write returns; fota.run maps them)
WRITE_MORE = 1  # accepted, the package is not complete yet
WRITE_COMPLETE = 0  # accepted, and the package is complete and valid
WRITE_REFUSED = -1  # refused: not a package this device takes, corrupt, or too long
WRITE_NOT_READY = -2  # write without a successful begin()

# Air8101 "type" in the accept log line; the reference knows only type=1 (the TAUL script
# package). LFTA carries its own type field [4] (1 = script); luatos-full is this project's own.
_TYPE_NUMBERS = {KIND_AIR8101: 1, KIND_LFTA: 1, KIND_FULL: 2}

# Progress trace events per download: begin, these fractions, end. Keeps the trace readable.
_PROGRESS_MARKS = (0.25, 0.5, 0.75)


class FotaArea:
    """One device's FOTA partition (survives reboots: state_dir/fota)."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.dir = Path(device.state_dir) / "fota"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._validator: StreamValidator | None = None
        self._partial: Any = None  # open file for partial.bin
        self._package: Package | None = None
        self._error: PackageError | None = None
        self._begun_ms = 0
        self._written = 0
        self._marks_done = 0
        self._announced = False
        self._done_logged = False
        self.boot: Boot | None = None
        # Test hooks: callbacks after each accepted write(bytes_total); a power cut at N bytes.
        self.on_write: list[Callable[[int], None]] = []
        self.cut_power_at: int | None = None
        self.power_was_cut = False
        self._load_core_version()
        self._staged_cache: Package | None = None  # what this process validated and staged

    # -- state ------------------------------------------------------------------------------------

    def bind(self, boot: Boot) -> FotaArea:
        """Serve ``boot``: a download does not survive the boot it started in."""
        if self.boot is not boot:
            self.boot = boot
            boot.closers.append(self._close_partial)
        return self

    def _load_core_version(self) -> None:
        """A full package applied earlier changed the core version the banner reports."""
        core_file = self.dir / CORE_FILE
        if core_file.is_file():
            try:
                core = json.loads(core_file.read_text())["core"]
                self.device.profile = self.device.profile.with_overrides(core=str(core))
            except (ValueError, KeyError, OSError):
                pass

    @property
    def in_progress(self) -> bool:
        """A download has begun and was neither ended nor refused."""
        return self._validator is not None and self._error is None and self._package is None

    @property
    def bytes_written(self) -> int:
        return self._written

    @property
    def staged_path(self) -> Path:
        return self.dir / STAGED

    def has_staged(self) -> bool:
        return self.staged_path.is_file()

    @property
    def error(self) -> PackageError | None:
        return self._error

    def _trace(self, kind: str, **detail: Any) -> None:
        self.device.trace_event(kind, **detail)

    def _sim(self, text: str) -> None:
        self.device.emit_sim(text, self.device.current_ms())

    def _log_c(self, text: str) -> None:
        if self.device.profile.model.startswith("Air8101"):
            ms = self.boot.now if self.boot is not None else None
            self.device.emit_c("I", "fota", text, ms)

    def _close_partial(self) -> None:
        if self._partial is not None:
            try:
                self._partial.close()
            except OSError:
                pass
            self._partial = None

    # -- the platform interface -------------------------------------------------------------------

    def begin(self) -> bool:
        """fota.init / http fota mode on 200/206: start a fresh download, dropping any partial."""
        self._close_partial()
        self._validator = StreamValidator(kinds=self.device.profile.fota_formats)
        self._package = None
        self._error = None
        self._written = 0
        self._marks_done = 0
        self._announced = False
        self._done_logged = False
        self._begun_ms = self.device.current_ms()
        self._partial = open(self.dir / PARTIAL, "wb")  # noqa: SIM115 - lives across writes
        self._trace("fota_begin", formats=list(self.device.profile.fota_formats))
        return True

    def write(self, chunk: bytes) -> int:
        """Accept the next bytes: 1 more wanted, 0 complete and valid, <0 refused."""
        v = self._validator
        if v is None:
            return WRITE_NOT_READY
        if self._error is not None:
            return WRITE_REFUSED
        if self._package is not None and not chunk:
            return WRITE_COMPLETE
        if self._package is not None:
            self._refuse(PackageError("package", "size", self._written,
                                      f"{self._written} bytes (complete)",
                                      f"{len(chunk)} more bytes", "more data than announced"))
            return WRITE_REFUSED
        if self.cut_power_at is not None and self._written + len(chunk) >= self.cut_power_at:
            self._cut_power(chunk[:self.cut_power_at - self._written])
            return WRITE_REFUSED
        try:
            v.feed(chunk)
        except PackageError as e:
            self._refuse(e)
            return WRITE_REFUSED
        if self._partial is not None:
            self._partial.write(chunk)
        self._written += len(chunk)
        if not self._announced and v.expected_size is not None and v.kind is not None:
            self._announced = True
            self._log_c(f"升级包类型: type={_TYPE_NUMBERS.get(v.kind, 1)}, "
                        f"expected_len={v.expected_size}")
        self._progress_marks(v.expected_size)
        for fn in list(self.on_write):
            fn(self._written)
        if v.expected_size is not None and self._written >= v.expected_size:
            try:
                self._package = v.finish()
            except PackageError as e:
                self._refuse(e)
                return WRITE_REFUSED
            if self._partial is not None:
                self._partial.flush()
            self._log_flash_times()
            self._trace("fota_written", bytes=self._written, package=self._package.kind)
            return WRITE_COMPLETE
        return WRITE_MORE

    def is_done(self) -> int:
        """>0 busy (more bytes wanted), 0 done and valid, <0 refused or never begun."""
        if self._validator is None or self._error is not None:
            return -1
        if self._package is None:
            return 1
        if not self._done_logged:
            self._done_logged = True
            self._log_c(f"fota done, write {self._written} bytes")
        return 0

    def end(self, ok: bool) -> bool:
        """end(True) stages the finished package for the next boot; end(False) discards."""
        if not ok:
            was = self._validator is not None
            self._reset()
            self._trace("fota_end", ok=False, discarded=was)
            return True
        if self._package is None or self._error is not None:
            self._trace("fota_end", ok=True, staged=False,
                        reason=str(self._error) if self._error else "package not complete")
            return False
        self._close_partial()
        self._stage()
        pkg = self._package
        self._staged_cache = pkg
        self._reset()
        self._trace("fota_end", ok=True, staged=True)
        self._trace("fota_staged", package=pkg.kind, size=pkg.size, sha256=pkg.sha256,
                    core=pkg.core_version)
        self._sim(f"fota: {pkg.kind} package staged ({pkg.size} bytes, sha256 "
                             f"{pkg.sha256[:12]}…); it is applied at the next boot")
        return True

    # -- internals --------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._close_partial()
        self._validator = None
        self._package = None
        self._error = None
        try:
            (self.dir / PARTIAL).unlink(missing_ok=True)
        except OSError:
            pass

    def _refuse(self, e: PackageError) -> None:
        self._error = e
        self._close_partial()
        self._sim(f"fota: package refused after {self._written} bytes: {e}")
        self._trace("fota_refused", stage="download", bytes=self._written, error=str(e))

    def _progress_marks(self, expected: int | None) -> None:
        if not expected:
            return
        crossed = False
        while (self._marks_done < len(_PROGRESS_MARKS)
               and self._written >= expected * _PROGRESS_MARKS[self._marks_done]):
            self._marks_done += 1
            crossed = True
        if crossed and self._written < expected:
            self._trace("fota_progress", bytes=self._written, total=expected)

    def _log_flash_times(self) -> None:
        # Figures scaled from the Air8101 log (26056 bytes: erase 307 ms, write 98 ms).
        n = self._written
        erase = math.ceil(n / 4096) * 44
        write = max(1, n * 98 // 26056)
        now = self.device.current_ms()
        total = erase + write + max(0, now - self._begun_ms)
        self._log_c(f"erase time used {erase}ms")
        self._log_c(f"write time used {write}ms")
        self._log_c(f"FOTA progress: {n} bytes written , total {total}ms")

    def _stage(self) -> None:
        """Make the package durable, atomically: temp file, fsync, rename, fsync the folder."""
        src = self.dir / PARTIAL
        tmp = self.dir / STAGING_TMP
        with open(src, "rb") as f_in, open(tmp, "wb") as f_out:
            while True:
                block = f_in.read(1 << 20)
                if not block:
                    break
                f_out.write(block)
            f_out.flush()
            os.fsync(f_out.fileno())
        os.replace(tmp, self.staged_path)
        fsync_dir(self.dir)
        src.unlink(missing_ok=True)

    def _cut_power(self, head: bytes) -> None:
        """Test hook: the power fails after ``cut_power_at`` bytes reached the flash."""
        if self._partial is not None:
            self._partial.write(head)
            self._partial.flush()
        self._written += len(head)
        self._close_partial()
        self.power_was_cut = True
        self.cut_power_at = None
        self._trace("power_cut", bytes=self._written)
        self._sim(f"power cut after {self._written} bytes of the FOTA download")
        self.device.power_off()

    # -- boot time ----------------------------------------------------------------------------------

    def apply_at_boot(self, reason: str) -> None:
        """Before a boot's VM starts: drop half-written data, apply a staged package."""
        self._close_partial()
        self._validator = None
        self._package = None
        self._error = None
        for name in (PARTIAL, STAGING_TMP):
            p = self.dir / name
            if p.exists():
                p.unlink()
                self._trace("fota_discarded", file=name, reason=reason)
        if not self.has_staged():
            return
        data = self.staged_path.read_bytes()
        cached, self._staged_cache = self._staged_cache, None
        try:
            # Unchanged on disk since we validated it (same SHA-256): skip the second parse.
            if cached is not None and hashlib.sha256(data).hexdigest() == cached.sha256:
                pkg = cached
            else:
                pkg = detect_and_validate(data)
            if pkg.kind not in self.device.profile.fota_formats:
                raise PackageError(f"{pkg.kind} packages are not accepted by a "
                                   f"{self.device.profile.model}")
            if not pkg.files:
                raise PackageError(f"{pkg.kind} package holds no script image")
        except PackageError as e:
            self.staged_path.unlink()
            fsync_dir(self.dir)
            self._sim(f"fota: staged package refused at boot, old scripts kept: {e}")
            self._trace("fota_refused", stage="boot", error=str(e))
            return
        self.device.flash(pkg.files)
        if pkg.core_version:
            self.device.profile = self.device.profile.with_overrides(core=pkg.core_version)
            (self.dir / CORE_FILE).write_text(json.dumps({"core": pkg.core_version}))
        self.staged_path.unlink()
        fsync_dir(self.dir)
        self._sim(
            f"fota: applied {pkg.kind} package at boot ({reason}): {len(pkg.files)} files"
            + (f", core {pkg.core_version}" if pkg.core_version else ""))
        self._trace("fota_applied", package=pkg.kind, size=pkg.size, sha256=pkg.sha256,
                    core=pkg.core_version, files=sorted(pkg.files))


def area_for(boot: Boot) -> FotaArea:
    """The FOTA area of the device this boot runs on, bound to that boot."""
    return boot.platform.fota.bind(boot)
