"""Where an http.request answer's body goes: one sink type for the three modes.

The device keeps a plain request's body in memory, writes a ``dst`` request's body to a file,
and feeds a ``fota`` request's body to the FOTA area; each mode has its own result codes for the
same events (a status, a chunk, the end, a broken connection, a lost link, the timeout). A
:class:`BodySink` holds one mode's answer to each event, so the exchange in ``http_mod`` runs
the same code for all three. Every method runs on the VM thread, in virtual time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..platform.http_transport import E_FILE, E_FOTA, E_STATE

if TYPE_CHECKING:
    from ..vm import Boot

# finish(code, text, body): end the exchange with a result (body None: the mode's default)
Finish = Callable[[int, str, Any], None]

DONE_POLL_MS = 100
DONE_POLL_MAX = 120


def fota_status_note(status: int) -> str:
    """Plain words for a fota-mode answer that is not 200/206: the device logs only -9 and
    libfota2's callback 4, which read like a failure even when nothing went wrong."""
    head = f"fota: the server answered HTTP {status}"
    if status == 304:
        head += " (Not Modified: no newer release for this device, i.e. up to date)"
    return (head + "; in fota mode http.request reports every answer other than 200/206 as "
            "-9, and libfota2 then calls back with 4")


class BodySink:
    """The plain mode: the body is kept and returned as a string."""

    mode = "plain"

    def __init__(self, finish: Finish) -> None:
        self.finish = finish
        self.body = bytearray()
        self.failed = False  # the sink ended the exchange: stop reading

    def wants_body(self, status: int) -> bool:
        """Whether the body of an answer with ``status`` is worth reading (asked from the
        transport's worker thread: plain Python state only)."""
        return True

    def begin(self, status: int) -> None:
        """The status line and headers arrived."""

    def write(self, chunk: bytes) -> None:
        self.body += chunk

    def complete(self, status: int, content_length: int | None, received: int) -> None:
        """The answer ended cleanly."""
        self.finish(status, "ok", bytes(self.body))

    def broken(self, text: str) -> None:
        """The connection broke after the headers."""
        self.finish(E_STATE, text, None)

    def lost(self, status: int, text: str) -> None:
        """The link under the exchange went away after the headers."""
        self.finish(E_STATE, text, None)

    def timed_out(self) -> None:
        """The exchange's timeout fired (the exchange reports -8 itself)."""

    def close(self, code: int) -> None:
        """The exchange ended with ``code``: release what the sink holds."""

    def release(self) -> None:
        """The boot ended under the exchange: let go of open handles, touch nothing else."""

    def _fail(self, code: int, text: str, body: Any = None) -> None:
        self.failed = True
        self.finish(code, text, body)


class FileSink(BodySink):
    """``dst``: the body goes to a file, which a failed or refused download does not leave."""

    mode = "dst"

    def __init__(self, finish: Finish, host_path: str) -> None:
        super().__init__(finish)
        self.path = host_path
        self.file: Any = None
        self.received = 0

    def begin(self, status: int) -> None:
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self.file = open(self.path, "wb")  # noqa: SIM115 - closed in close()/complete()
        except OSError as e:
            self._fail(E_FILE, f"dst: {e}")

    def write(self, chunk: bytes) -> None:
        if self.file is None:
            return
        try:
            self.file.write(chunk)
            self.received += len(chunk)
        except OSError as e:
            self._fail(E_FILE, f"dst write: {e}")

    def complete(self, status: int, content_length: int | None, received: int) -> None:
        self._close_file()
        if status > 299:
            _unlink(self.path)
        self.finish(status, "ok", received)

    def close(self, code: int) -> None:
        self._close_file()
        if code < 0 and code != E_FOTA:
            _unlink(self.path)

    def release(self) -> None:
        self._close_file()

    def _close_file(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class FotaSink(BodySink):
    """``fota``: a 200/206 body goes to the FOTA area, then the area is polled until done;
    any other status is -9 (with an empty body, or the buffered one when the network says so)."""

    mode = "fota"

    def __init__(self, finish: Finish, boot: Boot, buffered_error_body: bool) -> None:
        super().__init__(finish)
        from ..platform.fota_area import area_for
        self.boot = boot
        self.area = area_for(boot)
        self.begun = False
        self.accepted = False  # a 200/206 answer
        self.buffered_error_body = buffered_error_body
        self.received = 0

    def wants_body(self, status: int) -> bool:
        return status in (200, 206) or self.buffered_error_body

    def begin(self, status: int) -> None:
        self.accepted = status in (200, 206)
        if self.accepted:
            self.begun = bool(self.area.begin())
            if not self.begun:
                self._fail_fota()

    def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if not self.accepted:
            self.body += chunk  # a refused answer's body, kept for "buffered"
            return
        if self.area.write(chunk) < 0:
            self._fail_fota()

    def complete(self, status: int, content_length: int | None, received: int) -> None:
        if not self.accepted:
            self.area.end(False)  # every -9 ends the FOTA area with 0
            self.boot.note(fota_status_note(status))
            self.finish(E_FOTA, "status", bytes(self.body) if self.buffered_error_body else b"")
            return
        if content_length is not None and content_length > 0 and received < content_length:
            self.boot.log_c("E", "http", f"fota body incomplete, {received}/{content_length}")
            self._fail_fota()
            return
        self._poll_done(0)

    def _poll_done(self, n: int) -> None:
        if self.failed or not self.begun:
            return
        r = self.area.is_done()
        if r > 0:
            if n + 1 >= DONE_POLL_MAX:
                self._fail_fota()
                return
            self.boot.post(DONE_POLL_MS, self._poll_done, n + 1)
            return
        if r < 0 or not self.area.end(True):
            self._fail_fota()
            return
        self.begun = False
        self.finish(200, "fota ok", self.received)

    def broken(self, text: str) -> None:
        if self.begun:
            self._fail_fota()
        else:
            self.finish(E_STATE, text, None)

    def lost(self, status: int, text: str) -> None:
        if self.accepted:
            self._fail_fota()
        else:
            self.area.end(False)
            self.finish(E_FOTA, text, b"")

    def timed_out(self) -> None:
        if self.begun:
            self.area.end(False)
            self.begun = False

    def _fail_fota(self) -> None:
        if self.begun or self.accepted:
            self.area.end(False)
        self.begun = False
        self._fail(E_FOTA, "fota", self.received)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
