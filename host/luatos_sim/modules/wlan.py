"""wlan: the WiFi station (and soft AP) of the Air8101, over the simulated network.

Every SSID joins with any password unless the test declared the access point
(``dev.net.access_point``). Joining takes the timings of docs/behaviour.md §5.2 (UNCONFIRMED on the
device, configurable in ``dev.net.timings``): ``WLAN_STA_INC "CONNECTED" ssid bssid`` at
+1000 ms, ``IP_READY ip 2`` at +1100 ms. A refused password or a missing SSID publishes
``WLAN_STA_INC "DISCONNECTED" reason`` instead (202 auth failed, 201 no AP found: ESP-style
reason codes, an emulator choice).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..cfunc import lua_integer
from ..lua_text import lua_str, py_str
from ..platform.network import LWIP_AP, LWIP_STA, AccessPoint

if TYPE_CHECKING:
    from ..vm import Boot

REASON_NO_AP = 201
REASON_AUTH_FAIL = 202
REASON_LINK_LOST = 200  # beacon timeout: the link went down under us

CONSTANTS = {"NONE": 0, "STATION": 1, "AP": 2, "STATIONAP": 3, "APSTA": 3,  # APSTA: alias
             # smartconfig modes (luat_wlan.h LUAT_WLAN_SC_TYPE)
             "STOP": 0, "ESPTOUCH": 1, "AIRKISS": 2, "ESPTOUCH_AIRKISS": 3, "ESPTOUCH_V2": 4}


class WlanState:
    def __init__(self, boot: Boot) -> None:
        self.boot = boot
        self.net = boot.platform.net
        self.bn = self.net.boot_net(boot)
        self.inited = False
        self.mode = 1
        self.target: tuple[bytes, bytes, bytes] | None = None  # ssid, password, bssid wanted
        self.connected_ssid: bytes | None = None
        self.gen = 0
        self.scan_results: list[AccessPoint] = []
        self.bn.link_listeners.append(self.link_changed)

    # The join sequence; ``gen`` cancels a sequence overtaken by disconnect/connect.
    def start_join(self) -> None:
        self.gen += 1
        gen = self.gen
        t = self.net.timings
        if self.target is None or not self.net.link_is_up(LWIP_STA):
            return
        ssid, pwd, _ = self.target
        ap = self.net.access_points.get(py_str(ssid))
        if ap is not None and (not ap.exists or (ap.password is not None
                                                 and ap.password != py_str(pwd))):
            reason = REASON_NO_AP if not ap.exists else REASON_AUTH_FAIL
            self.boot.post(t.wifi_fail_ms, self._fail, gen, reason)
            return
        bssid = ap.bssid if ap is not None else AccessPoint.bssid
        self.boot.post(t.wifi_connected_ms, self._connected, gen, ssid, bssid)
        self.boot.post(t.wifi_ip_ms, self._ip, gen)

    def _fail(self, gen: int, reason: int) -> None:
        if gen != self.gen:
            return
        self.boot.trace("wlan", event="DISCONNECTED", reason=reason)
        self.boot.sys_pub(b"WLAN_STA_INC", b"DISCONNECTED", reason)

    def _connected(self, gen: int, ssid: bytes, bssid: bytes) -> None:
        if gen != self.gen:
            return
        self.connected_ssid = ssid
        self.boot.trace("wlan", event="CONNECTED", ssid=py_str(ssid))
        self.boot.sys_pub(b"WLAN_STA_INC", b"CONNECTED", ssid, bssid)

    def _ip(self, gen: int) -> None:
        if gen != self.gen:
            return
        self.bn.set_ready(LWIP_STA)

    def drop(self, reason: int | None) -> None:
        """Leave the network: IP_LOSE 2 (if it had an address), then DISCONNECTED."""
        self.gen += 1
        had = self.connected_ssid is not None or self.bn.is_ready(LWIP_STA)
        self.connected_ssid = None
        self.bn.set_lost(LWIP_STA)
        if had:
            if reason is None:
                self.boot.sys_pub(b"WLAN_STA_INC", b"DISCONNECTED")
            else:
                self.boot.sys_pub(b"WLAN_STA_INC", b"DISCONNECTED", reason)

    def link_changed(self, adapter: int, up: bool) -> None:
        if adapter != LWIP_STA:
            return
        if up:
            self.start_join()  # auto reconnect to the wanted network
        else:
            self.drop(REASON_LINK_LOST)


def install(boot: Boot) -> None:
    st = WlanState(boot)
    p = boot.profile

    def init(*_: Any) -> bool:
        st.inited = True
        return True

    def set_mode(mode: Any = 1, *_: Any) -> bool:
        st.mode = int(mode or 0)
        return True

    def connect(ssid: Any = None, pwd: Any = None, auto: Any = 1, bssid: Any = None) -> Any:
        if not ssid and not bssid:
            boot.log_c("E", "wlan", "ssid is emtry!!!")
            return ()  # nothing at all, like the firmware
        ssid_b = ssid if isinstance(ssid, bytes) else b""
        pwd_b = pwd if isinstance(pwd, bytes) else b""
        st.target = (ssid_b, pwd_b, bssid if isinstance(bssid, bytes) else b"")
        if st.connected_ssid is not None or st.bn.is_ready(LWIP_STA):
            st.drop(None)
        boot.trace("wlan", event="connect", ssid=py_str(ssid_b))
        st.start_join()
        return True

    def disconnect(*_: Any) -> tuple[()]:
        # Returns at once; the station leaves a moment later (IP_LOSE, DISCONNECTED), from
        # the WiFi task, like the firmware. A deep sleep requested right after wins the race.
        st.target = None
        st.gen += 1
        gen = st.gen

        def leave() -> None:
            if st.gen == gen:  # not overtaken by a new wlan.connect
                st.drop(None)
        boot.post(st.net.timings.wifi_disconnect_ms, leave)
        return ()

    def ready(*_: Any) -> bool:
        return st.bn.is_ready(LWIP_STA)

    def get_mac(tp: Any = 0, hexed: Any = True) -> bytes:
        offset = 1 if tp == 1 else 0
        if hexed is False:
            return p.mac_bytes(offset)
        return lua_str(p.mac_hex(offset))

    def get_ip(*_: Any) -> Any:
        addr = st.bn.ready.get(LWIP_STA)
        return lua_str(addr[0]) if addr else b"0.0.0.0"

    def scan(*_: Any) -> bool:
        st.scan_results = [ap for ap in st.net.access_points.values() if ap.exists]
        # The AP the station has joined is on the air even when the bench never declared it
        # (undeclared SSIDs join with any password): a scan while connected reports it too.
        if st.target is not None and st.bn.is_ready(LWIP_STA):
            joined = py_str(st.target[0])
            if joined not in st.net.access_points:
                st.scan_results.append(AccessPoint(joined))
        boot.post(st.net.timings.scan_ms, lambda: boot.sys_pub(b"WLAN_SCAN_DONE"))
        return True

    def scan_result(*_: Any) -> Any:
        t = boot.lua.table()
        for i, ap in enumerate(st.scan_results, 1):
            t[i] = boot.table(ssid=lua_str(ap.ssid), rssi=ap.rssi, bssid=ap.bssid,
                              channel=ap.channel)
        return t

    def get_info(*_: Any) -> Any:
        if not st.bn.is_ready(LWIP_STA) or st.target is None:
            return None
        ap = st.net.access_points.get(py_str(st.target[0]))
        gw = st.bn.ready[LWIP_STA][2]
        return boot.table(bssid=(ap.bssid if ap else AccessPoint.bssid).hex().upper(),
                          rssi=ap.rssi if ap else -50, gw=lua_str(gw))

    def create_ap(ssid: Any = None, pwd: Any = None, *_: Any) -> bool:
        if not ssid:
            return False
        st.bn.register(LWIP_AP)
        boot.post(500, lambda: st.bn.set_ready(LWIP_AP))
        return True

    sc_run = [0]  # bumped by every start and stop: a stale SC_RESULT is dropped

    def smartconfig(mode: Any = 1, *_: Any) -> bool:
        """Start (ESPTouch by default) or, with 0, stop listening for a phone's credentials.
        They arrive as ``SC_RESULT ssid password`` only if the bench has a phone sending them
        (``dev.net.smartconfig``); with none the device listens until the script stops it."""
        tp = lua_integer(mode)
        tp = 1 if tp is None else tp
        sc_run[0] += 1
        if tp == 0:
            return True
        if not 1 <= tp <= 4:
            return False
        run, offer = sc_run[0], st.net.smartconfig_offer
        if offer is not None:
            def deliver() -> None:
                if run == sc_run[0]:
                    sc_run[0] += 1
                    boot.sys_pub(b"SC_RESULT", lua_str(offer[0]), lua_str(offer[1]))
            boot.post(st.net.timings.smartconfig_ms, deliver)
        return True

    def stop_ap(*_: Any) -> bool:
        st.bn.set_lost(LWIP_AP)
        return True

    boot.firmware_module("wlan", {
        "init": init, "setMode": set_mode, "connect": connect, "disconnect": disconnect,
        "ready": ready, "getMac": get_mac, "getIP": get_ip, "scan": scan,
        "scanResult": scan_result, "getInfo": get_info, "createAP": create_ap,
        "stopAP": stop_ap, "smartconfig": smartconfig,
        "powerSave": lambda *_: 0, "setHostname": lambda *_: True,
        "hostname": lambda *_: lua_str("LUATOS_" + p.mac_hex(0)),
        "setMac": lambda *_: True, "autoreconn": lambda *_: None,
    }, CONSTANTS)
