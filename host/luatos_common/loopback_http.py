"""A throwaway HTTP server on 127.0.0.1 in a daemon thread.

The emulator's public-DNS stand-in, the FOTA benchmarks and the tests all need one; the
handler class is theirs, the start/stop dance is here.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _QuietServer(ThreadingHTTPServer):
    """A client hanging up mid-answer (a device cut off, a test done) is normal here, not an
    error worth a traceback on stderr; anything else still is."""

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


def start_loopback_http(handler: type[BaseHTTPRequestHandler],
                        name: str = "loopback-http") -> ThreadingHTTPServer:
    """Serve ``handler`` on a free loopback port; ``server.server_address[1]`` is the port."""
    srv = _QuietServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, name=name,
                     daemon=True).start()
    return srv


def stop_loopback_http(srv: ThreadingHTTPServer) -> None:
    srv.shutdown()
    srv.server_close()
