"""LocalStack itself killed (SIGKILL: no shutdown of its own): `make status` says the
sandbox is not running, and `make up` starts a fresh one, leaving no process of the old one
(DynamoDB Local, kinesis-mock, the Python fork server and its environments)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from sandbox import provision, settings
from sandbox.aws import Aws
from sandbox.embedded import launcher
from sandbox.harness import await_value
from tests.conftest import zip_files

PORT = 4621  # a sandbox of its own: the fault kills it
CLI_TIMEOUT_S = 300


def cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SANDBOX_MODE": "embedded",
        "AWS_ENDPOINT_URL": f"http://localhost:{PORT}",
        "SANDBOX_STATE_DIR": str(state_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        env=env,
        cwd=settings.PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def start_everything(aws: Aws) -> None:
    """Make LocalStack start what it starts lazily: DynamoDB Local, kinesis-mock (a table's
    stream), the Python fork server and one environment."""
    provision.ensure_table(aws, "fault-table", stream_view="NEW_IMAGE")
    lambda_ = aws.client("lambda")
    lambda_.create_function(
        FunctionName="fault-function",
        Role=provision.ensure_role(aws, provision.LAMBDA_ROLE, "lambda.amazonaws.com"),
        Runtime=provision.LAMBDA_RUNTIME,
        Handler="app.handler",
        Code={"ZipFile": zip_files({"app.py": "def handler(e, c):\n    return 'up'\n"})},
    )
    provision.wait_for_function(lambda_, "fault-function")
    assert json.loads(lambda_.invoke(FunctionName="fault-function")["Payload"].read()) == "up"


def test_localstack_killed_then_status_and_a_fresh_up(tmp_path: Path, accounting) -> None:
    accounting.checked = "status says not running; up starts afresh; no old process left"
    sandbox = launcher.EmbeddedSandbox(PORT, tmp_path)
    new: launcher.Running | None = None
    try:
        old = sandbox.start(timeout=120)
        start_everything(Aws(f"http://localhost:{PORT}"))
        old_processes = launcher.processes_of(old.instance)
        commands = " ".join(Path(f"/proc/{pid}/cmdline").read_text() for pid in old_processes)
        assert "java" in commands and "kinesis" in commands and "--fork-server" in commands

        os.kill(old.pid, signal.SIGKILL)
        status = cli(tmp_path, "status")
        assert status.returncode == 1 and "not running" in status.stdout, status.stdout

        up = cli(tmp_path, "up")
        assert up.returncode == 0, up.stderr[-2000:]
        assert "Traceback" not in up.stderr
        left = launcher.processes_of(old.instance)
        accounting.orphaned = len(left)
        assert left == [], f"processes of the killed sandbox still running: {left}"
        new = sandbox.running()
        assert new is not None and new.instance != old.instance
    finally:
        down = cli(tmp_path, "down")
        assert down.returncode == 0, down.stderr
    if new is not None:
        fresh = new.instance
        await_value(
            lambda: launcher.processes_of(fresh),
            until=lambda pids: not pids,
            timeout=20,
            waiting_for="every process of the fresh sandbox to end after `down`",
        )
