"""The cellular network's short-message side, as the bench sees it (``dev.sms``).

A test delivers SMS to the device (``deliver``: the network splits a long text into the
concatenated parts it would carry, each an SMS-DELIVER PDU, arriving a little apart) and reads
every SMS the device sent (``sent``: decoded from the SMS-SUBMIT PDUs the firmware built, so
the encoding, the split and the number rules are what a phone would receive).

The network holds an SMS for a device that is off, asleep or not registered and hands it over
once the device registers again (store and forward; ``hold_offline=False`` drops it instead:
docs/defaults.md). The running boot's sms binding attaches itself as the receiver
(:meth:`attach`); registration is the SIM being present, the cellular link up and the boot's
bearer ready.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ..duration import Duration, parse_duration
from ..sms_pdu import DeliverPart, deliver_pdu, read_submit, split_for_delivery
from .network import LWIP_GP

if TYPE_CHECKING:
    from ..device import Device
    from ..vm import Boot

# Submit results (the modem's error codes, luat_sms.h) the bench reports on a failed send.
SEND_OK = 0
USIM_NOT_INSERTED = 310
NO_NETWORK_SERVICE = 331
UNKNOWN_ERROR = 500

CHINA_TZ_QUARTERS = 32  # +08:00 in the SMS timestamp's quarter hours


@dataclass
class SentSms:
    """One message the device sent, as the network received it."""

    to: str  # ``+<digits>`` for an international number, else the digits
    text: str
    ms: int  # virtual time the last part was accepted
    pdus: list[bytes]
    encoding: str  # "gsm7" or "ucs2"

    @property
    def parts(self) -> int:
        return len(self.pdus)


@dataclass
class Incoming:
    """One part on its way to the device."""

    sender: str
    pdu: bytes
    label: str


@dataclass
class SmsNetwork:
    """``dev.sms``: deliver SMS to the device, read what it sent, choose how sending fails."""

    device: Device
    sim_present: bool = True
    # What the network does with an SMS for a device that cannot take it (off, asleep, not
    # registered): hold it and deliver once registered (UNCONFIRMED default), or drop it.
    hold_offline: bool = True
    submit_ms: int = 2000  # a part, from submission to the network's acknowledgement (ours)
    fail_ms: int = 1000  # a submission the modem cannot make, to its failure result (ours)
    part_gap_ms: int = 500  # between the parts of a long SMS the network delivers (ours)
    held_ms: int = 3000  # after registration, until held SMS arrive (ours)
    # An international sender reaches the script as "+<digits>" (UNCONFIRMED; False: digits).
    plus_international: bool = True
    report_ms: int = 5000  # a part's acceptance to its status report, when asked for (ours)
    report_status: int = 0  # TP-Status in the reports (0: delivered)
    # Destination -> RP-Cause: the network refuses messages to these numbers (1: unassigned).
    refusals: dict[str, int] = field(default_factory=dict)
    sent: list[SentSms] = field(default_factory=list)
    held: list[Incoming] = field(default_factory=list)
    dropped: list[Incoming] = field(default_factory=list)
    _ref: int = 0
    _receiver: tuple[Boot, Callable[[bytes], bool]] | None = None

    # -- for tests -------------------------------------------------------------------------------

    def deliver(self, sender: str, text: str, at: Duration | None = None, *,
                timestamp: datetime | None = None, order: Sequence[int] | None = None,
                tz_quarters: int = CHINA_TZ_QUARTERS) -> int:
        """An SMS from ``sender`` (``+8613800138000``, ``10086``, or a name) reaches the
        network ``at`` from now; its parts go to the device ``part_gap_ms`` apart, in ``order``
        (1-based part numbers, default 1..n; a part left out is lost on the way). ``timestamp`` is the service centre's time stamp
        (default: the device's wall clock then). Returns the number of parts."""
        if not sender:
            raise ValueError("deliver: sender must not be empty")
        if not text:
            raise ValueError("deliver: text must not be empty")
        dcs, chunks = split_for_delivery(text)
        n = len(chunks)
        seq = list(order) if order is not None else list(range(1, n + 1))
        if len(set(seq)) != len(seq) or not set(seq) <= set(range(1, n + 1)):
            raise ValueError(f"deliver: order {seq} must name parts of 1..{n}, each at most once")
        self._ref = (self._ref + 1) % 256
        ref = self._ref
        delay = parse_duration(at) if at is not None else 0  # a bad duration fails here

        due = self.device.current_ms() + delay
        stamp = timestamp or self._wall_clock(due)
        local = stamp.astimezone(UTC) + timedelta(minutes=15 * tz_quarters) \
            if stamp.tzinfo else stamp
        t = (local.year % 100, local.month, local.day, local.hour, local.minute, local.second)
        for i, s in enumerate(seq):
            part = DeliverPart(sender, chunks[s - 1], dcs, t, tz_quarters, ref if n > 1 else 0,
                               n, s)
            label = f"sms from {sender} part {s}/{n}"
            inc = Incoming(sender, deliver_pdu(part), label)
            self.device.schedule_at(due + i * self.part_gap_ms,
                                    lambda inc=inc: self._arrive(inc), label)  # type: ignore[misc]
        return n

    def refuse(self, to: str, rp_cause: int = 1) -> None:
        """The network rejects messages to ``to`` (as the device addresses it: ``+86...`` for an
        international number) with ``rp_cause`` (3GPP TS 24.011: 1 unassigned number, 50
        service not subscribed)."""
        self.refusals[to] = rp_cause

    def remove_sim(self) -> None:
        self.sim_present = False

    def insert_sim(self) -> None:
        """A SIM again: the modem registers, and SMS the network held arrive ``held_ms`` later
        (as after any registration), if a boot is up with its bearer ready."""
        self.sim_present = True
        if self.held:
            self.device.schedule(0, self._registered_again, "sms: SIM inserted")

    def _registered_again(self) -> None:
        rx = self._receiver
        if rx is not None and rx[0] is self.device.boot and self.registered(rx[0]):
            self.registered_now(rx[0])

    # -- the network's side ----------------------------------------------------------------------

    def clock_text(self, ms: int, tz_quarters: int = CHINA_TZ_QUARTERS) -> str:
        """The network's local time at ``ms`` as a status report carries it."""
        t = self._wall_clock(ms) + timedelta(minutes=15 * tz_quarters)
        return t.strftime("%y-%m-%d %H:%M:%S")

    def _wall_clock(self, ms: int) -> datetime:
        return datetime.fromtimestamp(self.device.epoch_at_power_on + ms // 1000, UTC)

    def _arrive(self, inc: Incoming) -> None:
        if self._take(inc):
            return
        if self.hold_offline:
            self.held.append(inc)
            self.device.trace_event("sms_held", sender=inc.sender)
        else:
            self.dropped.append(inc)
            self.device.trace_event("sms_dropped", sender=inc.sender)

    def _take(self, inc: Incoming) -> bool:
        rx = self._receiver
        if rx is None or rx[0] is not self.device.boot or not self.registered(rx[0]):
            return False
        self.device.trace_event("sms_in", sender=inc.sender)
        return rx[1](inc.pdu)

    def registered(self, boot: Boot) -> bool:
        """The device can use SMS: SIM present, cellular link up, bearer ready."""
        net = self.device.platform.net
        return self.sim_present and net.link_is_up(LWIP_GP) and \
            net.boot_net(boot).is_ready(LWIP_GP)

    # -- the binding's side ----------------------------------------------------------------------

    def attach(self, boot: Boot, receiver: Callable[[bytes], bool]) -> None:
        """The boot's firmware takes incoming PDUs (``receiver`` returns False to refuse)."""
        self._receiver = (boot, receiver)

    def registered_now(self, boot: Boot) -> None:
        """The boot just registered: SMS the network held arrive ``held_ms`` later, in order."""
        if not self.held:
            return

        def flush() -> None:
            while self.held and self._take(self.held[0]):
                self.held.pop(0)
        boot.post(self.held_ms, flush)

    def submit_result(self, boot: Boot, to: str) -> tuple[int, int]:
        """What the modem reports for a submission to ``to`` now: (error code, RP-Cause)."""
        if not self.sim_present:
            return USIM_NOT_INSERTED, 0
        if not self.registered(boot):
            return NO_NETWORK_SERVICE, 0
        if to in self.refusals:
            return UNKNOWN_ERROR, self.refusals[to]
        return SEND_OK, 0

    def received(self, pdus: list[bytes], ms: int) -> None:
        """The network accepted every part of a message: what the recipient reads."""
        parts = [read_submit(p) for p in pdus]
        first = parts[0]
        to = ("+" if first.toa == 0x91 else "") + first.number
        text = "".join(p.text for p in sorted(parts, key=lambda p: p.seq))
        self.sent.append(SentSms(to, text, ms, list(pdus),
                                 "gsm7" if first.dcs & 0x0C == 0 else "ucs2"))
        self.device.trace_event("sms_out", to=to, parts=len(pdus))
