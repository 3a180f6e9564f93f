"""LocalStack's Lambda runtime executor for the embedded sandbox: one local process per
execution environment, instead of one Docker container.

LocalStack decides when to start, reuse (warm), add (concurrency) and stop environments;
this class only runs them. It enforces the function's timeout itself: on expiry the process
is killed, the invocation fails as Lambda reports it, and the next invocation starts a fresh
process (a cold start), as a real environment is replaced after a timeout.

Python environments are forked from a template process that has boto3 imported and its data
parsed already (`ForkServer`, `share_botocore_data`), which takes most of the cost out of a cold
start; Node.js environments are started as new processes.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import select
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


# Unread log a runtime may have queued before its writes wait (through its pipe) for the
# executor: a handler flooding its log cannot grow LocalStack's memory.
MAX_QUEUED_LOG_BYTES = 1024 * 1024
# The longest message line read from a runtime: a 6 MB response, JSON-escaped, fits.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# How long a fork request may wait for the template's answer before it is declared wedged.
FORK_REPLY_TIMEOUT_S = 10.0
RECENT_LOG_CHARS = 64 * 1024  # what get_logs() keeps for LocalStack's startup-failure report


class MessageQueue:
    """A runtime's messages, oldest first. Log messages wait (and so does the runtime behind
    its pipe) while more than `max_log_bytes` of log is unread; other messages never wait.
    Once closed (the process was killed), log messages are dropped instead."""

    def __init__(self, max_log_bytes: int = MAX_QUEUED_LOG_BYTES) -> None:
        self._max_log_bytes = max_log_bytes
        self._items: collections.deque[tuple[dict[str, Any], int]] = collections.deque()
        self._log_bytes = 0
        self._closed = False
        self._changed = threading.Condition()

    def put(self, message: dict[str, Any]) -> None:
        size = len(message.get("data", "")) if message.get("type") == "log" else 0
        with self._changed:
            while size and self._log_bytes > self._max_log_bytes and not self._closed:
                self._changed.wait()
            if size and self._closed:
                return
            self._items.append((message, size))
            self._log_bytes += size
            self._changed.notify_all()

    def get(self, timeout: float) -> dict[str, Any] | None:
        """The oldest message, or None if none came within `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._items, timeout=max(0.0, timeout)):
                return None
            message, size = self._items.popleft()
            self._log_bytes -= size
            self._changed.notify_all()
            return message

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


def ready(fd: int, events: int, timeout_s: float) -> bool:
    """Whether `fd` is ready for `events` within the timeout. poll, not select: LocalStack's
    process holds thousands of descriptors with every pattern in use, and select() refuses
    any numbered 1024 or more ("filedescriptor out of range in select()")."""
    waiting = select.poll()
    waiting.register(fd, events)
    return bool(waiting.poll(max(0.0, timeout_s) * 1000))


class RuntimeProcess:
    """One environment's process: requests go to its stdin, its messages arrive on a queue.
    When its message pipe closes (it ended), an {"type": "exit"} message follows.

    It is signalled through a pidfd, never by pid, so a kill cannot reach a recycled pid.
    `reap` (if given) waits for the process to end, ends its process group and returns its
    exit code; a forked environment's exit code comes from the template, on the pipe."""

    def __init__(
        self,
        pid: int,
        pidfd: int,
        stdin_fd: int,
        message_fd: int,
        reap: Callable[[], int | None] | None = None,
    ) -> None:
        self.pid = pid
        self.messages = MessageQueue()
        self.ended = False
        self._pidfd: int | None = pidfd
        self._pidfd_lock = threading.Lock()
        self._stdin_fd: int | None = stdin_fd
        self._stdin_lock = threading.Lock()
        os.set_blocking(stdin_fd, False)
        self._returncode: int | None = None
        reaper = None
        if reap is not None:
            reaper = threading.Thread(target=self._await_exit, args=(reap,), daemon=True)
            reaper.start()
        threading.Thread(
            target=self._read, args=(os.fdopen(message_fd, "rb"), reaper), daemon=True
        ).start()

    def next_message(self, deadline: float) -> dict[str, Any] | None:
        """The next message, or None if none came before `deadline` (time.monotonic())."""
        return self.messages.get(timeout=deadline - time.monotonic())

    def send(self, message: dict[str, Any], deadline: float) -> bool:
        """Write a request to the runtime's stdin; False if it did not all go by `deadline`
        (the runtime does not read: it is busy or wedged). A runtime that ended is not an
        error here: its reader reports the exit."""
        data = memoryview(protocol.encode(message))
        with self._stdin_lock:
            while data:
                if self._stdin_fd is None:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if not ready(self._stdin_fd, select.POLLOUT, remaining):
                    continue
                try:
                    data = data[os.write(self._stdin_fd, data) :]
                except BlockingIOError:
                    continue
                except OSError:  # it ended
                    return True
        return True

    def kill(self) -> None:
        with self._pidfd_lock:
            if self._pidfd is not None:
                try:
                    signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        with self._stdin_lock:
            if self._stdin_fd is not None:
                os.close(self._stdin_fd)
                self._stdin_fd = None
        self.messages.close()

    def _await_exit(self, reap: Callable[[], int | None]) -> None:
        self._returncode = reap()

    def _read(self, stream: IO[bytes], reaper: threading.Thread | None) -> None:
        with stream:
            while line := stream.readline(MAX_MESSAGE_BYTES):
                if not line.endswith(b"\n"):
                    _skip_rest_of_line(stream)
                    LOG.warning("Dropped a Lambda runtime message over %d bytes", MAX_MESSAGE_BYTES)
                    continue
                try:
                    message = protocol.decode(line)
                except ValueError:
                    LOG.warning(
                        "Ignoring a malformed message from a Lambda runtime: %r", line[:200]
                    )
                    continue
                if message.get("type") == "exit":  # from the template, after the process
                    self._returncode = message.get("returncode")
                else:
                    self.messages.put(message)
        if reaper is not None:
            reaper.join()
        with self._pidfd_lock:
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        self.ended = True
        self.messages.put({"type": "exit", "returncode": self._returncode})


def _skip_rest_of_line(stream: IO[bytes]) -> None:
    while (chunk := stream.readline(MAX_MESSAGE_BYTES)) and not chunk.endswith(b"\n"):
        pass


def end_group(pid: int) -> None:
    """Kill what is left of an environment's process group (what its handler started). Only
    called while the group's leader is unreaped, so `pid` cannot have been recycled."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def start_process(command: list[str], env: dict[str, str], cwd: str) -> RuntimeProcess:
    """A runtime as a new process (Node.js), leading its own process group."""
    request_r, request_w = os.pipe()
    message_r, message_w = os.pipe()
    env = {**env, protocol.RUNTIME_FD_ENV: str(message_w)}
    process = subprocess.Popen(
        command,
        stdin=request_r,
        env=env,
        cwd=cwd,
        pass_fds=(message_w,),
        start_new_session=True,
    )
    os.close(request_r)
    os.close(message_w)

    def reap() -> int:
        # Wait without reaping, so the pid (and the group id) stay ours while the group ends.
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        end_group(process.pid)
        process.returncode = os.waitstatus_to_exitcode(os.waitpid(process.pid, 0)[1])
        return process.returncode

    return RuntimeProcess(process.pid, os.pidfd_open(process.pid), request_w, message_r, reap)


class ForkServerError(Exception):
    """The template could not fork an environment (it ended, or did not answer in time)."""


class ForkServer:
    """The template process Python environments are forked from (see python_runtime.py's
    `serve_forks`). One per LocalStack process; it ends when LocalStack does. A template
    that does not answer a fork request within FORK_REPLY_TIMEOUT_S is killed, and the next
    request starts a new one."""

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
        ours.settimeout(FORK_REPLY_TIMEOUT_S)
        self._socket = ours
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def shared(cls) -> ForkServer:
        with cls._shared_lock:
            current = cls._shared
            if current is None or not current.usable():
                if current is not None:
                    current.close()
                current = cls._shared = cls()
            return current

    def usable(self) -> bool:
        return not self._closed and self._process.poll() is None

    def fork(self, env: dict[str, str]) -> RuntimeProcess:
        request_r, request_w = os.pipe()
        message_r, message_w = os.pipe()
        try:
            with self._lock:
                if self._closed:
                    raise ForkServerError("The Python fork server was replaced; try again.")
                try:
                    socket.send_fds(
                        self._socket, [json.dumps({"env": env}).encode()], [request_r, message_w]
                    )
                    reply, fds, _flags, _address = socket.recv_fds(self._socket, 4096, 1)
                except OSError as error:  # TimeoutError included: the template is wedged
                    self.close()
                    raise ForkServerError(
                        f"The Python fork server did not answer ({error!r}); it was replaced."
                    ) from error
                if not reply or not fds:
                    self.close()
                    raise ForkServerError("The Python fork server ended; see the sandbox log.")
        except BaseException:
            os.close(request_w)
            os.close(message_r)
            raise
        finally:
            os.close(request_r)
            os.close(message_w)
        return RuntimeProcess(json.loads(reply)["pid"], fds[0], request_w, message_r)

    def close(self) -> None:
        """End the template and close our end of its socket (called under no fork request,
        or by the request that found the template wedged)."""
        self._closed = True
        self._process.kill()
        try:
            self._process.wait(timeout=FORK_REPLY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            LOG.warning("The Python fork server %d did not end when killed", self._process.pid)
        self._socket.close()


class LocalProcessRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self._lambda_env: dict[str, Any] = {}
        self._process: RuntimeProcess | None = None
        # Orders stop() against a spawn under way: a process started after stop() is
        # killed at once instead of being left running with nothing to end it.
        self._lifecycle_lock = threading.Lock()
        self._stopped = False
        self._init_ms: float | None = None
        self._code_mtime: float | None = None
        self._recent_logs = ""

    # -- lifecycle --------------------------------------------------------------------
    def start(self, env_vars: dict[str, str]) -> None:
        self._lambda_env = dict(env_vars)
        self._spawn()

    def stop(self) -> None:
        with self._lifecycle_lock:
            self._stopped = True
            process, self._process = self._process, None
        if process is not None:
            process.kill()

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
        try:
            if family == "python":
                process = ForkServer.shared().fork(env)
            else:
                process = start_process(["node", NODE_RUNTIME], env, code_dir)
        except ForkServerError as fork_failed:
            shape = protocol.error_shape("Runtime.Unknown", str(fork_failed))
            raise self._init_failed(shape) from fork_failed
        with self._lifecycle_lock:
            if self._stopped:
                process.kill()
                raise self._init_failed(
                    protocol.error_shape("Runtime.Unknown", "The environment was stopped")
                )
            self._process = process
        message = self._await_init(process)
        if message["type"] != "ready":
            error = message.get("error") or protocol.exit_error("init", message.get("returncode"))
            self._end_process()
            raise self._init_failed(error)
        self._init_ms = (time.perf_counter() - started) * 1000

    def _init_failed(self, error: dict[str, Any]) -> StatusErrorException:
        return StatusErrorException(
            f"Init of {self.function_version.id.function_name} failed: {error['errorMessage']}",
            payload=json.dumps(error).encode(),
        )

    def _await_init(self, process: RuntimeProcess) -> dict[str, Any]:
        """The runtime's first message other than a log line (ready, init_error or exit)."""
        limit = config.LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT
        deadline = time.monotonic() + limit
        init_log = protocol.InvocationLog()
        try:
            while True:
                message = process.next_message(deadline)
                if message is None:
                    return {
                        "type": "init_error",
                        "error": protocol.error_shape(
                            "Runtime.InitTimeout", f"Init did not finish within {limit} s"
                        ),
                    }
                if message["type"] != "log":
                    return message
                init_log.add(message["data"])
        finally:
            self._remember_logs(init_log.text())

    def _end_process(self) -> None:
        with self._lifecycle_lock:
            process, self._process = self._process, None
        if process is not None:
            process.kill()

    def _remember_logs(self, text: str) -> None:
        self._recent_logs = (self._recent_logs + text)[-RECENT_LOG_CHARS:]

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
        if process is None:  # stopped meanwhile
            error = protocol.exit_error(request_id, None)
            return InvocationResult(request_id, json.dumps(error).encode(), is_error=True, logs="")
        timeout_s = float(self.function_version.config.timeout)
        logs = protocol.InvocationLog()
        logs.add(protocol.start_line(request_id, self.function_version.id.qualifier))
        started = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        closing = ""
        request = protocol.invoke_request(payload, timeout_s, time.time() * 1000)
        sent = process.send(request, deadline)
        while True:
            message = process.next_message(deadline) if sent else None
            if message is None:
                self._end_process()
                closing = protocol.timeout_log_line(request_id, timeout_s)
                outcome = {"ok": False, "error": protocol.timeout_error(request_id, timeout_s)}
                break
            if message["type"] == "log":
                logs.add(message["data"])
            elif message["type"] == "result" and message["request_id"] == request_id:
                outcome = message
                break
            elif message["type"] == "exit":
                with self._lifecycle_lock:
                    if self._process is process:
                        self._process = None
                outcome = {
                    "ok": False,
                    "error": protocol.exit_error(request_id, message["returncode"]),
                }
                break

        duration_ms = (time.perf_counter() - started) * 1000
        memory = int(self.function_version.config.memory_size)
        closing += protocol.end_lines(request_id, duration_ms, memory, self._init_ms)
        self._init_ms = None
        text = logs.text() + closing
        self._remember_logs(text)
        body = str(outcome["payload"]) if outcome["ok"] else json.dumps(outcome["error"])
        return InvocationResult(request_id, body.encode(), is_error=not outcome["ok"], logs=text)

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
        return self._recent_logs

    # -- per version --------------------------------------------------------------------
    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        if protocol.runtime_family(function_version.config.runtime) == "python":
            ForkServer.shared()  # a template that ended is replaced now, not at an invocation
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        """Nothing to clean: LocalStack removes the unzipped code itself."""

    @classmethod
    def validate_environment(cls) -> bool:
        return True
