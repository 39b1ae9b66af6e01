"""netdrv: wired and bridged network adapters (CH390H over SPI, RMII Ethernet, the airlink
4G bridge), enough for exnetif and for a project that drives netdrv itself.

``netdrv.setup(id, type, opts)`` registers the adapter; its cable (link) comes up
``timings.eth_link_ms`` later unless a test took the link down, and DHCP (on by default) then
publishes ``IP_READY ip id`` at ``timings.eth_ip_ms``. A static address (``netdrv.dhcp(id,
false)`` plus ``netdrv.ipv4(id, ip, mask, gw)``) is ready as soon as the link is. ``netdrv.on``
is deliberately absent (reference §5.5 default). The type constants' values are not in the
reference: they are emulator choices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..lua_text import lua_str, py_str
from ..platform.network import LWIP_STA, default_ip

if TYPE_CHECKING:
    from ..vm import Boot

CONSTANTS = {
    "CH390": 1, "W5100": 2, "W5500": 3, "UART": 16, "SPINET": 32, "WHALE": 48,
    "OPENVPN": 64, "WG": 80,
    "CTRL_RESET": 1, "RESET_HARD": 1, "RESET_SOFT": 2, "CTRL_UPDOWN": 2,
    "EVT_SOCKET": 1,
}


class Adapter:
    def __init__(self, adapter: int, kind: int) -> None:
        self.id = adapter
        self.kind = kind
        self.dhcp = True
        self.static: tuple[str, str, str] | None = None
        self.link = False
        self.gen = 0


def install(boot: Boot) -> None:
    net = boot.platform.net
    bn = net.boot_net(boot)
    adapters: dict[int, Adapter] = {}
    t = net.timings

    def bring_up(a: Adapter) -> None:
        a.gen += 1
        gen = a.gen
        if not net.link_is_up(a.id):
            return

        def link_on() -> None:
            if gen != a.gen:
                return
            a.link = True
            if a.static is not None and not a.dhcp:
                bn.set_ready(a.id, a.static)
            elif a.dhcp:
                boot.post(max(0, t.eth_ip_ms - t.eth_link_ms), ip_on)

        def ip_on() -> None:
            if gen == a.gen and a.link and not bn.is_ready(a.id):
                bn.set_ready(a.id, a.static or default_ip(a.id))

        boot.post(t.eth_link_ms, link_on)

    def link_changed(adapter: int, up: bool) -> None:
        a = adapters.get(adapter)
        if a is None:
            return
        if up:
            bring_up(a)
        else:
            a.gen += 1
            a.link = False

    bn.link_listeners.append(link_changed)

    def setup(adapter: Any = None, kind: Any = 0, opts: Any = None) -> bool:
        if not isinstance(adapter, int) or adapter < 1 or adapter in (LWIP_STA,):
            return False
        a = adapters.get(adapter) or Adapter(adapter, int(kind or 0))
        adapters[adapter] = a
        bn.register(adapter)
        boot.trace("netdrv_setup", adapter=adapter, driver=int(kind or 0))
        bring_up(a)
        return True

    def dhcp(adapter: Any = None, enable: Any = None) -> bool:
        a = adapters.get(adapter)
        if a is None:
            return False
        if enable is not None:
            a.dhcp = bool(enable)
        return a.dhcp

    def ipv4(adapter: Any = None, ip: Any = None, mask: Any = None, gw: Any = None) -> Any:
        a = adapters.get(adapter)
        if a is not None and isinstance(ip, bytes):
            a.static = (py_str(ip), py_str(mask or b"255.255.255.0"), py_str(gw or b"0.0.0.0"))
            if not a.dhcp and a.link:
                bn.set_ready(a.id, a.static)
        addr = bn.ready.get(adapter) if isinstance(adapter, int) else None
        if addr is None and a is not None and a.static is not None:
            addr = a.static
        if addr is None:
            return None
        return lua_str(addr[0]), lua_str(addr[1]), lua_str(addr[2])

    def link(adapter: Any = None) -> bool:
        a = adapters.get(adapter)
        return bool(a and a.link)

    def ready(adapter: Any = None) -> bool:
        return isinstance(adapter, int) and bn.is_ready(adapter)

    def mac(adapter: Any = None, new: Any = None, raw: Any = None) -> Any:
        offset = 3 + (adapter or 0) if isinstance(adapter, int) else 3
        return boot.profile.mac_bytes(offset) if raw else lua_str(boot.profile.mac_hex(offset))

    # airlink: the SPI/UART link to a 4G module; its network is the netdrv adapter the
    # script sets up (exnetif: LWIP_GP_GW). Only the calls a setup makes are modelled.
    boot.firmware_module("airlink", {
        "init": lambda *_: True, "start": lambda *_: True, "stop": lambda *_: True,
        "config": lambda *_: True, "debug": lambda *_: None, "ready": lambda *_: True,
    }, {"MODE_SPI_SLAVE": 0, "MODE_SPI_MASTER": 1, "MODE_UART": 2, "CONF_SPI_ID": 0,
        "CONF_SPI_CS": 1, "CONF_SPI_RDY": 2, "CONF_SPI_SPEED": 3, "CONF_UART_ID": 4})
    boot.firmware_module("netdrv", {
        "setup": setup, "dhcp": dhcp, "ipv4": ipv4, "link": link, "ready": ready,
        "mac": mac, "napt": lambda *_: True, "ctrl": lambda *_: True,
        "debug": lambda *_: None, "mtu": lambda *_: True,
    }, CONSTANTS)
