"""The runtime inside one Python execution environment (a process the executor starts).

It imports the function's handler once (the init phase), then answers invocations read from
stdin, one at a time, for as long as LocalStack keeps the environment warm. What the handler
prints or logs is sent back line by line, so it reaches CloudWatch Logs even if the
invocation later times out. See protocol.py for the messages.

Run as `python_runtime.py --fork-server FD`, it is instead the template every environment is
forked from (see `serve_forks`); run plainly, it is one environment.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

from sandbox.executor.protocol import RUNTIME_FD_ENV, encode, error_shape

_send_lock = threading.Lock()
_out_fd = -1  # the message pipe; main() reads it from RUNTIME_FD_ENV before any handler runs


def send(message: dict[str, Any]) -> None:
    data = encode(message)
    with _send_lock:
        while data:
            data = data[os.write(_out_fd, data) :]


class LogStream(io.TextIOBase):
    """Stands in for stdout/stderr: whole lines go to the executor as log messages."""

    def __init__(self) -> None:
        self._pending = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            if "\n" in self._pending:
                complete, _, self._pending = self._pending.rpartition("\n")
                send({"type": "log", "data": complete + "\n"})
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                send({"type": "log", "data": self._pending + "\n"})
                self._pending = ""


class LambdaContext:
    """The context object a Lambda handler receives, with the real attribute names."""

    def __init__(self, request_id: str, invoked_function_arn: str, deadline_ms: int) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        # a string, as in Lambda's own runtime (awslambdaric)
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def configure_logging(stream: LogStream) -> _RequestIdFilter:
    """Root logging as Lambda's Python runtime sets it up: level, request id in every line."""
    request_ids = _RequestIdFilter()
    handler = logging.StreamHandler(stream)
    handler.addFilter(request_ids)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(os.environ.get("AWS_LAMBDA_LOG_LEVEL", "WARNING").upper())
    return request_ids


def describe(error: BaseException) -> dict[str, Any]:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename != __file__]
    stack = traceback.format_list(frames)
    return error_shape(type(error).__name__, str(error), [line.rstrip("\n") for line in stack])


def load_handler(spec: str) -> Any:
    """Import the handler's module (Lambda's init phase). An error raised by the module's own
    code propagates with its own type, as on Lambda."""
    module_name, _, function_name = spec.rpartition(".")
    if not module_name or not function_name:
        raise InitError(
            "Runtime.MalformedHandlerName", f"Bad handler '{spec}': use module.function"
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as error:
        raise InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}"
        ) from error
    except SyntaxError as error:
        raise InitError(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {error}"
        ) from error
    handler = getattr(module, function_name, None)
    if not callable(handler):
        raise InitError(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        )
    return handler


class InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def invoke(handler: Any, request: dict[str, Any], request_ids: _RequestIdFilter) -> dict[str, Any]:
    request_id = request["request_id"]
    request_ids.request_id = request_id
    if request.get("trace_id"):
        os.environ["_X_AMZN_TRACE_ID"] = request["trace_id"]
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    context = LambdaContext(request_id, request["invoked_function_arn"], request["deadline_ms"])
    try:
        event = json.loads(request["payload"]) if request["payload"] else {}
        result = handler(event, context)
        try:
            payload = json.dumps(result)
        except (TypeError, ValueError) as error:
            return {
                "ok": False,
                "error": error_shape(
                    "Runtime.MarshalError", f"Unable to marshal response: {error}"
                ),
            }
        return {"ok": True, "payload": payload}
    except Exception as error:
        shape = describe(error)
        print(f"[ERROR] {shape['errorType']}: {shape['errorMessage']}", file=sys.stderr)
        print(
            "Traceback (most recent call last):\n" + "".join(shape["stackTrace"]), file=sys.stderr
        )
        return {"ok": False, "error": shape}


def main() -> None:
    global _out_fd
    _out_fd = int(os.environ[RUNTIME_FD_ENV])
    code_dir = os.environ["LAMBDA_TASK_ROOT"]
    sys.path[0] = code_dir  # replaces this file's folder
    os.chdir(code_dir)
    stream = LogStream()
    sys.stdout = sys.stderr = stream
    request_ids = configure_logging(stream)
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except InitError as error:
        stream.flush()
        send({"type": "init_error", "error": error_shape(error.error_type, str(error))})
        return
    except Exception as error:  # the module raised while importing
        stream.flush()
        send({"type": "init_error", "error": describe(error)})
        return
    stream.flush()
    send({"type": "ready"})
    for line in sys.stdin.buffer:  # EOF: the executor (or LocalStack) is gone
        request = json.loads(line)
        outcome = invoke(handler, request, request_ids)
        stream.flush()
        send({"type": "result", "request_id": request["request_id"], **outcome})


def serve_forks(control_fd: int) -> None:
    """Be the template of every Python environment: import boto3 once (most of a cold
    start), then for each request on the control socket fork a child that becomes one
    environment. A request is {"env": {...}} with two descriptors: the environment's stdin
    (requests) and its message pipe. The reply is {"pid": N}. Ends when the executor closes
    the socket (LocalStack stopped)."""
    import boto3  # noqa: F401  (imported here once; every fork starts with it loaded)

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps ended environments
    control = socket.socket(fileno=control_fd)
    while True:
        try:
            data, fds, _flags, _address = socket.recv_fds(control, 1 << 20, 2)
        except OSError:
            return
        if not data:
            return
        environment = json.loads(data)["env"]
        pid = os.fork()
        if pid == 0:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.dup2(fds[0], 0)
            os.close(fds[0])
            os.environ.clear()
            os.environ.update({**environment, RUNTIME_FD_ENV: str(fds[1])})
            try:
                main()
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        for fd in fds:
            os.close(fd)
        control.sendall(json.dumps({"pid": pid}).encode())


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fork-server"]:
        serve_forks(int(sys.argv[2]))
    else:
        main()
