"""A small HTTP server a scenario starts on this machine to stand in for the outside world
(a webhook receiver, a news feed): the sandbox stays offline, and the scenario sees every
request that reached it.

Where it listens, and the URL it gives out, suit where Lambda functions run: as processes on
this host (embedded mode), 127.0.0.1. In Lambda containers (Docker mode) 127.0.0.1 is the
container itself, so the URL names host.docker.internal (docker-compose.yml maps it to the
host gateway for Linux engines) and the server listens where that arrives: on Linux, the
Docker bridge's address on this host (still not the network); with Docker Desktop or Colima,
which forward host.docker.internal to this host's loopback, 127.0.0.1.
SANDBOX_STAND_IN_BIND and SANDBOX_STAND_IN_HOST override both.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sandbox import modes

BIND_SETTING = "SANDBOX_STAND_IN_BIND"
HOST_SETTING = "SANDBOX_STAND_IN_HOST"
DOCKER_HOST_NAME = "host.docker.internal"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Addresses:
    bind: str  # the interface the server listens on
    advertised: str  # the host name in the URL handed to Lambda functions


def addresses() -> Addresses:
    """Where stand-in servers listen and how functions reach them, for the current mode."""
    if modes.functions_in_docker():
        default = Addresses(docker_host_gateway(), DOCKER_HOST_NAME)
    else:
        default = Addresses(LOOPBACK, LOOPBACK)
    return Addresses(
        os.environ.get(BIND_SETTING) or default.bind,
        os.environ.get(HOST_SETTING) or default.advertised,
    )


@functools.cache
def docker_host_gateway() -> str:
    """The address host.docker.internal's `host-gateway` reaches on this machine: the default
    bridge's gateway with a Linux engine; 127.0.0.1 where Docker runs in a VM that forwards
    it to this host's loopback (Docker Desktop, Colima), or when the engine does not say."""
    if platform.system() != "Linux":
        return LOOPBACK
    try:
        done = subprocess.run(
            [
                "docker",
                "network",
                "inspect",
                "bridge",
                "--format",
                "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return LOOPBACK
    gateways = done.stdout.split() if done.returncode == 0 else []
    return gateways[0] if gateways else LOOPBACK


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
    url: str  # http://<advertised host>:<port>, as Lambda functions reach it
    requests: list[Request]

    def to(self, path: str) -> list[Request]:
        """Requests that arrived for this path (query string ignored)."""
        return [r for r in list(self.requests) if r.path.split("?", 1)[0] == path]


@contextmanager
def serve(respond: Callable[[Request], Reply]) -> Iterator[LocalServer]:
    """Serve on a free port until the block ends (`addresses()` says where); `respond`
    answers each request (it runs on the server's threads)."""
    where = addresses()
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

    server = ThreadingHTTPServer((where.bind, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalServer(f"http://{where.advertised}:{server.server_address[1]}", received)
    finally:
        server.shutdown()
        server.server_close()
