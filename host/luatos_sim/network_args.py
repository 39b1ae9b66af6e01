"""The command line's network flags (``luatos-sim run --map ... --link-down ...``).

They configure the device's network part (:class:`luatos_sim.platform.network.Network`)
before the first boot; the part itself knows nothing about argument parsing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .duration import parse_duration

if TYPE_CHECKING:
    from .device import Device


@dataclass(frozen=True)
class NetworkFlag:
    """One network flag, described once for both the argparse and the click front end."""

    flag: str
    help: str
    metavar: str | None = None
    repeatable: bool = False
    is_flag: bool = False
    choices: tuple[str, ...] | None = None
    default: Any = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


NETWORK_FLAGS: tuple[NetworkFlag, ...] = (
    NetworkFlag("--real-network", "let unmapped addresses reach the real network (default: only "
                "loopback; anything else is refused with a diagnostic)", is_flag=True),
    NetworkFlag("--map", "map a device-side address to a host one, e.g. "
                "112.125.89.8:45433=127.0.0.1:9000 or ota.example.com=127.0.0.1 (repeatable)",
                "DEV=HOST", repeatable=True),
    NetworkFlag("--ap", "declare an access point; only PASSWORD joins it (repeatable)",
                "SSID[:PASSWORD]", repeatable=True),
    NetworkFlag("--no-ap", "an SSID that is not on the air (repeatable)", "SSID",
                repeatable=True),
    NetworkFlag("--link-down", "take a link down at a virtual time, e.g. 10s or eth@2m "
                "(adapter default wifi; repeatable)", "[ADAPTER@]AT", repeatable=True),
    NetworkFlag("--link-up", "bring a link back up at a virtual time (repeatable)",
                "[ADAPTER@]AT", repeatable=True),
    NetworkFlag("--latency", "one-way latency, e.g. 50ms", "DURATION"),
    NetworkFlag("--bandwidth", "bandwidth limit, e.g. 20kB/s", "RATE"),
    NetworkFlag("--cut-after", "cut the next TCP connection (to HOST) after N bytes of its answer",
                "N[@HOST]", repeatable=True),
    NetworkFlag("--dns-fail", "DNS lookups of HOST fail (repeatable)", "HOST", repeatable=True),
    NetworkFlag("--unreachable", "connections to HOST are refused (or time out with :timeout)",
                "HOST[:timeout]", repeatable=True),
    NetworkFlag("--reply-window", "wall time a server gets to answer a device tx before virtual "
                "time moves on (default 100ms)", "DURATION"),
    NetworkFlag("--fota-error-body", "body returned with a fota-mode -9 (default: empty)",
                choices=("empty", "buffered"), default="empty"),
)


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("network (faults and address map)")
    for f in NETWORK_FLAGS:
        if f.is_flag:
            g.add_argument(f.flag, action="store_true", help=f.help)
        elif f.repeatable:
            g.add_argument(f.flag, action="append", default=[], metavar=f.metavar, help=f.help)
        else:
            g.add_argument(f.flag, default=f.default, choices=f.choices, metavar=f.metavar,
                           help=f.help)


def network_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The :data:`NETWORK_FLAGS` as click options (values land in the command's kwargs)."""
    import click

    for f in reversed(NETWORK_FLAGS):
        help_ = f.help[0].upper() + f.help[1:] + "."
        if f.is_flag:
            fn = click.option(f.flag, f.dest, is_flag=True, help=help_)(fn)
        elif f.repeatable:
            fn = click.option(f.flag, f.dest, multiple=True, metavar=f.metavar, help=help_)(fn)
        else:
            typ = click.Choice(f.choices) if f.choices else str
            fn = click.option(f.flag, f.dest, type=typ, default=f.default, metavar=f.metavar,
                              help=help_)(fn)
    return fn


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
