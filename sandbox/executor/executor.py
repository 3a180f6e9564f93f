"""LocalStack's Lambda runtime executor for the embedded sandbox: one local process per
execution environment, instead of one Docker container.

LocalStack decides when to start, reuse (warm), add (concurrency) and stop environments;
this class only runs them. It enforces the function's timeout itself: on expiry the process
is killed, the invocation fails as Lambda reports it, and the next invocation starts a fresh
process (a cold start), as a real environment is replaced after a timeout.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from localstack import config
from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import RuntimeExecutor

from sandbox.executor import protocol

LOG = logging.getLogger(__name__)
HERE = Path(__file__).parent
RUNTIMES = {
    "python": lambda: [sys.executable, str(HERE / "python_runtime.py")],
    "nodejs": lambda: ["node", str(HERE / "node_runtime.js")],
}


class LocalProcessRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self._lambda_env: dict[str, Any] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._init_ms: float | None = None
        self._code_mtime: float | None = None
        self._recent_logs: collections.deque[str] = collections.deque(maxlen=500)

    # -- lifecycle --------------------------------------------------------------------
    def start(self, env_vars: dict[str, str]) -> None:
        self._lambda_env = dict(env_vars)
        self._spawn()

    def stop(self) -> None:
        self._end_process()

    def _code_dir(self) -> str:
        return str(self._code().get_unzipped_code_location())

    def _code(self) -> Any:
        code = self.function_version.config.code
        if code is None:
            raise ValueError("Container-image functions need Docker mode (SANDBOX_MODE=docker).")
        return code

    def _spawn(self) -> None:
        """Start the runtime process and wait through its init phase."""
        family = protocol.runtime_family(self.function_version.config.runtime)
        code_dir = self._code_dir()
        if self._code().is_hot_reloading():
            self._code_mtime = protocol.newest_mtime(code_dir)
        read_fd, write_fd = os.pipe()
        started = time.perf_counter()
        self._process = subprocess.Popen(
            RUNTIMES[family](),
            stdin=subprocess.PIPE,
            env=protocol.runtime_environment(
                self._lambda_env, code_dir, write_fd, dict(os.environ)
            ),
            cwd=code_dir,
            pass_fds=(write_fd,),
        )
        os.close(write_fd)
        self._messages = queue.Queue()
        threading.Thread(
            target=_read_messages,
            args=(self._process, os.fdopen(read_fd, "rb"), self._messages),
            name=f"lambda-runtime-{self.id}",
            daemon=True,
        ).start()
        deadline = time.monotonic() + config.LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT
        while True:
            try:
                message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                message = {
                    "type": "init_error",
                    "error": protocol.error_shape(
                        "Runtime.InitTimeout",
                        f"Init did not finish within {config.LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT} s",
                    ),
                }
            if message["type"] != "log":
                break
            self._recent_logs.append(message["data"])
        if message["type"] != "ready":
            error = message.get("error") or protocol.exit_error("init", message.get("returncode"))
            self._end_process()
            raise StatusErrorException(
                f"Init of {self.function_version.id.function_name} failed: {error['errorMessage']}",
                payload=json.dumps(error).encode(),
            )
        self._init_ms = (time.perf_counter() - started) * 1000

    def _end_process(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(timeout=5)

    # -- invocation -------------------------------------------------------------------
    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        request_id = payload["invoke-id"]
        if self._needs_fresh_process():
            self._end_process()
            try:
                self._spawn()
            except StatusErrorException as init_failed:
                return InvocationResult(request_id, init_failed.payload, is_error=True, logs="")
        assert self._process is not None and self._process.stdin is not None
        timeout_s = float(self.function_version.config.timeout)
        request = protocol.invoke_request(payload, timeout_s, time.time() * 1000)
        logs = [protocol.start_line(request_id, self.function_version.id.qualifier)]
        started = time.perf_counter()
        try:
            self._process.stdin.write(protocol.encode(request))
            self._process.stdin.flush()
        except BrokenPipeError:
            pass  # the process died: the reader thread reports its exit below

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._end_process()
                logs.append(protocol.timeout_log_line(request_id, timeout_s))
                outcome = {"ok": False, "error": protocol.timeout_error(request_id, timeout_s)}
                break
            if message["type"] == "log":
                logs.append(message["data"])
            elif message["type"] == "result" and message["request_id"] == request_id:
                outcome = message
                break
            elif message["type"] == "exit":
                self._process = None
                outcome = {
                    "ok": False,
                    "error": protocol.exit_error(request_id, message["returncode"]),
                }
                break

        duration_ms = (time.perf_counter() - started) * 1000
        memory = int(self.function_version.config.memory_size)
        logs.append(protocol.end_lines(request_id, duration_ms, memory, self._init_ms))
        self._init_ms = None
        self._recent_logs.extend(logs)
        body = str(outcome["payload"]) if outcome["ok"] else json.dumps(outcome["error"])
        return InvocationResult(
            request_id, body.encode(), is_error=not outcome["ok"], logs="".join(logs)
        )

    def _needs_fresh_process(self) -> bool:
        if self._process is None or self._process.poll() is not None:
            return True
        if self._code_mtime is None:
            return False
        return protocol.is_hot_reload_change(
            self._code_mtime, protocol.newest_mtime(self._code_dir())
        )

    # -- addresses LocalStack asks for --------------------------------------------------
    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        host = config.GATEWAY_LISTEN[0].host
        return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host

    def get_runtime_endpoint(self) -> str:
        port = config.GATEWAY_LISTEN[0].port
        return f"http://{self.get_endpoint_from_executor()}:{port}/_localstack_lambda/{self.id}"

    def get_logs(self) -> str:
        return "".join(self._recent_logs)

    # -- per version --------------------------------------------------------------------
    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        protocol.runtime_family(function_version.config.runtime)
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        """Nothing to clean: LocalStack removes the unzipped code itself."""

    @classmethod
    def validate_environment(cls) -> bool:
        return True


def _read_messages(
    process: subprocess.Popen[bytes], stream: IO[bytes], messages: queue.Queue[dict[str, Any]]
) -> None:
    """Forward the runtime's messages; when its pipe closes, report how the process ended."""
    with stream:
        for line in stream:
            try:
                messages.put(protocol.decode(line))
            except ValueError:
                LOG.warning("Ignoring a malformed message from a Lambda runtime: %r", line[:200])
    messages.put({"type": "exit", "returncode": process.wait()})
