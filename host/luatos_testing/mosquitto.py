"""A real Mosquitto broker for tests: one process on a free loopback port, started and stopped
by the test (``stop()``/``start()`` is the broker-restart fault).

Why the real broker: the emulated device's MQTT client has to meet what a product meets — a
broker that refuses a bad client id, drops a client that publishes to a wildcard topic, and
goes away and comes back. Mosquitto comes from Debian (``make sysdeps``).

Run ``python -m luatos_testing.mosquitto`` for a broker to poke at by hand (Ctrl-C stops it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from luatos_common.ports import free_port

SETUP_HINT = "Mosquitto not installed: run make sysdeps (Debian package mosquitto)"
DEFAULT_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class BrokerError(RuntimeError):
    """The broker did not start; the message carries its log."""


def find_mosquitto() -> Path | None:
    """The broker binary, or None when it is not installed. Env MOSQUITTO, when set, is the
    only place looked at (so a test run can point at a build, or at nothing)."""
    chosen = os.environ.get("MOSQUITTO")
    if chosen:
        return Path(chosen) if Path(chosen).is_file() and os.access(chosen, os.X_OK) else None
    for cand in DEFAULT_PATHS:
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return Path(cand)
    found = shutil.which("mosquitto")
    return Path(found) if found else None


@dataclass
class MosquittoBroker:
    """One broker process; ``port`` stays the same across stop()/start()."""

    binary: Path
    base: Path
    port: int = 0
    tls_port: int | None = None
    tls_files: tuple[Path, Path] | None = None  # (certificate, key) for a TLS listener
    # Clients must log in with a user and password listed here (mosquitto_passwd format),
    # as a cloud checks the credentials a device computed; re-read on restart().
    password_file: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def log_file(self) -> Path:
        return self.base / "mosquitto.log"

    def _config(self) -> Path:
        lines = [
            "per_listener_settings false",
            "allow_anonymous false" if self.password_file else "allow_anonymous true",
            "persistence false",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"listener {self.port} 127.0.0.1",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # Started as root, mosquitto drops to the "mosquitto" user, which cannot read the
            # test's temp files (log, certificates): stay the user who started it.
            lines.insert(0, "user root")
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.tls_port and self.tls_files:
            cert, key = self.tls_files
            lines += [f"listener {self.tls_port} 127.0.0.1", f"certfile {cert}", f"keyfile {key}"]
        conf = self.base / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return conf

    def start(self, timeout: float = 10.0) -> None:
        """Start mosquitto and return once *it* listens on its ports.

        A port that merely accepts connections is not proof: another test's server may have
        taken the port between ``free_port()`` and mosquitto's bind, and then a client would
        talk to that server instead. Mosquitto logs ``running`` only after it opened every
        listener, so readiness is that line plus a live process; a lost port race (mosquitto
        exits) is retried on fresh ports, at most three times."""
        if self.running:
            return
        chosen = bool(self.port)
        for attempt in range(3):
            if not chosen or attempt:
                self.port = free_port()
                if self.tls_port:
                    self.tls_port = free_port()
            error = self._start_once(timeout)
            if error is None:
                return
            if "in use" not in error or chosen:
                raise BrokerError(error)
        raise BrokerError(f"mosquitto lost the race for a free port three times\n{error}")

    def _start_once(self, timeout: float) -> str | None:
        """None once running, else why it did not start."""
        conf = self._config()
        logged_before = len(self.log_text())  # a restart appends to the same log
        self._proc = subprocess.Popen([str(self.binary), "-c", str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                code = self._proc.returncode
                if self._proc.stderr:
                    self._proc.stderr.close()
                self._proc = None
                return f"mosquitto exited with {code}: {err.strip()}\n{self.log_tail()}"
            if " running" in self.log_text()[logged_before:] and _listening(self.port) \
                    and (not self.tls_port or _listening(self.tls_port)):
                return None
            time.sleep(0.01)
        self.stop()
        return f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout:.0f} s\n{self.log_tail()}"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A password file for ``MosquittoBroker.password_file`` (user -> password), written by
    ``mosquitto_passwd`` from the same Debian package as the broker; BrokerError (with the
    hint) when that tool is missing."""
    tool = shutil.which("mosquitto_passwd") or next(
        (c for c in ("/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd")
         if os.access(c, os.X_OK)), None)
    if tool is None:
        raise BrokerError(SETUP_HINT)
    path.write_text("", encoding="utf-8")
    path.chmod(0o600)
    for user, password in users.items():
        done = subprocess.run([tool, "-b", str(path), user, password], capture_output=True,
                              timeout=60, check=False)
        if done.returncode != 0:
            raise BrokerError(f"mosquitto_passwd failed for user {user!r}: "
                              f"{done.stderr.decode(errors='replace').strip()}")
    return path


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_broker(base: Path | None = None, *, tls_files: tuple[Path, Path] | None = None,
                 password_file: Path | None = None) -> MosquittoBroker:
    """Start a broker; raises BrokerError (with the hint) when Mosquitto is missing."""
    binary = find_mosquitto()
    if binary is None:
        raise BrokerError(SETUP_HINT)
    base = base or Path(tempfile.mkdtemp(prefix="luatos-mosquitto-"))
    broker = MosquittoBroker(binary, base, tls_files=tls_files,
                             tls_port=free_port() if tls_files else None,
                             password_file=password_file)
    broker.start()
    return broker


@contextlib.contextmanager
def broker_for_test(base: Path, *, tls_files: tuple[Path, Path] | None = None,
                    password_file: Path | None = None) -> Iterator[MosquittoBroker]:
    """The ``mqtt_broker`` fixture's body: skip locally with the reason when Mosquitto is
    missing, fail when CI is set (CI must run every test)."""
    import pytest

    if find_mosquitto() is None:
        if os.environ.get("CI"):
            pytest.fail(SETUP_HINT, pytrace=False)
        pytest.skip(SETUP_HINT)
    broker = start_broker(base, tls_files=tls_files, password_file=password_file)
    try:
        yield broker
    finally:
        broker.stop()


if __name__ == "__main__":
    b = start_broker()
    print(f"mosquitto on {b.host}:{b.port} (log {b.log_file}); Ctrl-C stops it")
    try:
        while b.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()
