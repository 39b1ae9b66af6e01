"""bluetooth / ble: the Air8101's BLE as its firmware exposes it, over the bench's air
(``dev.ble``, see :mod:`luatos_sim.platform.ble`).

``bluetooth.init()`` gives the ``BLUETOOTH*`` object and ``:ble(cb)`` the ``BLE*`` object whose
methods are the ``ble`` module's functions: GATT server (``gatt_create``, ``write_notify``,
``write_indicate``, ``write_value``, ``read_value``), advertising (``adv_create``,
``adv_start``, ``adv_stop``), and the central role (``scan_create``, ``scan_start``,
``scan_stop``, ``connect``, ``disconnect``, ``notify_enable``). Events reach
``cb(ble_device, event, param)`` from the event loop with the firmware's param tables.

The event numbers follow the firmware header's enum (``EVENT_READ_VALUE`` and
``EVENT_GATT_ITEM`` come after it in newer builds: their values are UNCONFIRMED, see
docs/defaults.md); scripts compare against the names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..platform.ble import (
    IND,
    LOCAL_HOST_TERMINATED,
    NOTIFY,
    READ,
    WRITE,
    WRITE_CMD,
    BleRadio,
    Characteristic,
    Peer,
    Service,
    build_gatt,
)

if TYPE_CHECKING:
    from ..vm import Boot

EVENTS = {
    "EVENT_NONE": 0, "EVENT_INIT": 1, "EVENT_DEINIT": 2, "EVENT_ADV_INIT": 3,
    "EVENT_ADV_START": 4, "EVENT_ADV_STOP": 5, "EVENT_ADV_DEINIT": 6, "EVENT_SCAN_INIT": 7,
    "EVENT_SCAN_START": 8, "EVENT_SCAN_STOP": 9, "EVENT_SCAN_DEINIT": 10,
    "EVENT_SCAN_REPORT": 11, "EVENT_CONN": 12, "EVENT_DISCONN": 13, "EVENT_GATT_DONE": 14,
    "EVENT_WRITE": 15, "EVENT_READ": 16, "EVENT_READ_VALUE": 17, "EVENT_GATT_ITEM": 18,
}
CONSTANTS: dict[str, Any] = {
    **EVENTS, "EVENT_WRITE_REQ": EVENTS["EVENT_WRITE"], "EVENT_READ_REQ": EVENTS["EVENT_READ"],
    "PUBLIC": 0, "RANDOM": 1, "RPA": 2, "NRPA": 3,
    "CHNL_37": 0x01, "CHNL_38": 0x02, "CHNL_39": 0x04, "CHNLS_ALL": 0x07,
    "READ": READ, "WRITE": WRITE, "IND": IND, "INDICATE": IND, "NOTIFY": NOTIFY,
    "WRITE_CMD": WRITE_CMD,
    "FLAGS": 0x01, "COMPLETE_LOCAL_NAME": 0x09, "SERVICE_DATA": 0x16,
    "MANUFACTURER_SPECIFIC_DATA": 0xFF,
}
CONNECT_MS = 30  # from ble_device:connect() to EVENT_CONN (a few connection intervals)
SCAN_REPORT_MS = 100  # how often each advertising peer is reported while scanning


class _Bluetooth:
    """``bluetooth.init()``'s object."""


@dataclass
class _Ble:
    """``bluetooth_device:ble(cb)``'s object."""

    cb: Any


def install(boot: Boot) -> None:
    radio: BleRadio = boot.platform.ble
    state: dict[str, Any] = {"ble": None, "scan_gen": 0, "scan_created": False}
    noted: set[str] = set()

    def note(key: str, text: str) -> None:
        if key not in noted:
            noted.add(key)
            boot.note(f"ble: {text}")

    def emit(event: str, param: Any = None) -> None:
        obj = state["ble"]
        if obj is None or obj.cb is None:
            return
        if param is None:
            boot.post(0, obj.cb, obj, EVENTS[event])
        else:
            boot.post(0, obj.cb, obj, EVENTS[event], param)

    def addr_of(peer: Peer) -> bytes:
        return peer.addr

    class Host:
        """The radio's way into this boot (BleHost)."""

        def peer_connected(self, peer: Peer) -> None:
            boot.trace("ble_conn", peer=peer.name, role="peripheral")
            emit("EVENT_CONN", boot.table(addr=addr_of(peer), addr_type=peer.addr_type))

        def peer_disconnected(self, peer: Peer, reason: int) -> None:
            boot.trace("ble_disconn", peer=peer.name, reason=reason)
            emit("EVENT_DISCONN", boot.table(reason=reason))

        def peer_wrote(self, peer: Peer, svc: Service, ch: Characteristic, data: bytes) -> None:
            emit("EVENT_WRITE", boot.table(handle=ch.handle, uuid_service=svc.uuid,
                                           uuid_characteristic=ch.uuid, data=data))

        def peer_read(self, peer: Peer, svc: Service, ch: Characteristic) -> None:
            emit("EVENT_READ", boot.table(handle=ch.handle, uuid_service=svc.uuid,
                                          uuid_characteristic=ch.uuid))

        def peer_notified(self, peer: Peer, svc: bytes, ch: bytes, data: bytes) -> None:
            emit("EVENT_READ_VALUE", boot.table(handle=0, uuid_service=svc,
                                                uuid_characteristic=ch, data=data))

        def peer_advertised(self, peer: Peer) -> None:
            pass

    radio.attach_host(Host())  # detached at boot: Platform.begin_boot
    boot.closers.append(lambda: radio.attach_host(None))

    def field(t: Any, key: str) -> Any:
        if t is None or boot.lua_type(t) != b"table":
            return None
        return t[key.encode()]

    def uuid_of(v: Any) -> bytes | None:
        if isinstance(v, bytes):
            return v
        if isinstance(v, int) and not isinstance(v, bool):
            return (v & 0xFFFF).to_bytes(2, "big")
        return None

    # -- bluetooth --------------------------------------------------------------------------

    def bt_init(*_: Any) -> Any:
        boot.trace("bluetooth_init")
        return _Bluetooth()

    def bt_ble(_bt: Any, cb: Any = None, *_: Any) -> Any:
        obj = _Ble(cb)
        state["ble"] = obj
        radio.name = f"LuatOS_{boot.profile.bsp}"
        return obj

    # -- advertising ------------------------------------------------------------------------

    def adv_create(_obj: Any = None, opts: Any = None, *_: Any) -> Any:
        if boot.lua_type(opts) != b"table":
            boot.log_c("E", "bt.ble", "error param")
            return ()
        data = bytearray()
        name: bytes | None = None
        items = field(opts, "adv_data")
        if isinstance(items, bytes):
            data += items
        elif items is not None:
            i = 1
            while items[i] is not None:
                item = items[i]
                kind, payload = item[1], item[2]
                if not isinstance(payload, bytes) or not isinstance(kind, int):
                    boot.log_c("E", "bt.ble", "error adv_data type")
                    return ()
                data += bytes([len(payload) + 1, kind & 0xFF]) + payload
                if kind == 0x09:
                    name = payload
                i += 1
        if len(data) > 31:
            note("advlen", f"advertising data is {len(data)} bytes; a legacy advertisement "
                 "carries 31, so scanners see it cut")
        radio.adv_data = bytes(data)
        radio.name = (name or f"LuatOS_{boot.profile.bsp}".encode()).decode("utf-8", "replace")
        return True

    def adv_start(*_: Any) -> bool:
        if radio.connected is not None:
            return False
        radio.advertising = True
        boot.trace("ble_adv_start", name=radio.name)
        emit("EVENT_ADV_START")
        return True

    def adv_stop(*_: Any) -> bool:
        was = radio.advertising
        radio.advertising = False
        if was:
            emit("EVENT_ADV_STOP")
        return True

    # -- GATT server --------------------------------------------------------------------------

    def gatt_create(_obj: Any = None, db: Any = None, *_: Any) -> Any:
        if boot.lua_type(db) != b"table":
            boot.log_c("E", "bt.ble", "error param")
            return ()
        suuid = uuid_of(db[1])
        if suuid is None:
            boot.log_c("E", "bt.ble", "error uuid type")
            return ()
        chars = []
        i = 2
        while db[i] is not None:
            entry = db[i]
            if boot.lua_type(entry) == b"table":
                cuuid = uuid_of(entry[1])
                if cuuid is None:
                    boot.log_c("E", "bt.ble", "error characteristics uuid type")
                    return ()
                props = entry[2] if isinstance(entry[2], int) else 0
                value = entry[3] if isinstance(entry[3], bytes) else b""
                max_size = entry[b"max_size"]
                chars.append((cuuid, props, value,
                              int(max_size) if isinstance(max_size, int | float) else 256))
            i += 1
        start = max([ch.handle for s in radio.gatt for ch in s.characteristics], default=0)
        services = build_gatt([(suuid, chars)])
        for svc in services:
            for ch in svc.characteristics:
                ch.handle += start + (1 if start else 0)
        radio.gatt.extend(services)
        boot.trace("ble_gatt", service=suuid.hex().upper(),
                           characteristics=[c[0].hex().upper() for c in chars])
        return True

    def target(opts: Any, fn: str) -> tuple[bytes, bytes] | None:
        s, c = uuid_of(field(opts, "uuid_service")), uuid_of(field(opts, "uuid_characteristic"))
        if s is None or c is None:
            boot.log_c("W", "bt.ble", "missing uuid_service / uuid_characteristic")
            boot.log_c("E", "bt.ble", "error param")
            return None
        return s, c

    def write_notify(_obj: Any = None, opts: Any = None, value: bytes = b"") -> Any:
        t = target(opts, "write_notify")
        if t is None:
            return ()
        found = radio.find(*t)
        if found is None:
            note(f"nf{t}", f"write_notify to {t[0].hex().upper()}/{t[1].hex().upper()}, which "
                 "the GATT database does not have")
            return False
        peer = radio.connected
        if peer is None:
            return False
        if not found[1].subscribed:
            note(f"nosub{t}", f"write_notify on {t[1].hex().upper()}: {peer.name} has not "
                 "enabled notifications, nothing was sent")
            return True
        peer.notifications.append((boot.now, t[0], t[1], value))
        return True

    def write_value(_obj: Any = None, opts: Any = None, value: bytes = b"") -> Any:
        t = target(opts, "write_value")
        if t is None:
            return ()
        if radio.central_of is not None:  # central: write the peer's characteristic
            radio.central_of.received.append((boot.now, t[0], t[1], value))
            return True
        found = radio.find(*t)
        if found is None:
            return False
        found[1].value = value
        return True

    def read_value(_obj: Any = None, opts: Any = None, *_: Any) -> Any:
        t = target(opts, "read_value")
        if t is None:
            return ()
        peer = radio.central_of
        if peer is not None:
            for svc in peer.gatt:
                ch = svc.find(t[1]) if svc.uuid == t[0] else None
                if ch is not None:
                    emit("EVENT_READ_VALUE", boot.table(handle=ch.handle, uuid_service=t[0],
                                                        uuid_characteristic=t[1],
                                                        data=ch.value))
                    return True
            boot.log_c("E", "bt.ble", "ble read value error")
            return ()
        found = radio.find(*t)
        if found is None:
            boot.log_c("E", "bt.ble", "ble read value error")
            return ()
        return found[1].value

    # -- central ------------------------------------------------------------------------------

    def scan_create(*_: Any) -> bool:
        state["scan_created"] = True
        return True

    def scan_tick(gen: int) -> None:
        if gen != state["scan_gen"] or not radio.scanning:
            return
        for peer in radio.peers:
            if peer.advertising and not peer.connected:
                emit("EVENT_SCAN_REPORT", boot.table(rssi=peer.rssi, addr_type=peer.addr_type,
                                                     adv_addr=peer.addr, data=peer.adv_data))
        boot.post(SCAN_REPORT_MS, scan_tick, gen)

    def scan_start(*_: Any) -> bool:
        radio.scanning = True
        state["scan_gen"] += 1
        emit("EVENT_SCAN_START")
        if not any(p.advertising for p in radio.peers):
            note("noadv", "scanning, but no peer on the bench advertises "
                 "(dev.ble.peer(...).serve(...)); no scan reports will come")
        boot.post(SCAN_REPORT_MS, scan_tick, state["scan_gen"])
        return True

    def scan_stop(*_: Any) -> bool:
        radio.scanning = False
        state["scan_gen"] += 1
        emit("EVENT_SCAN_STOP")
        return True

    def gatt_table(peer: Peer) -> Any:
        out = boot.lua.table()
        for i, svc in enumerate(peer.gatt, 1):
            entry = boot.lua.table()
            entry[1] = svc.uuid
            for k, ch in enumerate(svc.characteristics, 2):
                entry[k] = boot.table(ch.uuid, ch.properties)
            out[i] = entry
        return out

    def connected_to(peer: Peer) -> None:
        if not peer.advertising or radio.central_of is not None:
            return
        radio.central_of = peer
        peer.connected = True
        boot.trace("ble_conn", peer=peer.name, role="central")
        emit("EVENT_CONN", boot.table(addr=peer.addr, addr_type=peer.addr_type))
        emit("EVENT_GATT_DONE", gatt_table(peer))

    def connect(_obj: Any = None, addr: bytes = b"", addr_type: Any = 0) -> bool:
        peer = next((p for p in radio.peers if p.addr == addr), None)
        if peer is None or not peer.advertising:
            note(f"conn{addr!r}", f"connect to {addr.hex().upper()}: no advertising peer with "
                 "that address on the bench; the attempt never completes")
            return True
        boot.post(CONNECT_MS, connected_to, peer)
        return True

    def disconnect(*_: Any) -> bool:
        if radio.central_of is not None:
            peer = radio.central_of
            radio.central_of = None
            peer.connected = False
            emit("EVENT_DISCONN", boot.table(reason=LOCAL_HOST_TERMINATED))
            return True
        if radio.connected is not None:
            radio.drop_central(LOCAL_HOST_TERMINATED)
            return True
        return False

    def notify_enable(_obj: Any = None, opts: Any = None, enable: Any = True) -> Any:
        t = target(opts, "notify_enable")
        if t is None:
            return ()
        peer = radio.central_of
        if peer is None:
            return False
        for svc in peer.gatt:
            ch = svc.find(t[1]) if svc.uuid == t[0] else None
            if ch is not None:
                ch.subscribed = enable is not False
                return True
        return False

    functions: dict[str, Any] = {
        "adv_create": adv_create, "adv_start": adv_start, "adv_stop": adv_stop,
        "gatt_create": gatt_create, "write_notify": write_notify,
        "write_indicate": write_notify, "write_value": write_value, "read_value": read_value,
        "scan_create": scan_create, "scan_start": scan_start, "scan_stop": scan_stop,
        "connect": connect, "disconnect": disconnect, "notify_enable": notify_enable,
    }
    boot.objects.define(_Bluetooth, "BLUETOOTH*", methods={"ble": bt_ble})
    boot.objects.define(_Ble, "BLE*", methods=functions)
    boot.firmware_module("bluetooth", {"init": bt_init})
    boot.firmware_module("ble", functions, CONSTANTS)
