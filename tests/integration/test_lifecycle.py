"""The embedded sandbox's lifecycle: it starts on this machine only, a second start finds it,
a stop leaves none of its processes behind, a taken port is refused, and the CLI names the
known patterns when asked for an unknown one.

Every test that needs a sandbox starts its own on a free port with its state in a temporary
folder; the sandbox on 4566 (`make up`) is never touched. Where the embedded sandbox cannot
run (Docker users need neither Java nor LocalStack on the host), those tests skip, naming
what is missing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sandbox import bench, patterns, provision, settings
from sandbox.aws import Aws
from sandbox.embedded import launcher
from sandbox.embedded.dynamodb_local import SetupError
from sandbox.embedded.launcher import EmbeddedSandbox, Running, processes_of
from sandbox.harness import await_value, unique_name
from sandbox.health import free_port, health, port_in_use
from tests.conftest import zip_files

pytestmark = pytest.mark.integration
START_TIMEOUT_S = 180  # 2 cores shared with other sandboxes: allow a slow start
KILLED_EXIT_TIMEOUT_S = 15  # a SIGKILLed process only has to finish exiting
CANNOT_START = launcher.missing_prerequisites()
needs_embedded = pytest.mark.skipif(
    CANNOT_START is not None, reason=f"the embedded sandbox cannot start here: {CANNOT_START}"
)


def listening_addresses(port: int, pids: list[int]) -> set[str]:
    """The local addresses on which these processes listen on TCP `port` (psutil reads a
    process's own sockets on Linux and macOS alike)."""
    found = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        for connection in connections:
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                found.add(connection.laddr.ip)
    return found


def command_line(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedSandbox, Running]]:
    """One sandbox shared by the tests that only look at a started one."""
    sandbox = EmbeddedSandbox(free_port(), tmp_path_factory.mktemp("lifecycle"))
    running = sandbox.start(timeout=START_TIMEOUT_S)
    try:
        yield sandbox, running
    finally:
        sandbox.stop()


@pytest.fixture
def own_sandbox(tmp_path: Path) -> Iterator[EmbeddedSandbox]:
    """A sandbox for one test, not started yet; stopped afterwards whatever happened."""
    sandbox = EmbeddedSandbox(free_port(), tmp_path)
    try:
        yield sandbox
    finally:
        sandbox.stop()


@needs_embedded
def test_a_started_sandbox_answers_on_loopback_only(
    started: tuple[EmbeddedSandbox, Running],
) -> None:
    sandbox, running = started
    assert health(f"http://127.0.0.1:{sandbox.port}") is not None
    assert listening_addresses(sandbox.port, processes_of(running.instance)) == {"127.0.0.1"}


@needs_embedded
def test_its_backends_listen_on_loopback_only(started: tuple[EmbeddedSandbox, Running]) -> None:
    """kinesis-mock (DynamoDB streams) listens on 0.0.0.0 whatever it is told; the sandbox
    preloads a script that moves it to 127.0.0.1. DynamoDB Local offers no way to choose
    (docs/engine-limits.md), so it is the one process left out."""
    sandbox, running = started
    aws = Aws(f"http://127.0.0.1:{sandbox.port}")
    aws.client("kinesis").list_streams()  # kinesis-mock starts on first use
    aws.client("dynamodb").list_tables()
    listening: dict[str, set[str]] = {}
    for pid in processes_of(running.instance):
        try:
            kind = bench.kind_of(pid)
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        ips = {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}
        listening.setdefault(kind, set()).update(ips)
    assert listening["kinesis-mock (DynamoDB streams)"] == {"127.0.0.1"}
    listening.pop("DynamoDB Local (java)")
    assert set().union(*listening.values()) == {"127.0.0.1"}, listening


@needs_embedded
def test_a_second_start_finds_it_running_and_starts_nothing(
    started: tuple[EmbeddedSandbox, Running],
) -> None:
    """Starting again (even through a new object on the same folder) returns the recorded
    sandbox: same pid and instance, no new process, no second start in the log."""
    # GIVEN the running sandbox and its processes
    sandbox, first = started
    before = set(processes_of(first.instance))
    assert first.pid in before

    # WHEN it is started again
    again = EmbeddedSandbox(sandbox.port, sandbox.state_dir).start(timeout=START_TIMEOUT_S)

    # THEN it is the same sandbox, and nothing new runs
    assert again == first
    assert sandbox.running() == first
    assert set(processes_of(first.instance)) <= before
    assert sandbox.log_file.read_text().count("===== sandbox start") == 1


@needs_embedded
def test_stop_leaves_none_of_its_processes_behind(own_sandbox: EmbeddedSandbox) -> None:
    """Besides LocalStack itself, DynamoDB Local (Java) and a Lambda runtime process run;
    stop() must end them all and free the port."""
    # GIVEN a sandbox running DynamoDB Local and a Lambda execution environment
    running = own_sandbox.start(timeout=START_TIMEOUT_S)
    aws = Aws(f"http://127.0.0.1:{own_sandbox.port}")
    provision.ensure_table(aws, unique_name("lifecycle"))
    lambda_ = aws.client("lambda")
    name = unique_name("lifecycle")
    lambda_.create_function(
        FunctionName=name,
        Runtime=provision.LAMBDA_RUNTIME,
        Handler="app.handler",
        Role=provision.ensure_role(aws, provision.LAMBDA_ROLE, "lambda.amazonaws.com"),
        Code={
            "ZipFile": zip_files(
                {"app.py": "import os\n\ndef handler(event, context):\n    return os.getpid()\n"}
            )
        },
        Timeout=30,
    )
    lambda_.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
    runtime_pid = json.loads(lambda_.invoke(FunctionName=name)["Payload"].read())
    before = processes_of(running.instance)
    assert running.pid in before and runtime_pid in before, (before, runtime_pid)
    assert any("DynamoDBLocal" in command_line(pid) for pid in before), [
        command_line(pid) for pid in before
    ]

    # WHEN it is stopped
    processes_before = [psutil.Process(pid) for pid in before]
    ended = own_sandbox.stop()

    # THEN none of its processes is left, and the port is free. What outlives the grace
    # period gets SIGKILL, and stop() returns without waiting for it to finish exiting (a
    # JVM or a many-threaded LocalStack takes a moment): hence a short deadline, not `== []`.
    assert ended > 1
    await_value(
        lambda: [p.pid for p in processes_before if launcher._running(p)]
        + processes_of(running.instance),
        until=lambda left: not left,
        timeout=KILLED_EXIT_TIMEOUT_S,
        waiting_for="every process of the stopped sandbox to end",
    )
    assert own_sandbox.running() is None and not own_sandbox.state_file.exists()
    assert not port_in_use(own_sandbox.port)


@needs_embedded
def test_the_service_catalog_one_sandbox_built_serves_the_next(
    own_sandbox: EmbeddedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LocalStack indexes the AWS services at a folder's first request (~2.7 s of a core, and
    memory it keeps); a sandbox in another folder must load that index, not build its own."""
    monkeypatch.setattr(launcher, "SHARED_CATALOG_DIR", tmp_path / "machine-cache")
    built = "var/lib/localstack/cache"
    # GIVEN a sandbox that answered a request (so built its index), then stopped
    own_sandbox.start(timeout=START_TIMEOUT_S)
    Aws(f"http://127.0.0.1:{own_sandbox.port}").client("sqs").list_queues()
    own_sandbox.stop()
    assert list((own_sandbox.root / built).glob(launcher.SERVICE_CATALOG))
    # WHEN a sandbox in another folder starts and answers a request
    second = EmbeddedSandbox(free_port(), tmp_path / "second")
    try:
        second.start(timeout=START_TIMEOUT_S)
        Aws(f"http://127.0.0.1:{second.port}").client("sqs").list_queues()
    finally:
        second.stop()
    # THEN it loaded the kept index, and built none
    assert list((second.root / "usr/lib/localstack").glob(launcher.SERVICE_CATALOG))
    assert not list((second.root / built).glob(launcher.SERVICE_CATALOG))


def test_a_port_held_by_something_else_is_refused(tmp_path: Path) -> None:
    """Something that is not ours listens on the port: start() says so, and starts nothing."""
    # GIVEN a plain socket listening on a free port
    state_dir = tmp_path / "state"
    sandbox = EmbeddedSandbox(free_port(), state_dir)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", sandbox.port))
        holder.listen()

        # WHEN the sandbox is started on that port
        with pytest.raises(SetupError) as refused:
            sandbox.start(timeout=START_TIMEOUT_S)

    # THEN the error names the port and says nothing was started, and nothing was
    message = str(refused.value)
    assert f"Port {sandbox.port}" in message and "Nothing was started" in message
    assert not state_dir.exists()
    assert sandbox.running() is None
    assert launcher.processes_with("FILESYSTEM_ROOT", str(sandbox.root)) == []


def test_an_unknown_pattern_lists_the_known_ones(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "scenario", "no-such-pattern"],
        cwd=settings.PROJECT_ROOT,
        env={**os.environ, "SANDBOX_STATE_DIR": str(tmp_path)},  # write nothing to .sandbox/
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, done.stdout
    assert "no-such-pattern" in done.stderr
    slugs = [pattern.slug for pattern in patterns.catalogue()]
    assert slugs and [slug for slug in slugs if slug not in done.stderr] == [], done.stderr
