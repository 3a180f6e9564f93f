"""The runtime processes (python_runtime.py, node_runtime.js), started directly as the executor
starts them, without LocalStack: they must speak protocol.py the same way, so the executor can
run a Python or a Node.js function alike."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

pytest.importorskip(
    "localstack",
    reason="LocalStack is not installed on this host (Docker mode runs it in a container)",
)

from sandbox.executor import protocol

EXECUTOR = Path(protocol.__file__).parent
READ_TIMEOUT_S = 10.0
ARN = "arn:aws:lambda:us-east-1:000000000000:function:probe"


@dataclass(frozen=True)
class Language:
    name: str
    command: tuple[str, ...]
    extension: str


PYTHON = Language("python", (sys.executable, str(EXECUTOR / "python_runtime.py")), ".py")
NODE = Language("node", ("node", str(EXECUTOR / "node_runtime.js")), ".js")

# Handlers doing the same thing in both languages, by scenario.
HANDLERS = {
    "echo": {
        "python": "def handler(event, context):\n    return {'echo': event['value']}\n",
        "node": "exports.handler = async (event) => ({ echo: event.value });\n",
    },
    "context": {
        "python": (
            "def handler(event, context):\n"
            "    return [context.aws_request_id, context.function_name,\n"
            "            context.function_version, context.invoked_function_arn,\n"
            "            context.log_group_name, context.memory_limit_in_mb]\n"
        ),
        "node": (
            "exports.handler = async (event, context) => [context.awsRequestId,\n"
            "  context.functionName, context.functionVersion, context.invokedFunctionArn,\n"
            "  context.logGroupName, context.memoryLimitInMB];\n"
        ),
    },
    "print": {
        "python": "def handler(event, context):\n    print('hello from the handler')\n",
        "node": "exports.handler = async () => { console.log('hello from the handler'); };\n",
    },
    "long_line": {
        "python": "def handler(event, context):\n    print('x' * 300_000)\n",
        "node": "exports.handler = async () => { console.log('x'.repeat(300000)); };\n",
    },
    "raise": {
        "python": "def handler(event, context):\n    raise ValueError('boom')\n",
        "node": "exports.handler = async () => { throw new Error('boom'); };\n",
    },
    "remaining": {
        "python": "def handler(event, ctx):\n    return ctx.get_remaining_time_in_millis()\n",
        "node": "exports.handler = async (e, context) => context.getRemainingTimeInMillis();\n",
    },
    "sleep": {
        "python": (
            "import time\n"
            "def handler(event, context):\n"
            "    time.sleep(event['delay'])\n"
            "    return event['n']\n"
        ),
        "node": (
            "exports.handler = async (event) => {\n"
            "  await new Promise((resolve) => setTimeout(resolve, event.delay * 1000));\n"
            "  return event.n;\n"
            "};\n"
        ),
    },
}


class Runtime:
    """One runtime process, wired as executor.py wires it: requests on stdin, messages back
    on the pipe named by SANDBOX_RUNTIME_FD, read by a thread so every read has a deadline."""

    def __init__(self, command: tuple[str, ...], code_dir: Path, handler: str) -> None:
        lambda_env = {
            "_HANDLER": handler,
            "AWS_LAMBDA_FUNCTION_NAME": "probe",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": 128,
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/probe",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]0123456789abcdef",
        }
        read_fd, write_fd = os.pipe()
        env = {
            **protocol.runtime_environment(lambda_env, str(code_dir), dict(os.environ)),
            protocol.RUNTIME_FD_ENV: str(write_fd),
        }
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, env=env, cwd=code_dir, pass_fds=(write_fd,)
        )
        os.close(write_fd)
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, args=(os.fdopen(read_fd, "rb"),), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        with stream:
            for line in stream:
                self._messages.put(protocol.decode(line))
        self._messages.put(None)  # the pipe closed: the process is gone

    def next_message(self) -> dict[str, Any] | None:
        """The next message, or None once the process has closed its end of the pipe."""
        try:
            return self._messages.get(timeout=READ_TIMEOUT_S)
        except queue.Empty:
            pytest.fail(f"the runtime sent nothing within {READ_TIMEOUT_S} s")

    def expect(self, message_type: str) -> dict[str, Any]:
        message = self.next_message()
        assert message is not None and message["type"] == message_type, message
        return message

    def send(self, event: Any, timeout_s: float = 3.0) -> str:
        request_id = str(uuid.uuid4())
        payload = {
            "invoke-id": request_id,
            "invoked-function-arn": ARN,
            "payload": json.dumps(event),
            "trace-id": "Root=1-00000000-000000000000000000000000",
        }
        request = protocol.invoke_request(payload, timeout_s, time.time() * 1000)
        assert self.process.stdin is not None
        self.process.stdin.write(protocol.encode(request))
        self.process.stdin.flush()
        return request_id

    def result(self, request_id: str) -> tuple[list[str], dict[str, Any]]:
        """The log lines sent before the result of `request_id`, and the result."""
        logs = []
        while (message := self.next_message()) is not None and message["type"] == "log":
            logs.append(message["data"])
        assert message is not None and message["type"] == "result", message
        assert message["request_id"] == request_id
        return logs, message

    def invoke(self, event: Any, timeout_s: float = 3.0) -> tuple[list[str], dict[str, Any]]:
        return self.result(self.send(event, timeout_s))

    def exit_code(self) -> int:
        """Close stdin (as when the executor goes away) and wait for the process to end."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(timeout=READ_TIMEOUT_S)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=READ_TIMEOUT_S)


StartRuntime = Callable[..., Runtime]


def _node() -> Language:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    return NODE


@pytest.fixture(params=[PYTHON, NODE], ids=lambda language: language.name)
def language(request: pytest.FixtureRequest) -> Language:
    return _node() if request.param is NODE else request.param


@pytest.fixture
def node() -> Language:
    return _node()


@pytest.fixture
def start_runtime(tmp_path: Path) -> Iterator[StartRuntime]:
    """Writes a handler into a fresh code directory and starts the runtime on it; every process
    started is killed after the test, whatever it asserted."""
    started: list[Runtime] = []

    def start(
        language: Language, source: str, handler: str = "app.handler", filename: str = ""
    ) -> Runtime:
        path = tmp_path / (filename or f"app{language.extension}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        runtime = Runtime(language.command, tmp_path, handler)
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.kill()


@pytest.fixture
def ready_runtime(start_runtime: StartRuntime, language: Language) -> Callable[[str], Runtime]:
    """Starts the scenario's handler in `language` and waits through its init phase."""

    def start(scenario: str) -> Runtime:
        runtime = start_runtime(language, HANDLERS[scenario][language.name])
        runtime.expect("ready")
        return runtime

    return start


# -- shared behaviour -------------------------------------------------------------------------


def test_ready_then_the_result_as_json(ready_runtime: Callable[[str], Runtime]) -> None:
    """After init the handler's return value comes back JSON-encoded, as Invoke returns it."""
    runtime = ready_runtime("echo")
    _logs, result = runtime.invoke({"value": 42})
    assert result["ok"] is True
    assert json.loads(result["payload"]) == {"echo": 42}


def test_context_describes_the_function(
    ready_runtime: Callable[[str], Runtime], language: Language
) -> None:
    """Handlers read their name, version and ARN from the context, under each language's names."""
    runtime = ready_runtime("context")
    request_id = runtime.send({})
    _logs, result = runtime.result(request_id)
    *fields, memory = json.loads(result["payload"])
    assert fields == [request_id, "probe", "$LATEST", ARN, "/aws/lambda/probe"]
    # Lambda's runtimes both have the memory size as a string; python_runtime.py has an int.
    assert str(memory) == "128"
    if language is NODE:
        assert memory == "128"


def test_printed_output_arrives_as_logs_before_the_result(
    ready_runtime: Callable[[str], Runtime],
) -> None:
    """Output is sent as it is written, so it reaches the logs even if the invocation times out."""
    runtime = ready_runtime("print")
    logs, result = runtime.invoke({})
    assert any("hello from the handler" in line for line in logs), logs
    assert all(line.endswith("\n") for line in logs)
    assert result["ok"] is True
    assert result["payload"] == "null"


def test_a_line_over_cloudwatchs_limit_is_truncated_in_the_runtime(
    ready_runtime: Callable[[str], Runtime],
) -> None:
    """Lambda truncates a log event at 256 KB; the runtime does so before the pipe."""
    runtime = ready_runtime("long_line")
    logs, _result = runtime.invoke({})
    assert logs and all(len(line.encode()) <= protocol.MAX_LOG_LINE_BYTES + 1 for line in logs)
    assert any(len(line) > 200_000 for line in logs), [len(line) for line in logs]


def test_an_error_fails_the_invocation(
    ready_runtime: Callable[[str], Runtime], language: Language
) -> None:
    """A raised error becomes Lambda's error document, and is logged as Lambda logs it."""
    runtime = ready_runtime("raise")
    logs, result = runtime.invoke({})
    assert result["ok"] is False
    assert result["error"]["errorType"] == ("ValueError" if language is PYTHON else "Error")
    assert result["error"]["errorMessage"] == "boom"
    assert any("boom" in line for line in logs), logs


def test_the_process_survives_an_error(ready_runtime: Callable[[str], Runtime]) -> None:
    """A failed invocation leaves the environment warm for the next one."""
    runtime = ready_runtime("raise")
    runtime.invoke({})
    _logs, result = runtime.invoke({})
    assert result["error"]["errorMessage"] == "boom"


def test_remaining_time_counts_down_from_the_deadline(
    ready_runtime: Callable[[str], Runtime],
) -> None:
    """The remaining time is taken from the request's deadline, so it is within the timeout."""
    runtime = ready_runtime("remaining")
    _logs, result = runtime.invoke({}, timeout_s=3.0)
    assert 0 < json.loads(result["payload"]) <= 3000


def test_invocations_are_answered_one_at_a_time_in_order(
    ready_runtime: Callable[[str], Runtime],
) -> None:
    """A request sent while another runs waits for it, even if it would finish first."""
    runtime = ready_runtime("sleep")
    first = runtime.send({"delay": 0.3, "n": 1})
    second = runtime.send({"delay": 0, "n": 2})
    assert json.loads(runtime.result(first)[1]["payload"]) == 1
    assert json.loads(runtime.result(second)[1]["payload"]) == 2


def test_a_missing_module_is_an_init_error(start_runtime: StartRuntime, language: Language) -> None:
    """A handler naming a module that does not exist fails init as Lambda reports it."""
    runtime = start_runtime(language, HANDLERS["echo"][language.name], handler="missing.handler")
    error = runtime.expect("init_error")["error"]
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "missing" in error["errorMessage"]
    assert runtime.next_message() is None
    assert runtime.process.wait(timeout=READ_TIMEOUT_S) == 0


def test_the_process_exits_when_stdin_closes(ready_runtime: Callable[[str], Runtime]) -> None:
    """The executor (or LocalStack) going away ends the environment."""
    runtime = ready_runtime("echo")
    runtime.invoke({"value": 1})
    assert runtime.exit_code() == 0
    assert runtime.next_message() is None


# -- Node.js ----------------------------------------------------------------------------------


def test_node_awaits_an_async_handler(start_runtime: StartRuntime, node: Language) -> None:
    """An async handler's promise is awaited; its resolved value is the result."""
    source = (
        "exports.handler = async (event) => {\n"
        "  await new Promise((resolve) => setTimeout(resolve, 50));\n"
        "  return { doubled: event.value * 2 };\n"
        "};\n"
    )
    runtime = start_runtime(node, source)
    runtime.expect("ready")
    _logs, result = runtime.invoke({"value": 21})
    assert json.loads(result["payload"]) == {"doubled": 42}


def test_node_callback_style_handler(start_runtime: StartRuntime, node: Language) -> None:
    """A three-parameter handler answers through its callback, later and with an error too."""
    source = (
        "exports.handler = (event, context, callback) => {\n"
        "  setTimeout(() => event.fail ? callback(new TypeError('bad input'))\n"
        "                              : callback(null, { got: event.value }), 50);\n"
        "};\n"
    )
    runtime = start_runtime(node, source)
    runtime.expect("ready")
    _logs, result = runtime.invoke({"value": "x"})
    assert json.loads(result["payload"]) == {"got": "x"}
    logs, result = runtime.invoke({"fail": True})
    assert result["ok"] is False
    assert result["error"]["errorType"] == "TypeError"
    assert result["error"]["errorMessage"] == "bad input"
    assert result["error"]["trace"][0] == "TypeError: bad input"
    assert any("\tERROR\tInvoke Error \t{" in line for line in logs), logs


def test_node_context_succeed_and_done(start_runtime: StartRuntime, node: Language) -> None:
    """The legacy context.succeed/done calls end the invocation like the callback does."""
    source = "exports.handler = (event, context) => { context.succeed({ legacy: true }); };\n"
    runtime = start_runtime(node, source)
    runtime.expect("ready")
    _logs, result = runtime.invoke({})
    assert json.loads(result["payload"]) == {"legacy": True}


def test_node_loads_an_es_module(start_runtime: StartRuntime, node: Language) -> None:
    """A .mjs handler is loaded with import(), as Lambda loads ES modules."""
    source = "export const handler = async () => 'from esm';\n"
    runtime = start_runtime(node, source, handler="src/app.handler", filename="src/app.mjs")
    runtime.expect("ready")
    _logs, result = runtime.invoke({})
    assert json.loads(result["payload"]) == "from esm"


def test_node_console_lines_look_like_lambdas(start_runtime: StartRuntime, node: Language) -> None:
    """Console lines carry time, request id and level; util.format formats the message; stdout
    writes are sent line by line."""
    source = (
        "exports.handler = async () => {\n"
        "  console.log('n=%d', 5);\n"
        "  console.warn('careful');\n"
        "  console.error({ a: 1 });\n"
        "  process.stdout.write('part ');\n"
        "  process.stdout.write('one\\npart two');\n"
        "};\n"
    )
    runtime = start_runtime(node, source)
    runtime.expect("ready")
    request_id = runtime.send({})
    logs, _result = runtime.result(request_id)
    fields = [line.rstrip("\n").split("\t") for line in logs[:3]]
    assert [field[1:] for field in fields] == [
        [request_id, "INFO", "n=5"],
        [request_id, "WARN", "careful"],
        [request_id, "ERROR", "{ a: 1 }"],
    ]
    assert all(field[0].endswith("Z") and "T" in field[0] for field in fields)
    assert logs[3:] == ["part one\n", "part two\n"]


def test_node_missing_export_is_handler_not_found(
    start_runtime: StartRuntime, node: Language
) -> None:
    """A module without the named export fails init with Runtime.HandlerNotFound."""
    runtime = start_runtime(node, "exports.other = async () => 1;\n")
    error = runtime.expect("init_error")["error"]
    assert error["errorType"] == "Runtime.HandlerNotFound"
    assert error["errorMessage"] == "app.handler is undefined or not exported"


def test_node_unhandled_rejection_fails_and_ends_the_environment(
    start_runtime: StartRuntime, node: Language
) -> None:
    """A rejection nothing awaits fails the invocation and ends the process, as in Lambda,
    instead of only killing it with the reason printed outside the function's logs."""
    source = (
        "exports.handler = (event, context, callback) => {\n"
        "  Promise.reject(new Error('forgotten'));\n"
        "};\n"
    )
    runtime = start_runtime(node, source)
    runtime.expect("ready")
    logs, result = runtime.invoke({})
    assert result["error"]["errorType"] == "Runtime.UnhandledPromiseRejection"
    assert result["error"]["errorMessage"] == "Error: forgotten"
    assert any("Unhandled Promise Rejection" in line for line in logs), logs
    assert runtime.next_message() is None
    assert runtime.process.wait(timeout=READ_TIMEOUT_S) == 128


def test_a_forked_python_environment_answers_like_a_started_one(tmp_path: Path) -> None:
    """Python environments are forked from a template with boto3 loaded (ForkServer); a
    fork must behave like a fresh process: its own environment, init, invoke, and an exit
    message when it ends."""
    from sandbox.executor.executor import ForkServer

    # GIVEN a template process and a handler that reports its process and environment
    (tmp_path / "app.py").write_text(
        "import os, sys\n"
        "def handler(event, context):\n"
        "    return [os.getppid(), os.environ['MARK'], 'boto3' in sys.modules]\n"
    )
    server = ForkServer()
    lambda_env = {"_HANDLER": "app.handler", "MARK": "fork-1", "AWS_LAMBDA_FUNCTION_NAME": "f"}
    env = protocol.runtime_environment(lambda_env, str(tmp_path), dict(os.environ))
    try:
        # WHEN an environment is forked and invoked
        process = server.fork(env)
        assert process.next_message(time.monotonic() + READ_TIMEOUT_S)["type"] == "ready"
        request = protocol.invoke_request(
            {"invoke-id": "r1", "invoked-function-arn": "arn", "payload": "{}"}, 3, 0
        )
        assert process.send(request, time.monotonic() + READ_TIMEOUT_S)
        result = process.next_message(time.monotonic() + READ_TIMEOUT_S)
        # THEN it answers from a child of the template, with its own variables, boto3 loaded
        assert result["ok"], result
        assert json.loads(result["payload"]) == [server._process.pid, "fork-1", True]
        process.kill()
        assert process.next_message(time.monotonic() + READ_TIMEOUT_S) == {
            "type": "exit",
            "returncode": -signal.SIGKILL,
        }
    finally:
        server._socket.close()  # the template ends when the executor's side closes
        assert server._process.wait(timeout=READ_TIMEOUT_S) == 0
