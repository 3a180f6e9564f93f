"""The executor survives what real handler code does: child processes, floods of log, huge
payloads, a wedged fork server, a stop during a start. Real processes, no LocalStack."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip(
    "localstack",
    reason="LocalStack is not installed on this host (Docker mode runs it in a container)",
)
from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException

from sandbox.executor import executor, protocol
from sandbox.harness import await_value

WAIT_S = 10.0


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def environment(code_dir: Path, handler: str = "app.handler") -> dict[str, str]:
    lambda_env = {"_HANDLER": handler, "AWS_LAMBDA_FUNCTION_NAME": "probe"}
    return protocol.runtime_environment(lambda_env, str(code_dir), dict(os.environ))


def request(event: Any, timeout_s: float = 5.0) -> dict[str, Any]:
    payload = {"invoke-id": "r1", "invoked-function-arn": "arn", "payload": json.dumps(event)}
    return protocol.invoke_request(payload, timeout_s, time.time() * 1000)


def next_message(process: executor.RuntimeProcess) -> dict[str, Any]:
    """The next message other than a log line."""
    deadline = time.monotonic() + WAIT_S
    while (message := process.next_message(deadline)) is not None:
        if message["type"] != "log":
            return message
    pytest.fail(f"no message within {WAIT_S} s")


@pytest.fixture
def fork_server() -> Iterator[executor.ForkServer]:
    server = executor.ForkServer()
    yield server
    server.close()


SPAWNS_A_CHILD = (
    "import subprocess, sys\n"
    "def handler(event, context):\n"
    "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "    return child.pid\n"
)


def test_a_killed_environment_takes_its_handlers_children_with_it(
    fork_server: executor.ForkServer, tmp_path: Path
) -> None:
    """A timeout kills the environment; what its handler started must not outlive it."""
    (tmp_path / "app.py").write_text(SPAWNS_A_CHILD)
    process = fork_server.fork(environment(tmp_path))
    assert next_message(process)["type"] == "ready"
    assert process.send(request({}), time.monotonic() + WAIT_S)
    child = json.loads(next_message(process)["payload"])
    assert alive(child)
    process.kill()
    assert next_message(process) == {"type": "exit", "returncode": -signal.SIGKILL}
    await_value(
        lambda: not alive(child),
        timeout=WAIT_S,
        interval=0.05,
        waiting_for=f"the handler's child {child} to end",
    )


def test_a_node_environment_takes_its_handlers_children_with_it(tmp_path: Path) -> None:
    """Node.js environments are started, not forked: they lead their own process group too."""
    if not any(os.access(Path(d) / "node", os.X_OK) for d in os.environ["PATH"].split(":")):
        pytest.skip("node is not installed")
    (tmp_path / "index.js").write_text(
        "const { spawn } = require('child_process');\n"
        "exports.handler = async () => spawn('sleep', ['60']).pid;\n"
    )
    process = executor.start_process(
        ["node", executor.NODE_RUNTIME], environment(tmp_path, "index.handler"), str(tmp_path)
    )
    assert next_message(process)["type"] == "ready"
    assert process.send(request({}), time.monotonic() + WAIT_S)
    child = json.loads(next_message(process)["payload"])
    process.kill()
    assert next_message(process) == {"type": "exit", "returncode": -signal.SIGKILL}
    await_value(
        lambda: not alive(child),
        timeout=WAIT_S,
        interval=0.05,
        waiting_for=f"the handler's child {child} to end",
    )


def test_a_forked_environments_exit_code_is_reported(
    fork_server: executor.ForkServer, tmp_path: Path
) -> None:
    """The template reaps its children, so an environment's exit status is not lost."""
    (tmp_path / "app.py").write_text("import os\ndef handler(event, context):\n    os._exit(3)\n")
    process = fork_server.fork(environment(tmp_path))
    assert next_message(process)["type"] == "ready"
    assert process.send(request({}), time.monotonic() + WAIT_S)
    assert next_message(process) == {"type": "exit", "returncode": 3}


def test_a_send_to_a_runtime_that_does_not_read_gives_up_at_the_deadline(tmp_path: Path) -> None:
    """A payload larger than the pipe's buffer, to a runtime busy elsewhere, must not block
    the executor past the invocation's deadline."""
    process = executor.start_process(["sleep", "60"], environment(tmp_path), str(tmp_path))
    try:
        started = time.monotonic()
        assert not process.send({"payload": "x" * (8 << 20)}, started + 0.5)
        assert time.monotonic() - started < 3
    finally:
        process.kill()
    assert next_message(process)["type"] == "exit"


def test_a_wedged_fork_server_is_replaced_and_its_socket_closed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One template that stops answering must not stall every Python cold start."""
    usual_timeout = executor.FORK_REPLY_TIMEOUT_S
    monkeypatch.setattr(executor, "FORK_REPLY_TIMEOUT_S", 0.5)
    monkeypatch.setattr(executor.ForkServer, "_shared", None)
    wedged = executor.ForkServer.shared()
    os.kill(wedged._process.pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(executor.ForkServerError):
        wedged.fork(environment(tmp_path))
    assert time.monotonic() - started < usual_timeout
    assert wedged._process.poll() is not None and wedged._socket.fileno() == -1
    # a fresh template answers once it has imported boto3: give it the usual time
    monkeypatch.setattr(executor, "FORK_REPLY_TIMEOUT_S", usual_timeout)
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return 1\n")
    replacement = executor.ForkServer.shared()
    try:
        assert replacement is not wedged
        process = replacement.fork(environment(tmp_path))
        assert next_message(process)["type"] == "ready"
        process.kill()
    finally:
        replacement.close()


def test_log_messages_wait_while_too_much_log_is_unread() -> None:
    """A flooding handler is held back by its pipe instead of growing LocalStack's memory;
    results never wait, and a closed queue drops log instead of blocking its reader."""
    messages = executor.MessageQueue(max_log_bytes=10)
    messages.put({"type": "log", "data": "x" * 11})
    second_put = threading.Thread(target=messages.put, args=({"type": "log", "data": "y"},))
    second_put.start()
    second_put.join(timeout=0.3)
    assert second_put.is_alive(), "a log message was queued past the limit"
    messages.put({"type": "result", "ok": True})  # does not wait
    assert messages.get(timeout=1) == {"type": "log", "data": "x" * 11}
    second_put.join(timeout=WAIT_S)
    assert not second_put.is_alive()
    messages.put({"type": "log", "data": "z" * 11})
    messages.close()
    messages.put({"type": "log", "data": "dropped"})
    received = [messages.get(timeout=0.1) for _ in range(4)]
    assert [m and m.get("data", m.get("type")) for m in received] == ["result", "y", "z" * 11, None]


def test_an_invocations_log_is_truncated_as_cloudwatch_and_capped() -> None:
    log = protocol.InvocationLog(limit=1024 * 1024)
    log.add("x" * (300 * 1024) + "\n")
    log.add("short\n")
    for _ in range(10):
        log.add("y" * (200 * 1024) + "\n")
    text = log.text()
    lines = text.splitlines()
    assert len(lines[0].encode()) == protocol.MAX_LOG_LINE_BYTES  # CloudWatch's event limit
    assert lines[1] == "short"
    assert len(text.encode()) < 1024 * 1024 + 200
    assert lines[-1].startswith("[sandbox] log truncated: 7 more lines")


def test_a_handler_sees_boto3_but_not_the_sandboxs_venv(
    fork_server: executor.ForkServer, tmp_path: Path
) -> None:
    """On AWS a handler imports its own code, the standard library and boto3; yaml (in the
    sandbox's venv) must be vendored, or the import fails as it would there."""
    (tmp_path / "app.py").write_text("import boto3, json\ndef handler(e, c):\n    return 1\n")
    (tmp_path / "needs_yaml.py").write_text("import yaml\ndef handler(e, c):\n    return 1\n")
    process = fork_server.fork(environment(tmp_path))
    assert next_message(process)["type"] == "ready"
    process.kill()
    failing = fork_server.fork(environment(tmp_path, "needs_yaml.handler"))
    error = next_message(failing)["error"]
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "yaml" in error["errorMessage"]


def test_an_environment_started_after_stop_is_ended_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """LocalStack may stop an environment while its start is still forking: the late
    process must not be left running with nothing to end it."""
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return 1\n")
    code = SimpleNamespace(
        get_unzipped_code_location=lambda: tmp_path, is_hot_reloading=lambda: False
    )
    config = SimpleNamespace(runtime="python3.13", code=code)
    version = SimpleNamespace(config=config, id=SimpleNamespace(function_name="probe"))
    environment_executor = executor.LocalProcessRuntimeExecutor("env-1", version)  # type: ignore[arg-type]
    forked: list[executor.RuntimeProcess] = []
    fork = executor.ForkServer.fork

    def fork_then_stop(server: executor.ForkServer, env: dict[str, str]) -> Any:
        forked.append(fork(server, env))
        environment_executor.stop()  # arrives while the start is under way
        return forked[-1]

    monkeypatch.setattr(executor.ForkServer, "fork", fork_then_stop)
    with pytest.raises(StatusErrorException):
        environment_executor.start({"_HANDLER": "app.handler"})
    # The child may have answered "ready" before the kill reached it; it must end all the same.
    while next_message(forked[0])["type"] != "exit":
        pass
    await_value(
        lambda: not alive(forked[0].pid),
        timeout=WAIT_S,
        interval=0.05,
        waiting_for="the late environment to end",
    )


def test_many_environments_ending_at_once_leave_the_others_running(
    fork_server: executor.ForkServer, tmp_path: Path
) -> None:
    """Deleting a function ends its environments together: the template, reaping a storm
    of exits, must not end (nor kill) the environments of other functions. Extra SIGCHLDs
    (harmless: an exit is looked up, not assumed) make the storm's overlaps likely."""
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return 1\n")
    survivor = fork_server.fork(environment(tmp_path))
    assert next_message(survivor)["type"] == "ready"
    storm_over = threading.Event()

    def nudge_the_template() -> None:
        while not storm_over.is_set():
            os.kill(fork_server._process.pid, signal.SIGCHLD)

    for _storm in range(4):
        doomed = [fork_server.fork(environment(tmp_path)) for _ in range(50)]
        for process in doomed:
            assert next_message(process)["type"] == "ready"
        storm_over.clear()
        nudger = threading.Thread(target=nudge_the_template)
        nudger.start()
        try:
            for process in doomed:
                process.kill()
            for process in doomed:
                assert next_message(process)["type"] == "exit"
        finally:
            storm_over.set()
            nudger.join()
        assert survivor.send(request({}), time.monotonic() + WAIT_S)
        assert next_message(survivor)["type"] == "result", "the survivor was ended"
    assert fork_server.usable()


def test_an_environment_whose_pipes_are_numbered_over_1024_is_invoked(
    fork_server: executor.ForkServer, tmp_path: Path, descriptors_numbered_over_1024: None
) -> None:
    """LocalStack holds thousands of descriptors once every pattern is in use; an invocation
    whose environment's pipe was numbered over 1024 failed with `ValueError: filedescriptor
    out of range in select()` (a Lambda.ServiceException to Step Functions)."""
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return event\n")
    process = fork_server.fork(environment(tmp_path))
    assert next_message(process)["type"] == "ready"
    assert process.send(request({"n": 1}), time.monotonic() + WAIT_S)
    assert json.loads(next_message(process)["payload"]) == {"n": 1}
