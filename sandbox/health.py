"""Is a LocalStack answering, and waiting until it does (with visible progress)."""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any


class NotHealthyError(RuntimeError):
    """LocalStack did not become healthy in time, or its process ended."""


def health(endpoint: str, timeout: float = 10) -> dict[str, Any] | None:
    """LocalStack's health document, or None when nothing answers. A refused connection
    returns at once; the long timeout is for a LocalStack busy with a heavy suite."""
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=timeout) as resp:
            return json.load(resp)
    except (OSError, ValueError, urllib.error.URLError):
        return None


def info(endpoint: str) -> dict[str, Any] | None:
    """LocalStack's info document (version, session id, uptime), or None."""
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/info", timeout=2) as resp:
            return json.load(resp)
    except (OSError, ValueError, urllib.error.URLError):
        return None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(
    endpoint: str,
    timeout: float,
    still_starting: Callable[[], bool] = lambda: True,
    interval: float = 0.1,
) -> float:
    """Poll the health endpoint until it answers; print progress; return the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    last_report = started
    while True:
        if health(endpoint, timeout=1) is not None:
            elapsed = time.monotonic() - started
            print(f"LocalStack is healthy at {endpoint} after {elapsed:.1f} s.", file=sys.stderr)
            return elapsed
        now = time.monotonic()
        if not still_starting():
            raise NotHealthyError(
                f"LocalStack exited while starting. See the log: `make logs` (or {endpoint})."
            )
        if now > deadline:
            raise NotHealthyError(
                f"LocalStack at {endpoint} was not healthy within {timeout:.0f} s."
            )
        if now - last_report >= 2:
            print(
                f"  waiting for LocalStack at {endpoint} ({now - started:.0f} s)...",
                file=sys.stderr,
            )
            last_report = now
        time.sleep(interval)
