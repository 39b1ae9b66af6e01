"""The command line's network flags (``luatos-sim run --map ... --link-down ...``).

They configure the device's network part (:class:`luatos_sim.platform.network.Network`)
before the first boot; the part itself knows nothing about argument parsing.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .duration import parse_duration

if TYPE_CHECKING:
    from .device import Device


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("network (faults and address map)")
    g.add_argument("--real-network", action="store_true",
                   help="let unmapped addresses reach the real network (default: only "
                        "loopback; anything else is refused with a diagnostic)")
    g.add_argument("--map", action="append", default=[], metavar="DEV=HOST",
                   help="map a device-side address to a host one, e.g. "
                        "112.125.89.8:45433=127.0.0.1:9000 or ota.example.com=127.0.0.1 "
                        "(repeatable)")
    g.add_argument("--ap", action="append", default=[], metavar="SSID[:PASSWORD]",
                   help="declare an access point; only PASSWORD joins it (repeatable)")
    g.add_argument("--no-ap", action="append", default=[], metavar="SSID",
                   help="an SSID that is not on the air (repeatable)")
    g.add_argument("--link-down", action="append", default=[], metavar="[ADAPTER@]AT",
                   help="take a link down at a virtual time, e.g. 10s or eth@2m "
                        "(adapter default wifi; repeatable)")
    g.add_argument("--link-up", action="append", default=[], metavar="[ADAPTER@]AT",
                   help="bring a link back up at a virtual time (repeatable)")
    g.add_argument("--latency", metavar="DURATION", help="one-way latency, e.g. 50ms")
    g.add_argument("--bandwidth", metavar="RATE", help="bandwidth limit, e.g. 20kB/s")
    g.add_argument("--cut-after", action="append", default=[], metavar="N[@HOST]",
                   help="cut the next TCP connection (to HOST) after N bytes of its answer")
    g.add_argument("--dns-fail", action="append", default=[], metavar="HOST",
                   help="DNS lookups of HOST fail (repeatable)")
    g.add_argument("--unreachable", action="append", default=[], metavar="HOST[:timeout]",
                   help="connections to HOST are refused (or time out with :timeout)")
    g.add_argument("--reply-window", default=None, metavar="DURATION",
                   help="wall time a server gets to answer a device tx before virtual time "
                        "moves on (default 100ms)")
    g.add_argument("--fota-error-body", choices=("empty", "buffered"), default="empty",
                   help="body returned with a fota-mode -9 (default: %(default)s)")


def _adapter_at(spec: str) -> tuple[str, str]:
    if "@" in spec:
        a, at = spec.split("@", 1)
        return a, at
    return "wifi", spec


def apply_network_arguments(device: Device, args: argparse.Namespace) -> None:
    """Apply the flags of :func:`add_network_arguments`; raises ValueError on bad values."""
    net = device.net
    net.allow_real_network = bool(getattr(args, "real_network", False))
    for m in getattr(args, "map", None) or []:
        if "=" not in m:
            raise ValueError(f"--map {m!r}: expected DEVICE_ADDR=HOST_ADDR")
        d, h = m.split("=", 1)
        net.map_address(d, h)
    for ap in getattr(args, "ap", None) or []:
        ssid, _, pwd = ap.partition(":")
        net.access_point(ssid, password=pwd if _ else None)
    for ssid in getattr(args, "no_ap", None) or []:
        net.access_point(ssid, exists=False)
    for spec in getattr(args, "link_down", None) or []:
        a, at = _adapter_at(spec)
        net.link_down(a, at=at)
    for spec in getattr(args, "link_up", None) or []:
        a, at = _adapter_at(spec)
        net.link_up(a, at=at)
    if getattr(args, "latency", None):
        net.latency(args.latency)
    if getattr(args, "bandwidth", None):
        net.bandwidth(args.bandwidth)
    for spec in getattr(args, "cut_after", None) or []:
        n, _, host = spec.partition("@")
        if not n.isdigit():
            raise ValueError(f"--cut-after {spec!r}: expected N or N@HOST")
        net.cut_after(int(n), host or None)
    for host in getattr(args, "dns_fail", None) or []:
        net.dns_fail(host)
    for spec in getattr(args, "unreachable", None) or []:
        host, _, mode = spec.rpartition(":") if spec.endswith(":timeout") else (spec, "", "")
        net.unreachable(host, mode or "refused")
    net.fota_error_body = getattr(args, "fota_error_body", "empty") or "empty"
    window = getattr(args, "reply_window", None)
    if window is not None:
        try:
            net.reply_window_ms = parse_duration(window)
        except ValueError as e:
            raise ValueError(f"--reply-window: {e}") from None
