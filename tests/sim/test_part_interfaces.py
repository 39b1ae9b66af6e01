"""The narrow interfaces firmware libraries use to reach shared parts: a socket ctrl of their own
(``SockCtrl.open`` / ``wait_link_up`` / ``take_datagram`` / ``release``, as mqtt, websocket and
errDump use it) and the UART bus (``UartBus.add_peer`` / ``set_app_receiver``, as the GNSS
receiver and libgnss use it), driven against a running boot and a real loopback UDP peer."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from luatos_sim import Device
from luatos_sim.modules.socket_mod import EVENT, LINK, ON_LINE, SockCtrl
from luatos_sim.platform.network import LWIP_STA

LATE_WIFI = """
sys.timerStart(function() wlan.init(); wlan.connect("ap", "pw") end, 1000)
sys.subscribe("IP_READY", function() log.info("ready") end)
sys.run()
"""


@pytest.fixture
def udp_echo() -> Iterator[int]:
    """A UDP peer on loopback answering each datagram with ``pong:`` + it; yields its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            sock.sendto(b"pong:" + data, addr)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield int(sock.getsockname()[1])
    stop.set()
    t.join(timeout=2)
    sock.close()


def test_own_ctrl_waits_for_the_link_then_takes_datagrams_and_releases(
        boot: Callable[..., Device], udp_echo: int) -> None:
    dev = boot(LATE_WIFI)
    dev.net.map_address("echo.example.com:7", f"127.0.0.1:{udp_echo}")
    dev.run_for("10ms")
    assert dev.boot is not None
    bn = dev.net.boot_net(dev.boot)
    events: list[tuple[int, int]] = []
    sc = SockCtrl.open(dev.boot, bn, LWIP_STA, lambda _c, ev, p: events.append((ev, p)), udp=True)
    assert sc in bn.sockets and sc.udp and not sc.tls

    assert sc.wait_link_up() is False  # Wi-Fi is not up yet: LINK follows when it is
    dev.run_until("I/user.ready", within="10s")
    dev.run_for("10ms")
    assert events == [(LINK, 0)]
    assert sc.wait_link_up() is True
    assert sc.take_datagram() is None  # nothing received yet

    sc.start_connect("echo.example.com", 7)
    dev.run_for("1s")
    assert (ON_LINE, 0) in events
    assert sc.send(b"ping")
    dev.run_for("2s")
    assert (EVENT, 0) in events
    got = sc.take_datagram()
    assert got is not None and got[0] == b"pong:ping" and got[1] == "127.0.0.1"
    assert sc.take_datagram() is None  # taken once

    n = len(events)
    sc.release()
    assert sc not in bn.sockets and sc.released
    sc.release()  # twice: harmless
    assert not sc.send(b"late")  # closed
    sc.emit(EVENT, 0)
    assert len(events) == n  # a released ctrl reports nothing more


def test_tls_settings_make_a_tls_ctrl(boot: Callable[..., Device]) -> None:
    from luatos_sim.tlsconf import TlsSettings

    dev = boot(LATE_WIFI)
    dev.run_for("10ms")
    assert dev.boot is not None
    bn = dev.net.boot_net(dev.boot)
    settings = TlsSettings()
    sc = SockCtrl.open(dev.boot, bn, LWIP_STA, None, b"task")
    tls = SockCtrl.open(dev.boot, bn, LWIP_STA, None, tls=settings)
    assert not sc.tls and tls.tls and tls.tls_settings is settings
    assert sc.task == b"task" and bn.sockets[-2:] == [sc, tls]
    bn.drop_socket(sc)
    bn.drop_socket(sc)  # not tracked any more: no error
    assert sc not in bn.sockets and tls in bn.sockets


class Peer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def boot_started(self) -> None:
        self.calls.append("started")

    def boot_ended(self) -> None:
        self.calls.append("ended")


def test_uart_peer_starts_with_the_running_boot_and_follows_reboots(
        boot: Callable[..., Device]) -> None:
    dev = boot("sys.run()\n")
    waiting = Peer()
    dev.uart.add_peer(waiting)  # no boot yet: it starts with the first one
    assert waiting.calls == []
    dev.run_for("10ms")
    assert waiting.calls == ["started"]
    late = Peer()
    dev.uart.add_peer(late)  # a boot is running: it starts at once
    assert late.calls == ["started"]
    dev.reboot()
    dev.run_for("10ms")
    assert waiting.calls == late.calls == ["started", "ended", "started"]


def test_app_receiver_takes_the_uart_input_instead_of_the_script_for_one_boot(
        boot: Callable[..., Device]) -> None:
    dev = boot("""
uart.setup(2, 115200)
uart.on(2, "receive", function(id, len) log.info("script", id, len) end)
sys.run()
""")
    dev.run_for("10ms")
    taken: list[bytes] = []
    dev.uart.set_app_receiver(2, lambda: taken.append(dev.uart.read(2)))
    assert dev.uart.receive(2, b"$GNRMC")
    dev.run_for("10ms")
    assert taken == [b"$GNRMC"]
    assert not any(ln.startswith("I/user.script") for ln in dev.lines())
    dev.reboot()  # per boot: the next boot's script gets its input again
    dev.run_for("10ms")
    assert dev.uart.receive(2, b"abc")
    dev.run_for("10ms")
    assert taken == [b"$GNRMC"] and "I/user.script 2 3" in dev.lines()
