"""The pytest plugin, used the way another project would: a scratch project with one test
file and no conftest, run by pytest in a subprocess against the running sandbox. The plugin
arrives through the `pytest11` entry point of the installed package."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandbox import modes

pytestmark = pytest.mark.integration

SCRATCH_TEST = """
import json
import urllib.request


def test_the_endpoint_is_the_local_sandbox(sandbox_endpoint):
    assert sandbox_endpoint == "{endpoint}"


def test_a_client_talks_to_the_sandbox(sandbox_client):
    queue = sandbox_client("sqs").create_queue(QueueName="scratch-project-queue")["QueueUrl"]
    sandbox_client("sqs").send_message(QueueUrl=queue, MessageBody="hello")
    got = sandbox_client("sqs").receive_message(QueueUrl=queue, WaitTimeSeconds=5)
    assert [message["Body"] for message in got["Messages"]] == ["hello"]


def test_a_pattern_is_provisioned_by_slug(sandbox_pattern, sandbox_client):
    storage_first = sandbox_pattern("storage-first")
    table = sandbox_client("dynamodb").describe_table(TableName=storage_first.orders_table)
    assert table["Table"]["TableStatus"] == "ACTIVE"


def test_a_stand_in_server_records_what_reached_it(stand_in_server):
    server = stand_in_server()
    request = urllib.request.Request(server.url.replace("host.docker.internal", "127.0.0.1")
                                     + "/hook", data=b'{{"n": 1}}', method="POST")
    with urllib.request.urlopen(request) as answer:
        assert json.load(answer) == {{}}
    assert [json.loads(seen.body) for seen in server.to("/hook")] == [{{"n": 1}}]
"""


def test_another_project_tests_against_the_sandbox_with_the_fixtures(
    sandbox: modes.Mode, tmp_path: Path
) -> None:
    # GIVEN a project of its own: one test file using the fixtures, nothing else
    (tmp_path / "test_mine.py").write_text(
        textwrap.dedent(SCRATCH_TEST).format(endpoint=sandbox.endpoint)
    )

    # WHEN pytest runs there, pointed at the sandbox
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "AWS_ENDPOINT_URL": sandbox.endpoint},
        capture_output=True,
        text=True,
        timeout=300,
    )

    # THEN the four fixtures served its four tests
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout, done.stdout


def test_the_plugin_refuses_an_endpoint_off_this_machine(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text("def test_it(sandbox_endpoint):\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "SANDBOX_ALLOW_REMOTE_ENDPOINT"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env={**env, "AWS_ENDPOINT_URL": "https://dynamodb.us-east-1.amazonaws.com"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Refusing AWS endpoint" in done.stdout, done.stdout
