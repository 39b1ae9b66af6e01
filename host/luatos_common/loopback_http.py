"""A throwaway HTTP server on 127.0.0.1 in a daemon thread.

The emulator's public-DNS stand-in, the FOTA benchmarks and the tests all need one; the
handler class is theirs, the start/stop dance is here.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def start_loopback_http(handler: type[BaseHTTPRequestHandler],
                        name: str = "loopback-http") -> ThreadingHTTPServer:
    """Serve ``handler`` on a free loopback port; ``server.server_address[1]`` is the port."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, name=name,
                     daemon=True).start()
    return srv


def stop_loopback_http(srv: ThreadingHTTPServer) -> None:
    srv.shutdown()
    srv.server_close()
