"""A small HTTP server a scenario starts on 127.0.0.1 to stand in for the outside world
(a webhook receiver, a news feed): the sandbox stays offline, and the scenario sees every
request that reached it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


@dataclass
class LocalServer:
    url: str  # http://127.0.0.1:<port>
    requests: list[Request]

    def to(self, path: str) -> list[Request]:
        """Requests that arrived for this path (query string ignored)."""
        return [r for r in list(self.requests) if r.path.split("?", 1)[0] == path]


@contextmanager
def serve(respond: Callable[[Request], Reply]) -> Iterator[LocalServer]:
    """Serve on a free port of 127.0.0.1 until the block ends; `respond` answers each request
    (it runs on the server's threads)."""
    received: list[Request] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(
                self.command, self.path, dict(self.headers), self.rfile.read(length), time.time()
            )
            with lock:
                received.append(request)
            reply = respond(request)
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the scenario reports what matters."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalServer(f"http://127.0.0.1:{server.server_address[1]}", received)
    finally:
        server.shutdown()
        server.server_close()
