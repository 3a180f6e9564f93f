"""What the executor (inside LocalStack) and a runtime process say to each other.

One JSON object per line. The executor writes requests to the runtime's stdin; the runtime
writes messages to the file descriptor named by SANDBOX_RUNTIME_FD:

    runtime -> executor   {"type": "ready"}
                          {"type": "init_error", "error": {...Lambda error shape...}}
                          {"type": "log", "data": "one line\\n"}
                          {"type": "result", "request_id": ..., "ok": true, "payload": "<json>"}
                          {"type": "result", "request_id": ..., "ok": false, "error": {...}}
    template -> executor  {"type": "exit", "returncode": N}   (a forked environment ended)
    executor -> runtime   {"request_id", "invoked_function_arn", "payload", "deadline_ms",
                           "trace_id"}

Everything here is pure: the unit tests call it directly.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from typing import Any

RUNTIME_FD_ENV = "SANDBOX_RUNTIME_FD"

# Variables a runtime process gets from the host besides those LocalStack passes; the rest
# of LocalStack's own environment stays out, as it would in a Lambda sandbox.
HOST_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "SANDBOX_INSTANCE", "SYSTEMROOT", "TMPDIR")

# CloudWatch Logs takes events of at most 256 KB, counting 26 bytes of overhead per event;
# Lambda truncates a longer line to that.
MAX_LOG_LINE_BYTES = 256 * 1024 - 26
# What the sandbox keeps of one invocation's log (AWS keeps it all, at a price): a handler
# printing 150 MB must not grow LocalStack's memory by as much.
MAX_LOG_BYTES_PER_INVOCATION = 5 * 1024 * 1024


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    message = json.loads(line)
    if not isinstance(message, dict) or "type" not in message and "request_id" not in message:
        raise ValueError(f"not a runtime protocol message: {line[:200]!r}")
    return message


def runtime_environment(
    lambda_env: dict[str, Any], code_dir: str, host_env: dict[str, str]
) -> dict[str, str]:
    """The environment of a runtime process: what LocalStack passes (as strings), the task
    root pointing at the function's code on this host, and a few host basics. (The message
    descriptor, RUNTIME_FD_ENV, is added by whoever makes the pipe.)"""
    env = {key: host_env[key] for key in HOST_VARIABLES if key in host_env}
    env.update({key: str(value) for key, value in lambda_env.items() if value is not None})
    env["LAMBDA_TASK_ROOT"] = code_dir
    env["PYTHONUNBUFFERED"] = "1"
    return env


def invoke_request(payload: dict[str, str], timeout_s: float, now_ms: float) -> dict[str, Any]:
    """Turn LocalStack's invoke payload into the runtime's request, with its deadline."""
    return {
        "request_id": payload["invoke-id"],
        "invoked_function_arn": payload["invoked-function-arn"],
        "payload": payload["payload"],
        "trace_id": payload.get("trace-id"),
        "deadline_ms": int(now_ms + timeout_s * 1000),
    }


def truncate_log_line(line: str) -> str:
    """The line as CloudWatch Logs would store it: at most MAX_LOG_LINE_BYTES (plus newline)."""
    if len(line) * 4 <= MAX_LOG_LINE_BYTES:  # fast path: no character takes more than 4 bytes
        return line
    data = line.encode()
    if len(data) <= MAX_LOG_LINE_BYTES + 1:
        return line
    return data[:MAX_LOG_LINE_BYTES].decode(errors="ignore") + "\n"


class InvocationLog:
    """One invocation's log lines, each truncated as CloudWatch Logs would, and at most
    `limit` bytes in all; what is dropped beyond that is counted in a closing marker line."""

    def __init__(self, limit: int = MAX_LOG_BYTES_PER_INVOCATION) -> None:
        self._limit = limit
        self._lines: list[str] = []
        self._bytes = 0
        self._dropped_lines = 0
        self._dropped_bytes = 0

    def add(self, line: str) -> None:
        line = truncate_log_line(line)
        size = len(line.encode())
        if self._dropped_lines or self._bytes + size > self._limit:
            self._dropped_lines += 1
            self._dropped_bytes += size
            return
        self._lines.append(line)
        self._bytes += size

    def text(self) -> str:
        if not self._dropped_lines:
            return "".join(self._lines)
        marker = (
            f"[sandbox] log truncated: {self._dropped_lines} more lines "
            f"({self._dropped_bytes} bytes) were dropped; the sandbox keeps "
            f"{self._limit // (1024 * 1024)} MB of log per invocation\n"
        )
        return "".join(self._lines) + marker


def error_shape(error_type: str, message: str, stack: list[str] | None = None) -> dict[str, Any]:
    """Lambda's error document, as the Invoke API returns it in the payload."""
    shape: dict[str, Any] = {"errorMessage": message, "errorType": error_type}
    if stack is not None:
        shape["stackTrace"] = stack
    return shape


def timeout_error(request_id: str, timeout_s: float) -> dict[str, Any]:
    return error_shape(
        "Sandbox.Timedout",
        f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds",
    )


def timeout_log_line(request_id: str, timeout_s: float) -> str:
    return f"{timestamp()} {request_id} Task timed out after {timeout_s:.2f} seconds\n"


def exit_error(request_id: str, returncode: int | None) -> dict[str, Any]:
    """The error of an invocation whose runtime process ended (crashed, or exited)."""
    if returncode is None:  # unknown: its fork server ended before it could report it
        reason = "Runtime exited without providing a reason"
    elif returncode < 0:
        reason = f"Runtime exited with error: signal: {-returncode}"
    else:
        reason = f"Runtime exited with error: exit status {returncode}"
    return error_shape("Runtime.ExitError", f"RequestId: {request_id} Error: {reason}")


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def start_line(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}\n"


def end_lines(request_id: str, duration_ms: float, memory_mb: int, init_ms: float | None) -> str:
    """END and REPORT lines, as Lambda writes them after every invocation."""
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {max(1, math.ceil(duration_ms))} ms\tMemory Size: {memory_mb} MB\t"
        f"Max Memory Used: {memory_mb} MB"
    )
    if init_ms is not None:
        report += f"\tInit Duration: {init_ms:.2f} ms"
    return f"END RequestId: {request_id}\n{report}\n"


def runtime_family(runtime: str | None) -> str:
    """`python` or `nodejs` for the runtimes this executor runs; raise for any other."""
    for family in ("python", "nodejs"):
        if runtime and runtime.startswith(family):
            return family
    raise ValueError(
        f"The local-process Lambda executor runs Python and Node.js functions, not {runtime!r}. "
        "Use a python3.x or nodejs runtime, or run the sandbox with Docker (SANDBOX_MODE=docker)."
    )


def is_hot_reload_change(previous: float | None, current: float) -> bool:
    return previous is not None and current != previous


def newest_mtime(root: str) -> float:
    """The newest modification time under `root` (hot-reloaded code changes when it moves)."""
    newest = 0.0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime)
            except OSError:
                continue
    return newest
