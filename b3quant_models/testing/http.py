"""A loopback-only HTTP server for tests of the download code.

Tests must never reach B3 or the Central Bank: the server binds 127.0.0.1 on a free port, serves
canned responses from a dict, and records every request so a test can prove a cache hit made none.
``block_non_loopback`` makes any other outbound connection fail fast, as a safety net.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass
class CannedResponse:
    """What the server answers for one path.

    ``declared_length`` lets a test announce more bytes than it sends, so the client sees the
    connection drop mid-body (a truncated transfer rather than a truncated file).
    """

    status: int = 200
    body: bytes = b""
    content_type: str = "application/octet-stream"
    declared_length: int | None = None


Responder = CannedResponse | Callable[[str], CannedResponse]


@dataclass
class LoopbackServer:
    """Threaded HTTP server on 127.0.0.1; ``routes`` maps a path (query string ignored) to a response."""

    routes: dict[str, Responder] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # full request targets, in order
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def hits(self, path: str) -> int:
        """How many requests asked for ``path`` (query string ignored)."""
        return sum(1 for r in self.requests if urlsplit(r).path == path)

    def start(self) -> LoopbackServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                route = server.routes.get(urlsplit(self.path).path)
                if route is None:
                    resp = CannedResponse(404, b"not found", "text/plain")
                else:
                    resp = route(self.path) if callable(route) else route
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.content_type)
                length = resp.declared_length if resp.declared_length is not None else len(resp.body)
                self.send_header("Content-Length", str(length))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(resp.body)
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _host_of(address: object) -> str | None:
    if isinstance(address, tuple) and address:
        return str(address[0])
    return None  # AF_UNIX paths and the like are local by nature


@contextlib.contextmanager
def block_non_loopback() -> Iterator[None]:
    """Make every outbound TCP connection to a non-loopback address raise instead of connecting."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def _check(address: object) -> None:
        host = _host_of(address)
        if host is not None and host not in LOOPBACK_HOSTS:
            raise ConnectionRefusedError(f"test tried to reach {address!r}; only loopback is allowed")

    def connect(self: socket.socket, address: object) -> None:
        _check(address)
        real_connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        _check(address)
        return real_connect_ex(self, address)  # type: ignore[arg-type]

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]


__all__ = ["CannedResponse", "LoopbackServer", "block_non_loopback"]
