"""LocalStack's Lambda runtime executor for the embedded sandbox: one local process per
execution environment, instead of one Docker container.

LocalStack decides when to start, reuse (warm), add (concurrency) and stop environments;
this class only runs them. It enforces the function's timeout itself: on expiry the process
is killed, the invocation fails as Lambda reports it, and the next invocation starts a fresh
process (a cold start), as a real environment is replaced after a timeout.

Python environments are forked from a template process that has boto3 imported already
(`ForkServer`), which takes most of the cost out of a cold start; Node.js environments are
started as new processes.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from localstack import config
from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import RuntimeExecutor

from sandbox.executor import protocol

LOG = logging.getLogger(__name__)
HERE = Path(__file__).parent
PYTHON_RUNTIME = str(HERE / "python_runtime.py")
NODE_RUNTIME = str(HERE / "node_runtime.js")


class RuntimeProcess:
    """One environment's process: requests go to its stdin, its messages arrive on a queue.
    When its message pipe closes (it ended), an {"type": "exit"} message follows."""

    def __init__(
        self, pid: int, stdin_fd: int, message_fd: int, exit_status: Callable[[], int | None]
    ) -> None:
        self.pid = pid
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.ended = False
        self._stdin = os.fdopen(stdin_fd, "wb")
        threading.Thread(
            target=self._read, args=(os.fdopen(message_fd, "rb"), exit_status), daemon=True
        ).start()

    def send(self, message: dict[str, Any]) -> None:
        try:
            self._stdin.write(protocol.encode(message))
            self._stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # it ended: the reader reports the exit

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self._stdin.close()
        except BrokenPipeError:
            pass

    def _read(self, stream: IO[bytes], exit_status: Callable[[], int | None]) -> None:
        with stream:
            for line in stream:
                try:
                    self.messages.put(protocol.decode(line))
                except ValueError:
                    LOG.warning(
                        "Ignoring a malformed message from a Lambda runtime: %r", line[:200]
                    )
        self.ended = True
        self.messages.put({"type": "exit", "returncode": exit_status()})


def start_process(command: list[str], env: dict[str, str], cwd: str) -> RuntimeProcess:
    """A runtime as a new process (Node.js)."""
    request_r, request_w = os.pipe()
    message_r, message_w = os.pipe()
    env = {**env, protocol.RUNTIME_FD_ENV: str(message_w)}
    process = subprocess.Popen(command, stdin=request_r, env=env, cwd=cwd, pass_fds=(message_w,))
    os.close(request_r)
    os.close(message_w)
    return RuntimeProcess(process.pid, request_w, message_r, process.wait)


class ForkServer:
    """The template process Python environments are forked from (see python_runtime.py's
    `serve_forks`). One per LocalStack process; it ends when LocalStack does."""

    _shared: ForkServer | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        host = {k: os.environ[k] for k in protocol.HOST_VARIABLES if k in os.environ}
        self._process = subprocess.Popen(
            [sys.executable, PYTHON_RUNTIME, "--fork-server", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=host,
        )
        theirs.close()
        self._socket = ours
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> ForkServer:
        with cls._shared_lock:
            if cls._shared is None or cls._shared._process.poll() is not None:
                cls._shared = cls()
            return cls._shared

    def fork(self, env: dict[str, str]) -> RuntimeProcess:
        request_r, request_w = os.pipe()
        message_r, message_w = os.pipe()
        with self._lock:
            socket.send_fds(
                self._socket, [json.dumps({"env": env}).encode()], [request_r, message_w]
            )
            reply = self._socket.recv(4096)
        os.close(request_r)
        os.close(message_w)
        if not reply:
            raise RuntimeError("The Python fork server ended; see the sandbox log.")
        return RuntimeProcess(json.loads(reply)["pid"], request_w, message_r, lambda: None)


class LocalProcessRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self._lambda_env: dict[str, Any] = {}
        self._process: RuntimeProcess | None = None
        self._init_ms: float | None = None
        self._code_mtime: float | None = None
        self._recent_logs: collections.deque[str] = collections.deque(maxlen=500)

    # -- lifecycle --------------------------------------------------------------------
    def start(self, env_vars: dict[str, str]) -> None:
        self._lambda_env = dict(env_vars)
        self._spawn()

    def stop(self) -> None:
        self._end_process()

    def _code(self) -> Any:
        code = self.function_version.config.code
        if code is None:
            raise ValueError("Container-image functions need Docker mode (SANDBOX_MODE=docker).")
        return code

    def _spawn(self) -> None:
        """Start the runtime process and wait through its init phase."""
        family = protocol.runtime_family(self.function_version.config.runtime)
        code_dir = str(self._code().get_unzipped_code_location())
        if self._code().is_hot_reloading():
            self._code_mtime = protocol.newest_mtime(code_dir)
        env = protocol.runtime_environment(self._lambda_env, code_dir, dict(os.environ))
        started = time.perf_counter()
        if family == "python":
            self._process = ForkServer.shared().fork(env)
        else:
            self._process = start_process(["node", NODE_RUNTIME], env, code_dir)
        message = self._await_init()
        if message["type"] != "ready":
            error = message.get("error") or protocol.exit_error("init", message.get("returncode"))
            self._end_process()
            raise StatusErrorException(
                f"Init of {self.function_version.id.function_name} failed: {error['errorMessage']}",
                payload=json.dumps(error).encode(),
            )
        self._init_ms = (time.perf_counter() - started) * 1000

    def _await_init(self) -> dict[str, Any]:
        """The runtime's first message other than a log line (ready, init_error or exit)."""
        assert self._process is not None
        limit = config.LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT
        deadline = time.monotonic() + limit
        while True:
            try:
                message = self._process.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return {
                    "type": "init_error",
                    "error": protocol.error_shape(
                        "Runtime.InitTimeout", f"Init did not finish within {limit} s"
                    ),
                }
            if message["type"] != "log":
                return message
            self._recent_logs.append(message["data"])

    def _end_process(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()

    # -- invocation -------------------------------------------------------------------
    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        request_id = payload["invoke-id"]
        if self._needs_fresh_process():
            self._end_process()
            try:
                self._spawn()
            except StatusErrorException as init_failed:
                return InvocationResult(request_id, init_failed.payload, is_error=True, logs="")
        process = self._process
        assert process is not None
        timeout_s = float(self.function_version.config.timeout)
        logs = [protocol.start_line(request_id, self.function_version.id.qualifier)]
        started = time.perf_counter()
        process.send(protocol.invoke_request(payload, timeout_s, time.time() * 1000))

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                message = process.messages.get(timeout=max(0.0, deadline - time.monotonic()))
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
        if self._process is None or self._process.ended:
            return True
        if self._code_mtime is None:
            return False
        current = protocol.newest_mtime(str(self._code().get_unzipped_code_location()))
        return protocol.is_hot_reload_change(self._code_mtime, current)

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
        if protocol.runtime_family(function_version.config.runtime) == "python":
            ForkServer.shared()  # starts loading boto3 now, not at the first invocation
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        """Nothing to clean: LocalStack removes the unzipped code itself."""

    @classmethod
    def validate_environment(cls) -> bool:
        return True
