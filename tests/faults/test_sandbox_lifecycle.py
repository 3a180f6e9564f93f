"""Faults in the sandbox's own life, on one sandbox of their own (its own port and state
folder), in order: LocalStack itself killed (SIGKILL: no shutdown of its own) and `make status`;
`make up` twice at once, which must start one fresh sandbox and provision it; `make down`
while a scenario runs.
Each leaves no process of the sandbox it ended: DynamoDB Local, kinesis-mock, the Python
fork server and its environments."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import settings
from sandbox.aws import Aws
from sandbox.embedded import launcher
from sandbox.harness import await_value
from sandbox.modes import Mode
from sandbox.patterns import catalogue
from tests.faults.functions import fault_function

# A sandbox of its own (these faults end it), 10 ports above the one the tests use.
PORT = Mode("embedded", settings.endpoint()).port + 10
CLI_TIMEOUT_S = 600
pytestmark = pytest.mark.waits_long  # ~90 s of sandbox starts; make test runs it first
SCENARIO = "batch-processing"  # ~40 s of steps: long enough to be stopped in the middle


class OwnSandbox:
    """The CLI run as `make` runs it, against this module's sandbox."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.embedded = launcher.EmbeddedSandbox(PORT, state_dir)
        self.killed: launcher.Running | None = None  # the sandbox the kill fault ended
        self.env = {
            **os.environ,
            "SANDBOX_MODE": "embedded",
            "AWS_ENDPOINT_URL": f"http://localhost:{PORT}",
            "SANDBOX_STATE_DIR": str(state_dir),
        }

    def start_cli(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "sandbox", *args],
            env=self.env,
            cwd=settings.PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def cli(self, *args: str) -> tuple[int, str]:
        """Run one command to its end; its exit code and everything it printed."""
        command = self.start_cli(*args)
        output, _ = command.communicate(timeout=CLI_TIMEOUT_S)
        return command.returncode, output

    def up(self) -> launcher.Running:
        code, output = self.cli("up")
        assert code == 0 and "Traceback" not in output, output[-3000:]
        running = self.embedded.running()
        assert running is not None, output[-3000:]
        return running

    def localstacks(self) -> list[int]:
        """LocalStack gateway processes listening on this sandbox's port, whoever started
        them (a second `up` that started its own would show here)."""
        return [
            pid
            for pid in launcher.processes_with("GATEWAY_LISTEN", f"127.0.0.1:{PORT}")
            if b"sandbox.embedded.entry" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]


@pytest.fixture(scope="module")
def own_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnSandbox]:
    state_dir = tmp_path_factory.mktemp(f"sandbox-{PORT}")
    sandbox = OwnSandbox(state_dir)
    yield sandbox
    last = sandbox.embedded.running()
    code, output = sandbox.cli("down")
    assert code == 0, output
    if last is not None:
        await_value(
            lambda: launcher.processes_of(last.instance),
            until=lambda pids: not pids,
            timeout=20,
            waiting_for="every process of the sandbox to end after `down`",
        )


def start_everything(aws: Aws) -> None:
    """Make the sandbox run what it starts lazily: the Python fork server and one
    environment (DynamoDB Local and kinesis-mock were started with it)."""
    with fault_function(aws, "fault-warm", "def handler(e, c):\n    return 'up'\n") as function:
        answer = aws.client("lambda").invoke(FunctionName=function.name)
        assert answer["Payload"].read() == b'"up"'


def test_localstack_killed_then_status_says_so(own_sandbox: OwnSandbox, accounting) -> None:
    accounting.checked = "SIGKILL of LocalStack with all it starts running; status: not running"
    old = own_sandbox.embedded.start(timeout=120, prestart_backends=True)
    own_sandbox.killed = old
    start_everything(Aws(f"http://localhost:{PORT}"))
    commands = " ".join(
        Path(f"/proc/{pid}/cmdline").read_text() for pid in launcher.processes_of(old.instance)
    )
    assert "java" in commands and "kinesis" in commands and "--fork-server" in commands

    os.kill(old.pid, signal.SIGKILL)
    code, status = own_sandbox.cli("status")
    assert code == 1 and "not running" in status, status


def test_make_up_twice_at_once_after_the_kill(own_sandbox: OwnSandbox, accounting) -> None:
    accounting.checked = (
        "both succeed, the second waits and says why; one fresh LocalStack, provisioned; "
        "no process of the killed one left"
    )
    first, second = own_sandbox.start_cli("up"), own_sandbox.start_cli("up")
    outputs = [command.communicate(timeout=CLI_TIMEOUT_S)[0] for command in (first, second)]
    codes = [first.returncode, second.returncode]
    waited = [output for output in outputs if "is starting this sandbox; waiting" in output]
    localstacks = own_sandbox.localstacks()
    killed = own_sandbox.killed
    left = launcher.processes_of(killed.instance) if killed else []
    accounting.orphaned = max(0, len(localstacks) - 1) + len(left)
    assert codes == [0, 0], outputs
    assert not any("Traceback" in output for output in outputs), outputs
    assert len(waited) == 1, f"expected one `up` to say it waits for the other: {outputs}"
    patterns = len(catalogue())
    provisioned = f"Provisioned {patterns} of {patterns}"
    assert all(provisioned in output for output in outputs), outputs
    running = own_sandbox.embedded.running()
    assert running is not None and localstacks == [running.pid], localstacks
    assert left == [], f"processes of the killed sandbox still running: {left}"
    assert killed is None or running.instance != killed.instance


def test_make_down_during_a_scenario(own_sandbox: OwnSandbox, accounting) -> None:
    accounting.checked = "scenario fails saying the sandbox stopped; nothing left running"
    running = own_sandbox.embedded.running() or own_sandbox.up()
    scenario = own_sandbox.start_cli("scenario", SCENARIO)
    assert scenario.stdout is not None
    seen = []
    for line in scenario.stdout:  # until the scenario is past provisioning, in its steps
        seen.append(line)
        if line.startswith("▸") and "Provision" not in line:
            break
    code, down = own_sandbox.cli("down")
    rest, _ = scenario.communicate(timeout=CLI_TIMEOUT_S)
    output = "".join(seen) + rest
    left = await_value(
        lambda: launcher.processes_of(running.instance),
        until=lambda pids: not pids,
        timeout=20,
        waiting_for="every process of the sandbox to end after `down`",
    )
    accounting.orphaned = len(left)
    assert code == 0 and "stopped the embedded sandbox" in down, down
    assert scenario.returncode == 1, output[-3000:]
    assert f"FAILED {SCENARIO}: the sandbox at" in output, output[-3000:]
    assert "stopped answering" in output and "Traceback" not in output, output[-3000:]
