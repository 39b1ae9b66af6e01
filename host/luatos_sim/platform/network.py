"""The simulated network around a device: links, faults, the address map and the host bridge.

One :class:`Network` per device (``dev.net``) outlives the boots: the links (WiFi access
points, Ethernet cables, the 4G bearer), the faults a test injects, and the table that maps the
addresses a device script uses (``112.125.89.8:45433``, ``ota.example.com``) to the servers the
test runs on this machine. Each boot gets a :class:`BootNet` with the adapters' state and the
open sockets; a reboot drops it, like the module drops every connection.

Faults act in virtual time where the device would see them (latency, bandwidth, link loss) and
on the real host connection where that is what the device would see (refused, cut).
"""

from __future__ import annotations

import ipaddress
import re
import socket as pysocket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from luatos_common.loopback_http import start_loopback_http

from ..duration import Duration, parse_duration
from ..httpsrv_wire import Limits

if TYPE_CHECKING:
    from ..device import Device
    from ..vm import Boot

# Adapter ids, Dec-2025 numbering (docs/behaviour.md §5.1; docs/defaults.md).
LWIP_GP, LWIP_STA, LWIP_AP, LWIP_ETH, LWIP_SPI = 1, 2, 3, 4, 5
LWIP_USER0 = 7
LWIP_GP_GW, ETH0 = 15, 16
ADAPTER_MAX = 17

ADAPTER_NAMES: dict[str, int] = {
    "gp": LWIP_GP, "4g": LWIP_GP, "mobile": LWIP_GP, "wifi": LWIP_STA, "sta": LWIP_STA,
    "ap": LWIP_AP, "eth": LWIP_ETH, "rmii": LWIP_ETH, "spi": LWIP_SPI, "ch390": LWIP_SPI,
    "ch390h": LWIP_SPI, "airlink": LWIP_USER0 + 1, "user1": LWIP_USER0 + 1,
    "gp_gw": LWIP_GP_GW, "eth0": ETH0,
}

# The address each adapter gets when it comes up (ip, mask, gateway).
DEFAULT_IPS: dict[int, tuple[str, str, str]] = {
    LWIP_GP: ("10.64.12.34", "255.255.255.255", "10.64.12.1"),
    LWIP_STA: ("192.168.1.100", "255.255.255.0", "192.168.1.1"),
    LWIP_AP: ("192.168.4.1", "255.255.255.0", "192.168.4.1"),
    LWIP_ETH: ("192.168.2.100", "255.255.255.0", "192.168.2.1"),
    LWIP_SPI: ("192.168.3.100", "255.255.255.0", "192.168.3.1"),
}


def adapter_id(value: str | int) -> int:
    """An adapter given by name (``wifi``, ``eth``, ``spi``, ``4g``, ``airlink``) or id."""
    if isinstance(value, int):
        return value
    v = value.strip().lower()
    if v.isdigit():
        return int(v)
    try:
        return ADAPTER_NAMES[v]
    except KeyError:
        raise ValueError(f"unknown adapter {value!r}; use one of "
                         f"{', '.join(sorted(ADAPTER_NAMES))} or a number") from None


def default_ip(adapter: int) -> tuple[str, str, str]:
    if adapter in DEFAULT_IPS:
        return DEFAULT_IPS[adapter]
    return (f"192.168.{10 + adapter}.100", "255.255.255.0", f"192.168.{10 + adapter}.1")


def parse_rate(text: str | int | float) -> float:
    """Bytes per second from ``20kB/s``, ``1MB/s``, ``512B/s`` or a number."""
    if isinstance(text, int | float):
        return float(text)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmM]?)(i?)[bB](?:ps|/s)?\s*", text)
    if not m:
        raise ValueError(f"bad bandwidth {text!r}: expected e.g. 20kB/s, 1MB/s or 512B/s")
    scale = {"": 1, "k": 1000, "m": 1_000_000}[m[2].lower()]
    if m[3]:
        scale = {"": 1, "k": 1024, "m": 1024 * 1024}[m[2].lower()]
    rate = float(m[1]) * scale
    if rate <= 0:
        raise ValueError(f"bad bandwidth {text!r}: must be above 0")
    return rate


def split_hostport(text: str) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port`` or a bare host."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"bad address {text!r}: missing ]")
        host, rest = text[1:end], text[end + 1:]
        if rest.startswith(":"):
            return host, _port(rest[1:], text)
        return host, None
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, _port(port, text)
    return text, None


def _port(p: str, whole: str) -> int:
    if not p.isdigit() or not 0 < int(p) < 65536:
        raise ValueError(f"bad port in {whole!r}")
    return int(p)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass
class AccessPoint:
    ssid: str
    password: str | None = None  # None: any password is accepted
    exists: bool = True
    bssid: bytes = b"\x00\x11\x22\x33\x44\x55"
    rssi: int = -50
    channel: int = 6


class NetError(Exception):
    """A connection the device would see fail: ``kind`` is ``dns``, ``refused``, ``timeout``
    or ``link``."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind


@dataclass
class Timings:
    """Virtual delays of link events (behaviour.md §5.2; the WiFi ones are UNCONFIRMED)."""

    wifi_connected_ms: int = 1000
    wifi_ip_ms: int = 1100
    wifi_disconnect_ms: int = 5  # wlan.disconnect() to IP_LOSE / DISCONNECTED
    wifi_fail_ms: int = 3000  # a refused password or a missing SSID reports DISCONNECTED then
    scan_ms: int = 2000
    smartconfig_ms: int = 5000  # wlan.smartconfig start to SC_RESULT when a phone sends (ours)
    eth_link_ms: int = 500
    eth_ip_ms: int = 1500
    bearer_ms: int = 3000  # a Cat.1 model's 4G bearer: IP_READY 1 this long after boot
    connect_timeout_ms: int = 15000  # TCP connect to an unreachable(mode="timeout") host


@dataclass
class Network:
    """Device-level network state and the fault API (``dev.net``)."""

    device: Device
    timings: Timings = field(default_factory=Timings)
    access_points: dict[str, AccessPoint] = field(default_factory=dict)
    address_map: dict[tuple[str, int | None], tuple[str, int | None]] = field(default_factory=dict)
    dns_failures: set[str] = field(default_factory=set)
    unreachable_hosts: dict[str, str] = field(default_factory=dict)  # host -> refused|timeout
    latency_ms: int = 0
    bandwidth_bps: float | None = None
    cut_rules: list[tuple[int, str | None]] = field(default_factory=list)
    links_down: set[int] = field(default_factory=set)
    # Body returned with a fota-mode -9 (behaviour.md §6; docs/defaults.md): "" by default, or
    # the buffered body.
    fota_error_body: str = "empty"  # "empty" | "buffered"
    http_transport: Any = None  # None: the default requests-based transport
    # After a socket tx, how long (wall ms) a server gets to answer before virtual time may
    # jump past the answer. A server that does not answer costs this much once per tx.
    reply_window_ms: int = 100
    # Hermetic by default: an address that is not mapped to this machine is refused (with a
    # diagnostic naming it), so a project's real server address never gets real traffic.
    allow_real_network: bool = False
    _boot_net: BootNet | None = None
    _refused_notes: set[str] = field(default_factory=set)
    # Device-side listening port -> the loopback port a test connects to (socket.listen).
    listeners: dict[int, int] = field(default_factory=dict)
    # httpsrv: the bounds on one request and the wall time a client gets to send it whole
    # (ours, docs/defaults.md; the device is bounded only by its heap and never times out).
    httpsrv_limits: Limits = field(default_factory=Limits)
    httpsrv_read_timeout_ms: int = 10_000
    # What a phone broadcasts to wlan.smartconfig (ESPTouch/AirKiss): (ssid, password) or none.
    smartconfig_offer: tuple[str, str] | None = None

    # -- the fault API ----------------------------------------------------------------------------

    def access_point(self, ssid: str, password: str | None = None, exists: bool = True,
                     bssid: str | bytes | None = None, rssi: int = -50) -> AccessPoint:
        """Declare an access point: with ``password`` only that password joins; with
        ``exists=False`` the SSID is not on the air. Undeclared SSIDs accept any password."""
        raw = bytes.fromhex(bssid) if isinstance(bssid, str) else bssid
        ap = AccessPoint(ssid, password, exists, raw or AccessPoint.bssid, rssi)
        self.access_points[ssid] = ap
        return ap

    def smartconfig(self, ssid: str, password: str) -> None:
        """A phone on the bench sends these credentials to a device in ``wlan.smartconfig``
        mode (it answers ``SC_RESULT ssid password``); without it smartconfig never finishes."""
        self.smartconfig_offer = (ssid, password)

    def map_address(self, device_side: str, host_side: str) -> None:
        """``map_address("112.125.89.8:45433", "127.0.0.1:8080")`` or a host-only mapping
        (``map_address("ota.example.com", "127.0.0.1")``, keeping the port)."""
        dh, dp = split_hostport(device_side)
        hh, hp = split_hostport(host_side)
        self.address_map[(dh.lower(), dp)] = (hh, hp)

    def server_address(self, device_port: int) -> tuple[str, int]:
        """Where a test reaches a server the device listens on (``socket.listen`` on
        ``device_port``): a loopback address. KeyError names the ports that are listening."""
        try:
            return "127.0.0.1", self.listeners[device_port]
        except KeyError:
            have = ", ".join(map(str, sorted(self.listeners))) or "none"
            raise KeyError(f"the device listens on no port {device_port} (listening: {have})") \
                from None

    def dns_fail(self, host: str) -> None:
        self.dns_failures.add(host.lower())

    def unreachable(self, host: str, mode: str = "refused") -> None:
        """Connections to ``host`` (device-side name or IP) are refused, or time out."""
        if mode not in ("refused", "timeout"):
            raise ValueError(f"unreachable mode {mode!r}: use 'refused' or 'timeout'")
        self.unreachable_hosts[host.lower()] = mode

    def latency(self, value: Duration) -> None:
        """One-way latency added (in virtual time) to connects, acks, data and HTTP answers."""
        self.latency_ms = parse_duration(value)

    def bandwidth(self, value: str | float | None) -> None:
        self.bandwidth_bps = None if value is None else parse_rate(value)

    def cut_after(self, nbytes: int, host: str | None = None) -> None:
        """Cut the next TCP connections (to ``host``, or any) after ``nbytes`` of the answer."""
        if nbytes < 0:
            raise ValueError("cut_after: nbytes must be >= 0")
        self.cut_rules.append((int(nbytes), host.lower() if host else None))

    def link_down(self, adapter: str | int = "wifi", at: Duration | None = None) -> None:
        """Take a link down now or at a virtual time from now (``at="10s"``)."""
        self._at(at, lambda: self.set_link(adapter_id(adapter), False), f"link down {adapter}")

    def link_up(self, adapter: str | int = "wifi", at: Duration | None = None) -> None:
        self._at(at, lambda: self.set_link(adapter_id(adapter), True), f"link up {adapter}")

    def _at(self, at: Duration | None, action: Callable[[], None], label: str) -> None:
        self.device.schedule(0 if at is None else at, action, label)

    # -- used by the modules ----------------------------------------------------------------------

    def set_link(self, adapter: int, up: bool) -> None:
        if up:
            self.links_down.discard(adapter)
        else:
            self.links_down.add(adapter)
        self.device.trace_event("link", adapter=adapter, up=up)
        bn = self._boot_net
        if bn is not None and bn.boot is self.device.boot:
            bn.link_changed(adapter, up)

    def link_is_up(self, adapter: int) -> bool:
        return adapter not in self.links_down

    def boot_net(self, boot: Boot) -> BootNet:
        bn = self._boot_net
        if bn is None or bn.boot is not boot:
            bn = BootNet(self, boot)
            self._boot_net = bn
            boot.closers.append(bn.close)
        return bn

    def take_cut(self, host: str) -> int | None:
        """The byte budget of a cut rule matching ``host`` (consumed), or None."""
        h = host.lower()
        for i, (n, rule_host) in enumerate(self.cut_rules):
            if rule_host is None or rule_host == h:
                del self.cut_rules[i]
                return n
        return None

    def resolve(self, host: str, port: int, *, real_traffic: bool = True) -> tuple[str, int]:
        """Device-visible host:port to the host-side address; raises NetError.

        ``real_traffic=False`` is for what the emulator answers itself (icmp): the fault rules
        apply, the loopback-only rule does not."""
        h = host.lower()
        if h in self.dns_failures:
            raise NetError("dns", f"DNS lookup of {host} failed (dns_fail)")
        mode = self.unreachable_hosts.get(h) or self.unreachable_hosts.get(f"{h}:{port}")
        if mode:
            raise NetError("refused" if mode == "refused" else "timeout",
                           f"{host}:{port} unreachable ({mode})")
        mapped = self.address_map.get((h, port)) or self.address_map.get((h, None))
        if mapped is not None:
            mh, mp = mapped
            return mh, mp if mp is not None else port
        if h in PUBLIC_HTTPDNS and port == 80:
            return "127.0.0.1", public_httpdns_port()
        if real_traffic and not self.allow_real_network and not is_loopback(h):
            if h not in self._refused_notes:
                self._refused_notes.add(h)
                self.device.emit_sim(
                    f"network: {host}:{port} is not mapped to this machine, so the connection is "
                    f"refused; map it (dev.net.map_address('{host}:{port}', '127.0.0.1:PORT') or "
                    "luatos-sim --map) or allow real traffic (allow_real_network / --real-network)")
            raise NetError("refused" if _is_ip(h) else "dns",
                           f"{host}:{port} is not mapped to a local address")
        return host, port

    def delay_for(self, nbytes: int) -> int:
        """Virtual ms a transfer of ``nbytes`` takes under the bandwidth limit."""
        if not self.bandwidth_bps:
            return 0
        return int(nbytes * 1000 / self.bandwidth_bps)


# The public HTTP DNS resolvers httpdns (and exnetif's probe) ask. The emulator answers them
# itself, on loopback, so a default run never leaves this machine; map them to override.
PUBLIC_HTTPDNS = ("223.5.5.5", "119.29.29.29")
PUBLIC_HTTPDNS_ANSWER = "110.242.68.66"
_httpdns_server: list[Any] = []
_httpdns_lock = threading.Lock()


def public_httpdns_port() -> int:
    """Port of the process-wide loopback stand-in for the public HTTP DNS services."""
    with _httpdns_lock:
        if not _httpdns_server:
            from http.server import BaseHTTPRequestHandler

            class Handler(BaseHTTPRequestHandler):
                def do_GET(self) -> None:  # noqa: N802 - http.server API
                    short = self.path.startswith("/d?")
                    body = (PUBLIC_HTTPDNS_ANSWER if short
                            else f'["{PUBLIC_HTTPDNS_ANSWER}"]').encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, *args: Any) -> None:
                    pass

            srv = start_loopback_http(Handler, name="luatos-sim-httpdns")
            _httpdns_server.append(srv)
        return int(_httpdns_server[0].server_address[1])


class BootNet:
    """Per-boot network state: adapters, default adapter, DNS servers and open sockets."""

    def __init__(self, net: Network, boot: Boot) -> None:
        self.net = net
        self.boot = boot
        self.ready: dict[int, tuple[str, str, str]] = {}  # adapter -> (ip, mask, gw)
        self.registered: list[int] = []
        # A Cat.1 model (Air780E, and the Air8000 with its Wi-Fi too) registers its cellular
        # bearer at boot, and that is the default adapter until socket.dft() changes it; an
        # Air8101's is the Wi-Fi STA (docs/behaviour.md, "socket").
        self.default = LWIP_GP if "mobile" in boot.profile.modules else LWIP_STA
        self.last_registered = self.default
        self.dns: dict[tuple[int, int], str] = {}
        self.sockets: list[Any] = []  # socket_mod.SockCtrl
        self.link_listeners: list[Callable[[int, bool], None]] = []
        # Called with the adapter when it loses its address (link loss, wlan.disconnect):
        # every connection on it fails, like lwIP dropping the netif.
        self.lose_listeners: list[Callable[[int], None]] = []
        self.closed = False

    def add_socket(self, sock: Any) -> None:
        """Track a socket ctrl: adapter events reach it and the boot's end closes it."""
        self.sockets.append(sock)

    def drop_socket(self, sock: Any) -> None:
        """Forget a released socket ctrl (no-op when it is not tracked)."""
        if sock in self.sockets:
            self.sockets.remove(sock)

    def register(self, adapter: int) -> None:
        if adapter not in self.registered:
            self.registered.append(adapter)
        self.last_registered = adapter

    def set_ready(self, adapter: int, ip: tuple[str, str, str] | None = None) -> None:
        """The adapter got an address: publish IP_READY ip adapter."""
        addr = ip or default_ip(adapter)
        self.ready[adapter] = addr
        self.boot.trace("ip_ready", adapter=adapter, ip=addr[0])
        self.boot.sys_pub(b"IP_READY", addr[0].encode(), adapter)
        for s in list(self.sockets):
            s.on_adapter_ready(adapter)

    def set_lost(self, adapter: int) -> None:
        """The adapter lost its address: IP_LOSE adapter; its sockets fail."""
        if self.ready.pop(adapter, None) is None:
            return
        self.boot.trace("ip_lose", adapter=adapter)
        # Connections fail as the netif goes (an HTTP result is published here), then the
        # status message follows.
        for s in list(self.sockets):
            if s.adapter == adapter:
                s.fail_link()
        for fn in list(self.lose_listeners):
            fn(adapter)
        self.boot.sys_pub(b"IP_LOSE", adapter)

    def is_ready(self, adapter: int) -> bool:
        return adapter in self.ready

    def link_changed(self, adapter: int, up: bool) -> None:
        for fn in list(self.link_listeners):
            fn(adapter, up)
        if not up:
            self.set_lost(adapter)

    def close(self) -> None:
        self.closed = True
        for s in list(self.sockets):
            s.close_now()
        self.sockets.clear()


def connect_host(net: Network, host: str, port: int, timeout_s: float,
                 udp: bool = False) -> pysocket.socket:
    """Open the real host connection for a device-side host:port (runs in a worker thread)."""
    rhost, rport = net.resolve(host, port)
    try:
        infos = pysocket.getaddrinfo(rhost, rport, type=pysocket.SOCK_DGRAM if udp
                                     else pysocket.SOCK_STREAM)
    except OSError as e:
        raise NetError("dns", f"DNS lookup of {host} ({rhost}) failed: {e}") from e
    last: Exception | None = None
    for family, stype, proto, _, addr in infos:
        s = pysocket.socket(family, stype, proto)
        try:
            s.settimeout(timeout_s)
            s.connect(addr)
            s.settimeout(None)
            return s
        except TimeoutError as e:
            s.close()
            last = NetError("timeout", f"connect to {host}:{port} timed out")
            del e
        except OSError as e:
            s.close()
            last = NetError("refused", f"connect to {host}:{port} ({rhost}:{rport}) failed: {e}")
    raise last if last else NetError("dns", f"no address for {host}")


# -- command line ---------------------------------------------------------------------------------

def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1."""
    h = host.strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


