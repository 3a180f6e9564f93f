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
import importlib.abc
import importlib.machinery
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
from collections.abc import Callable
from types import ModuleType
from typing import Any

from sandbox.executor.protocol import RUNTIME_FD_ENV, encode, error_shape, truncate_log_line

# What Lambda's Python runtime provides besides the standard library: boto3 and its
# dependencies. A handler finds these in the venv; anything else it must bring itself.
RUNTIME_PACKAGES = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"}
)

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
                for line in complete.split("\n"):
                    send({"type": "log", "data": truncate_log_line(line + "\n")})
            elif len(self._pending) > 4 * 256 * 1024:  # a line Lambda would truncate anyway
                self._pending = truncate_log_line(self._pending + "\n")[:-1]
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                send({"type": "log", "data": truncate_log_line(self._pending + "\n")})
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


class RuntimePackages(importlib.abc.MetaPathFinder):
    """Finds the top-level packages of RUNTIME_PACKAGES (and only those) in the venv; their
    submodules follow from the package's own path."""

    def __init__(self, site_dirs: list[str]) -> None:
        self._site_dirs = site_dirs

    def find_spec(
        self, name: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if path is not None or name not in RUNTIME_PACKAGES:
            return None
        return importlib.machinery.PathFinder.find_spec(name, self._site_dirs)


def _is_standard_library(entry: str) -> bool:
    return (
        os.path.realpath(entry or ".").startswith(os.path.realpath(sys.base_prefix))
        and "site-packages" not in entry
        and "dist-packages" not in entry
    )


def isolate_imports(code_dir: str) -> None:
    """Let the handler import what it could on Lambda: its own code (and what it vendored
    there), the standard library and the runtime's boto3, not the sandbox's venv, so a
    forgotten requirement fails here as it would on AWS."""
    site_dirs = [entry for entry in sys.path if entry and not _is_standard_library(entry)]
    sys.path[:] = [code_dir, *(entry for entry in sys.path if _is_standard_library(entry))]
    sys.meta_path[:] = [  # an editable install's finder would serve the sandbox's own code
        finder
        for finder in sys.meta_path
        if not getattr(finder, "__module__", "").startswith("__editable__")
    ]
    sys.meta_path.append(RuntimePackages(site_dirs))
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()


def main() -> None:
    global _out_fd
    _out_fd = int(os.environ[RUNTIME_FD_ENV])
    code_dir = os.environ["LAMBDA_TASK_ROOT"]
    isolate_imports(code_dir)
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
    (requests) and its message pipe. The reply is {"pid": N} with a pidfd of the child, so
    the executor never signals a pid that may have been recycled.

    The template reaps its children: when one ends, what is left of its process group
    (processes its handler started) is killed, and its exit code is written to its message
    pipe (the template keeps a copy of it for that). Ends when the executor closes the
    socket (LocalStack stopped), ending every environment it forked."""
    share_botocore_data()
    message_pipes: dict[int, int] = {}  # pid -> the environment's message pipe

    def end_environment(pid: int) -> None:
        _kill_group(pid)  # while `pid` is an unreaped zombie, its group id is still ours
        _pid, status = os.waitpid(pid, 0)
        pipe = message_pipes.pop(pid, None)
        if pipe is not None:
            _report_exit(pipe, os.waitstatus_to_exitcode(status))

    def reap(_signum: int, _frame: Any) -> None:
        # SIGCHLD stays blocked while reaping. Otherwise an exit arriving meanwhile runs this
        # handler again, inside this one: both find the same child, the second reap fails
        # (ChildProcessError, an OSError) in the main loop, which took it for a closed socket
        # and ended every environment: deleting a function killed other functions' calls.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            while True:
                try:
                    ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                except ChildProcessError:
                    return
                if ended is None:
                    return
                end_environment(ended.si_pid)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    signal.signal(signal.SIGCHLD, reap)
    control = socket.socket(fileno=control_fd)
    while True:
        try:
            data, fds, _flags, _address = socket.recv_fds(control, 1 << 20, 2)
        except OSError:
            break
        if not data:
            break
        environment = json.loads(data)["env"]
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            pid = os.fork()
            if pid == 0:
                _become_environment(control, environment, fds, list(message_pipes.values()))
            pidfd = os.pidfd_open(pid)
            message_pipes[pid] = fds[1]
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        os.close(fds[0])
        try:
            socket.send_fds(control, [json.dumps({"pid": pid}).encode()], [pidfd])
        except OSError:
            break
        finally:
            os.close(pidfd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for pid in list(message_pipes):
        _kill_group(pid)
        end_environment(pid)


# Services whose botocore data the template parses before forking: those the patterns'
# handlers use, and Lambda's own.
SHARED_SERVICES = (
    "apigatewaymanagementapi",
    "dynamodb",
    "events",
    "lambda",
    "s3",
    "sns",
    "sqs",
    "stepfunctions",
    "sts",
)


def parsed_once(load_file: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    """botocore's `JSONFileLoader.load_file`, each file parsed once for the process: every
    loader (one per boto session) otherwise parses the files it reads anew, and they do not
    change while the process runs. What botocore merges into a loaded model (its SDK
    extras) it merges the same way every time."""
    parsed: dict[str, Any] = {}

    def load_file_once(self: Any, file_path: str) -> Any:
        if file_path not in parsed:
            parsed[file_path] = load_file(self, file_path)
        return parsed[file_path]

    return load_file_once


def share_botocore_data() -> None:
    """Import boto3 and parse, once, the JSON data files (service models, endpoint rules) a
    client of SHARED_SERVICES reads, so forked environments reuse them instead of each
    parsing its own copy: a boto3 client at import costs a cold start ~40 ms instead of
    ~100, and each environment ~9 MB less memory. Every environment still builds its own
    session, config and clients, as on Lambda; only the parsed files are shared, and they
    are frozen out of the garbage collector so collecting in a child does not copy them."""
    import gc

    import boto3
    from botocore import loaders

    loaders.JSONFileLoader.load_file = parsed_once(loaders.JSONFileLoader.load_file)
    throwaway = boto3.Session(
        region_name="us-east-1", aws_access_key_id="template", aws_secret_access_key="template"
    )
    for service in SHARED_SERVICES:
        throwaway.client(service, endpoint_url="http://127.0.0.1:9")
    throwaway.resource("dynamodb", endpoint_url="http://127.0.0.1:9")
    del throwaway
    gc.collect()
    gc.freeze()


def _become_environment(
    control: socket.socket, environment: dict[str, str], fds: list[int], others: list[int]
) -> None:
    """In a forked child: lead a new session (so its handler's processes can be ended with
    it), drop the template's descriptors, and run as one environment. Never returns."""
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        control.close()
        for pipe in others:
            os.close(pipe)
        os.dup2(fds[0], 0)
        os.close(fds[0])
        os.environ.clear()
        os.environ.update({**environment, RUNTIME_FD_ENV: str(fds[1])})
        main()
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _report_exit(pipe: int, returncode: int) -> None:
    """Tell the executor how an environment ended, unless its pipe is full (nobody reads)."""
    try:
        os.set_blocking(pipe, False)  # the environment has ended: no writer is left to mind
        os.write(pipe, encode({"type": "exit", "returncode": returncode}))
    except OSError:
        pass
    finally:
        os.close(pipe)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fork-server"]:
        serve_forks(int(sys.argv[2]))
    else:
        main()
