"""The air around the device's BLE radio: simulated peers a test drives, and the device side's
GATT database, advertising and scanning state.

A peer is a phone (central) that scans, connects, writes, reads and subscribes to the device's
GATT server, or a peripheral that advertises and has its own GATT server for the device's
central role. Peer actions are scheduled on the device's virtual timeline (``at`` is virtual
time from now); each returns a :class:`BleOp` whose ``done``/``error``/``value`` are filled
when it runs, as a phone app's callback would be:

    phone = dev.ble.peer("phone")
    phone.connect(at="2s")
    op = phone.write("FA00", "EA02", b"hello", at="2.1s")
    dev.run_for("3s"); assert op.ok

A write to a characteristic the device's database does not have, or one without the WRITE
property, is answered by the stack with an ATT error (the script sees nothing); the emulator
names it in a note.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..duration import Duration, parse_duration

if TYPE_CHECKING:
    from ..device import Device

# Characteristic properties (the firmware's ble.READ ... bit values).
READ, WRITE, IND, NOTIFY, WRITE_CMD = 0x08, 0x10, 0x20, 0x40, 0x80
# ATT error codes a peer sees.
ATT_INVALID_HANDLE = 0x01
ATT_READ_NOT_PERMITTED = 0x02
ATT_WRITE_NOT_PERMITTED = 0x03
ATT_INVALID_LENGTH = 0x0D
ATT_NOT_FOUND = 0x0A
REMOTE_USER_TERMINATED = 0x13
LOCAL_HOST_TERMINATED = 0x16


def uuid_bytes(uuid: str | bytes) -> bytes:
    """"FA00" or b"\\xfa\\x00" -> b"\\xfa\\x00" (how the firmware's tables carry UUIDs)."""
    if isinstance(uuid, bytes):
        return uuid
    return bytes.fromhex(uuid.replace("-", ""))


@dataclass
class Characteristic:
    uuid: bytes
    properties: int
    handle: int
    value: bytes = b""
    max_size: int = 256
    subscribed: bool = False  # the connected central enabled notifications (CCCD)


@dataclass
class Service:
    uuid: bytes
    characteristics: list[Characteristic] = field(default_factory=list)

    def find(self, uuid: bytes) -> Characteristic | None:
        return next((c for c in self.characteristics if c.uuid == uuid), None)


def build_gatt(services: list[tuple[bytes, list[tuple[bytes, int, bytes, int]]]]) -> list[Service]:
    """Services with attribute handles as a stack assigns them: service declaration, then per
    characteristic a declaration and a value handle, plus a CCCD when it can notify."""
    out = []
    handle = 1
    for suuid, chars in services:
        svc = Service(suuid)
        handle += 1
        for cuuid, props, value, max_size in chars:
            handle += 1  # characteristic declaration
            svc.characteristics.append(Characteristic(cuuid, props, handle, value, max_size))
            handle += 1
            if props & (NOTIFY | IND):
                handle += 1  # CCCD
        out.append(svc)
    return out


@dataclass
class BleOp:
    """One peer action: filled in when it runs on the timeline."""

    kind: str
    done: bool = False
    error: str | None = None
    att_error: int | None = None
    value: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.done and self.error is None


@dataclass
class Advert:
    addr: bytes
    addr_type: int
    rssi: int
    data: bytes
    name: str


class BleHost(Protocol):
    """What the running boot's ble module offers the air (one per boot)."""

    def peer_connected(self, peer: Peer) -> None: ...
    def peer_disconnected(self, peer: Peer, reason: int) -> None: ...
    def peer_wrote(self, peer: Peer, svc: Service, ch: Characteristic, data: bytes) -> None: ...
    def peer_read(self, peer: Peer, svc: Service, ch: Characteristic) -> None: ...
    def peer_notified(self, peer: Peer, svc: bytes, ch: bytes, data: bytes) -> None: ...
    def peer_advertised(self, peer: Peer) -> None: ...


@dataclass
class Peer:
    """A simulated BLE device near ours (see the module docstring)."""

    radio: BleRadio
    name: str
    addr: bytes
    rssi: int = -55
    addr_type: int = 0
    # Peripheral role (for the device's central): what it advertises and serves.
    advertising: bool = False
    adv_data: bytes = b""
    gatt: list[Service] = field(default_factory=list)
    # What reached this peer.
    notifications: list[tuple[int, bytes, bytes, bytes]] = field(default_factory=list)
    received: list[tuple[int, bytes, bytes, bytes]] = field(default_factory=list)
    connected: bool = False

    # -- central role (a phone) ---------------------------------------------------------------

    def scan(self) -> list[Advert]:
        """What the device advertises right now (empty when it does not)."""
        return self.radio.device_adverts()

    def _later(self, at: Duration, op: BleOp, action: Callable[[BleOp], None]) -> BleOp:
        def run() -> None:
            op.done = True
            action(op)
        self.radio.device.schedule(at, run, f"ble {self.name} {op.kind}")
        return op

    def connect(self, at: Duration = 0) -> BleOp:
        return self._later(at, BleOp("connect"), self.radio.connect_to_device(self))

    def disconnect(self, at: Duration = 0) -> BleOp:
        return self._later(at, BleOp("disconnect"), self.radio.disconnect(self))

    def write(self, service: str | bytes, characteristic: str | bytes, data: bytes,
              at: Duration = 0, response: bool = True) -> BleOp:
        """Write (with response, or a write command) to the device's characteristic."""
        return self._later(at, BleOp("write"), self.radio.write_to_device(
            self, uuid_bytes(service), uuid_bytes(characteristic), bytes(data), response))

    def read(self, service: str | bytes, characteristic: str | bytes,
             at: Duration = 0) -> BleOp:
        return self._later(at, BleOp("read"), self.radio.read_from_device(
            self, uuid_bytes(service), uuid_bytes(characteristic)))

    def subscribe(self, service: str | bytes, characteristic: str | bytes,
                  at: Duration = 0, enable: bool = True) -> BleOp:
        """Write the CCCD: the device's write_notify then reaches :attr:`notifications`."""
        return self._later(at, BleOp("subscribe"), self.radio.subscribe(
            self, uuid_bytes(service), uuid_bytes(characteristic), enable))

    def write_stream(self, service: str | bytes, characteristic: str | bytes, data: bytes,
                     chunk: int = 244, start: Duration = 0, interval: Duration = "8ms",
                     response: bool = True) -> list[BleOp]:
        """``data`` as consecutive writes of ``chunk`` bytes, one per ``interval``."""
        t0, dt = parse_duration(start), parse_duration(interval)
        return [self.write(service, characteristic, data[i:i + chunk], at=f"{t0 + k * dt}ms",
                           response=response)
                for k, i in enumerate(range(0, len(data), chunk))]

    # -- peripheral role ----------------------------------------------------------------------

    def serve(self, services: dict[str, dict[str, tuple[int, bytes]]],
              adv_data: bytes | None = None) -> Peer:
        """Advertise and serve ``{service: {characteristic: (properties, value)}}``."""
        self.gatt = build_gatt([(uuid_bytes(s), [(uuid_bytes(c), p, v, 256)
                                                 for c, (p, v) in chars.items()])
                                for s, chars in services.items()])
        name = self.name.encode()
        self.adv_data = adv_data if adv_data is not None else \
            b"\x02\x01\x06" + bytes([len(name) + 1, 0x09]) + name
        self.advertising = True
        return self

    def notify(self, service: str | bytes, characteristic: str | bytes, data: bytes,
               at: Duration = 0) -> BleOp:
        """As a peripheral: notify the connected device (if it enabled notifications)."""
        return self._later(at, BleOp("notify"), self.radio.notify_device(
            self, uuid_bytes(service), uuid_bytes(characteristic), bytes(data)))


@dataclass
class BleRadio:
    """``dev.ble``: the peers around the device and its radio's state in the running boot."""

    device: Device
    peers: list[Peer] = field(default_factory=list)
    host: BleHost | None = None
    # The device's own side (set by the ble module).
    name: str = ""
    advertising: bool = False
    adv_data: bytes = b""
    gatt: list[Service] = field(default_factory=list)
    scanning: bool = False
    connected: Peer | None = None
    central_of: Peer | None = None  # the peripheral the device connected to as a central
    att_errors: list[tuple[int, str, int]] = field(default_factory=list)  # (ms, peer, code)

    def peer(self, name: str = "phone", addr: str | bytes | None = None, rssi: int = -55
             ) -> Peer:
        n = len(self.peers) + 1
        raw = uuid_bytes(addr) if addr is not None else bytes([0xD0, 0x11, 0x22, 0x33, 0x44, n])
        p = Peer(self, name, raw, rssi)
        self.peers.append(p)
        return p

    # -- the device side (modules/ble.py) ------------------------------------------------------

    def attach_host(self, host: BleHost | None) -> None:
        """A boot's ble module takes the radio (None: the boot ended; links drop)."""
        self.host = host
        if host is None:
            for p in self.peers:
                p.connected = False
            self.connected = self.central_of = None
            self.advertising = self.scanning = False
            self.gatt = []

    def find(self, svc_uuid: bytes, ch_uuid: bytes) -> tuple[Service, Characteristic] | None:
        for svc in self.gatt:
            if svc.uuid == svc_uuid:
                ch = svc.find(ch_uuid)
                if ch is not None:
                    return svc, ch
        return None

    def device_adverts(self) -> list[Advert]:
        if not self.advertising or self.host is None:
            return []
        addr = self.device.profile.mac_bytes(2) or bytes(6)
        return [Advert(addr, 0, -40, self.adv_data, self.name)]

    def drop_central(self, reason: int) -> None:
        """The device ended its link to a central (ble_device:disconnect())."""
        peer = self.connected
        if peer is not None:
            peer.connected = False
            self.connected = None
            if self.host is not None:
                self.host.peer_disconnected(peer, reason)

    # -- peer actions (run on the timeline) -------------------------------------------------------

    def _note(self, text: str) -> None:
        self.device.emit_sim(f"ble: {text}")

    def _att(self, op: BleOp, peer: Peer, code: int, why: str) -> None:
        op.error, op.att_error = why, code
        self.att_errors.append((self.device.current_ms(), peer.name, code))
        self._note(f"{peer.name}: {why}; the stack answered ATT error {code:#04x} and the "
                   "script saw nothing")

    def connect_to_device(self, peer: Peer) -> Callable[[BleOp], None]:
        def run(op: BleOp) -> None:
            if self.host is None or not self.advertising:
                op.error = "the device is not advertising (connection attempt timed out)"
                return
            if self.connected is not None:
                op.error = "the device is already connected to another central"
                return
            self.advertising = False  # a connected peripheral stops advertising
            self.connected = peer
            peer.connected = True
            self.host.peer_connected(peer)
        return run

    def disconnect(self, peer: Peer) -> Callable[[BleOp], None]:
        def run(op: BleOp) -> None:
            if self.connected is peer:
                self.connected = None
                peer.connected = False
                for svc in self.gatt:
                    for ch in svc.characteristics:
                        ch.subscribed = False
                if self.host is not None:
                    self.host.peer_disconnected(peer, REMOTE_USER_TERMINATED)
            elif self.central_of is peer:
                self.central_of = None
                peer.connected = False
                if self.host is not None:
                    self.host.peer_disconnected(peer, REMOTE_USER_TERMINATED)
            else:
                op.error = "not connected"
        return run

    def _link_ok(self, op: BleOp, peer: Peer) -> bool:
        if self.connected is not peer or self.host is None:
            op.error = "not connected"
            return False
        return True

    def write_to_device(self, peer: Peer, svc_uuid: bytes, ch_uuid: bytes, data: bytes,
                        response: bool) -> Callable[[BleOp], None]:
        def run(op: BleOp) -> None:
            if not self._link_ok(op, peer):
                return
            found = self.find(svc_uuid, ch_uuid)
            if found is None:
                self._att(op, peer, ATT_NOT_FOUND, f"write to {svc_uuid.hex().upper()}/"
                          f"{ch_uuid.hex().upper()}, which the device's GATT database does "
                          "not have")
                return
            svc, ch = found
            if not ch.properties & (WRITE if response else (WRITE_CMD | WRITE)):
                self._att(op, peer, ATT_WRITE_NOT_PERMITTED,
                          f"write to {ch_uuid.hex().upper()}, which has no WRITE property")
                return
            if len(data) > ch.max_size:
                self._att(op, peer, ATT_INVALID_LENGTH,
                          f"write of {len(data)} bytes to {ch_uuid.hex().upper()} "
                          f"(max_size {ch.max_size})")
                return
            ch.value = data
            assert self.host is not None
            self.host.peer_wrote(peer, svc, ch, data)
        return run

    def read_from_device(self, peer: Peer, svc_uuid: bytes, ch_uuid: bytes
                         ) -> Callable[[BleOp], None]:
        def run(op: BleOp) -> None:
            if not self._link_ok(op, peer):
                return
            found = self.find(svc_uuid, ch_uuid)
            if found is None:
                self._att(op, peer, ATT_NOT_FOUND, f"read of {svc_uuid.hex().upper()}/"
                          f"{ch_uuid.hex().upper()}, which the GATT database does not have")
                return
            svc, ch = found
            if not ch.properties & READ:
                self._att(op, peer, ATT_READ_NOT_PERMITTED,
                          f"read of {ch_uuid.hex().upper()}, which has no READ property")
                return
            op.value = ch.value
            assert self.host is not None
            self.host.peer_read(peer, svc, ch)
        return run

    def subscribe(self, peer: Peer, svc_uuid: bytes, ch_uuid: bytes, enable: bool
                  ) -> Callable[[BleOp], None]:
        def run(op: BleOp) -> None:
            if not self._link_ok(op, peer):
                return
            found = self.find(svc_uuid, ch_uuid)
            if found is None or not found[1].properties & (NOTIFY | IND):
                self._att(op, peer, ATT_NOT_FOUND, f"subscribe to {ch_uuid.hex().upper()}, "
                          "which has no CCCD (no NOTIFY/INDICATE property)")
                return
            found[1].subscribed = enable
        return run

    def notify_device(self, peer: Peer, svc_uuid: bytes, ch_uuid: bytes, data: bytes
                      ) -> Callable[[BleOp], None]:
        def run(op: BleOp) -> None:
            if self.central_of is not peer or self.host is None:
                op.error = "not connected to the device"
                return
            for svc in peer.gatt:
                if svc.uuid == svc_uuid:
                    ch = svc.find(ch_uuid)
                    if ch is not None and ch.subscribed:
                        self.host.peer_notified(peer, svc_uuid, ch_uuid, data)
                        return
            op.error = "the device has not enabled notifications on it"
        return run
