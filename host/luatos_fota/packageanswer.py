"""A package answer, the one way both device paths send a package (check-in and ``/dl/``).

Device-facing package answers (behaviour.md §11.4): 200 with the whole package (Content-Length
always, ``application/octet-stream``, ``Accept-Ranges``, strong ``ETag: "<sha256>"``,
``Repr-Digest``), Range -> 206/416. Never a redirect.

What counts as a serve (loop guard, ``release stats``): a package answer is counted only once
the package is open (a failed read is a 503 and not a serve); a Range from byte N>0 continues a
counted download and is a new serve only if none was counted in the window; HEAD gets what GET
would get (including code 40) but records nothing. A serve whose client hung up before its bytes
were written keeps only what was sent (``serve_aborted`` in the audit).

The steps, in this order for every package answer: plan the Range -> :func:`serve_mode` ->
count (the caller's rule: a check-in counts against the device's release, a ``/dl/`` URL naming
a device counts against that device's release with this package) -> send -> audit (the
caller's event) -> not delivered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.types import Message, Scope, Send

from .edge import DeviceEdge
from .httpio import RangePlan, header, plan_range, send_package
from .service import Outcome, Query


def serve_mode(plan: RangePlan, head: bool) -> str:
    """What a package answer is for the loop guard: ``full`` (a 200, or a Range from byte 0:
    a fresh download), ``continuation`` (a Range from N>0) or ``head`` (HEAD, 416: nothing
    sent, nothing recorded)."""
    if head or plan.status == 416:
        return "head"
    if plan.status == 206 and plan.start > 0:
        return "continuation"
    return "full"


class CountingSend:
    """An ASGI ``send`` that counts the body bytes handed over while the client was still
    connected (uvicorn drops what is sent after the connection went: see server.Delivery)."""

    def __init__(self, send: Send, scope: Scope) -> None:
        self._send = send
        self._delivery = scope.get("luatos.delivery")
        self.body_bytes = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.body" and not self.lost:
            self.body_bytes += len(message.get("body", b""))
        await self._send(message)

    @property
    def lost(self) -> bool:
        return bool(self._delivery is not None and self._delivery.lost)

    def lost_before(self, planned: int) -> bool:
        """The client went before ``planned`` body bytes were handed over."""
        return self.lost and self.body_bytes < planned


@dataclass(frozen=True)
class Sent:
    """A package answer that went out, as the caller's audit records it."""

    status: int
    mode: str  # serve_mode
    nbytes: int  # what this answer planned to send
    delivered: bool  # False: the client went before nbytes were handed over
    counted: Outcome | None  # the counted serve; None when this answer counts nothing


# (mode, nbytes) -> the counted serve, a refusal (not .serve), or None when nothing is counted
CountServe = Callable[[str, int], Awaitable[Outcome | None]]
AuditSent = Callable[[Sent], None]


def release_headers(out: Outcome) -> list[tuple[bytes, bytes]]:
    """What a check-in's package answer says about the release (and the serve's ``fota_sn``)."""
    assert out.release is not None
    hdrs = [(b"x-fota-release", str(out.release.id).encode()), (b"x-fota-version", str(out.target).encode())]
    if out.fota_sn:
        hdrs.append((b"x-fota-sn", out.fota_sn.encode()))
    return hdrs


async def answer_package(edge: DeviceEdge, scope: Scope, send: Send, data: bytes, sha256: str, q: Query, *,
                         head: bool, count: CountServe, audit: AuditSent, tell_release: bool = False,
                         cache: bytes = b"no-store") -> Outcome | None:
    """Send ``data`` as a package answer (see the module docstring). Returns the refusal when
    counting refused the serve (a loop ban, a ban meanwhile: nothing was sent, the caller
    answers it), else None."""
    plan = plan_range(header(scope, b"range"), header(scope, b"if-range"), f'"{sha256}"', len(data))
    mode = serve_mode(plan, head)
    nbytes = plan.end - plan.start + 1 if plan.status == 206 else len(data)
    out = await count(mode, nbytes)
    if out is not None and not out.serve:
        return out
    extra = release_headers(out) if tell_release and out is not None else None
    counted = CountingSend(send, scope)
    status = await send_package(counted, scope, data, sha256, extra, head=head, cache=cache)
    delivered = head or not counted.lost_before(nbytes)
    audit(Sent(status, mode, nbytes, delivered, out))
    if out is not None and not delivered and mode != "head":
        await edge.offload(edge.service.serve_not_delivered, out, q, counted.body_bytes, nbytes)
    return None
