"""The certificate arguments a script gives to http.request and socket.config, as one type.

Both follow the same device rule (docs/behaviour.md §5.3 and §6): without a server CA nothing is
checked; with one, the server's chain must lead to it. Whether the device also matches the
certificate's name to the host is UNCONFIRMED, so it is an option (default off).
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path


class TlsSetupError(ValueError):
    """A certificate argument the TLS stack cannot use; the connection fails as a bad handshake."""


@dataclass(frozen=True)
class TlsSettings:
    server_ca: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None
    client_password: bytes | None = None
    check_hostname: bool = False

    @property
    def configured(self) -> bool:
        return any((self.server_ca, self.client_cert, self.client_key))

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if self.server_ca:
            try:
                ctx.load_verify_locations(cadata=self.server_ca.decode("ascii", "replace"))
            except (ssl.SSLError, ValueError) as e:
                raise TlsSetupError(f"server CA is not a usable PEM certificate: {e}") from None
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.check_hostname = self.check_hostname
        if self.client_cert:
            if not self.client_key:
                raise TlsSetupError("client certificate given without its key")
            # ssl reads a certificate chain only from files: a private temp dir, gone at once
            with tempfile.TemporaryDirectory(prefix="luatos-sim-tls-") as d:
                cert, key = Path(d) / "cert.pem", Path(d) / "key.pem"
                cert.write_bytes(self.client_cert)
                key.write_bytes(self.client_key)
                try:
                    ctx.load_cert_chain(cert, key, password=self.client_password or None)
                except (ssl.SSLError, ValueError) as e:
                    raise TlsSetupError(f"client certificate/key not usable: {e}") from None
        return ctx


def pem_arg(v: object) -> bytes | None:
    """A certificate argument from Lua: a non-empty string, else absent."""
    return v if isinstance(v, bytes) and v else None
