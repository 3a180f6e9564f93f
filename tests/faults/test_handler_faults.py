"""What a handler's own code does to the sandbox, through real invocations: a handler that
starts a child process and then times out, and one that floods its log."""

from __future__ import annotations

import json
import re

import psutil
import pytest
from botocore.config import Config

from sandbox import items
from sandbox.aws import Aws
from sandbox.embedded import launcher
from sandbox.executor import protocol
from sandbox.harness import await_value
from tests.faults.functions import fault_function

pytestmark = pytest.mark.integration

# Starts a child that would outlive it (it waits for a signal that never comes), records the
# child's pid, then waits for that child: only the function's timeout (3 s) ends the wait.
STARTS_A_CHILD_THEN_HANGS = """
import os, subprocess, sys, boto3
table = boto3.resource("dynamodb").Table(os.environ["TABLE"])

def handler(event, context):
    child = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    table.put_item(Item={"id": "child", "pid": child.pid})
    child.wait()
"""

FLOOD_LINES = 110_000
FLOOD_LINE_CHARS = 1_000  # 110,000 lines of 1,000 characters: 110 MB of log
OVERSIZED_LINE_BYTES = 300 * 1024  # over CloudWatch Logs' 256 KB event limit

# One oversized line first (kept, as truncated), then the flood; returns what it printed.
FLOODS_ITS_LOG = f"""
import sys

def handler(event, context):
    print("first " + "x" * {OVERSIZED_LINE_BYTES})
    line = "y" * {FLOOD_LINE_CHARS}
    for number in range({FLOOD_LINES}):
        print(line)
    return {{"lines": 1 + {FLOOD_LINES}}}
"""

# How much LocalStack's memory may grow for one 110 MB flood: the sandbox keeps 5 MB of an
# invocation's log (protocol.MAX_LOG_BYTES_PER_INVOCATION), held a few times over on its
# way to CloudWatch Logs (the executor's copy, LocalStack's event list, the stored events).
# Before the bounded queue and log, 150 MB of log grew it by 537 MB and it stayed. Other
# tests' calls, beside it in `make test`'s parallel run, grow it a little too.
MEMORY_GROWTH_BOUND_MB = 96
DROPPED = re.compile(r"log truncated: (\d+) more lines")


def local_lambda(aws: Aws, read_timeout: int) -> object:
    """A Lambda client that waits `read_timeout` s for an answer (botocore's default is 60)."""
    return aws.session.client(
        "lambda",
        endpoint_url=aws.endpoint_url,
        region_name=aws.region,
        config=Config(read_timeout=read_timeout, retries={"max_attempts": 1}),
    )


def embedded_sandbox_pid(sandbox) -> int:
    running = launcher.EmbeddedSandbox(sandbox.port).running()
    if sandbox.name != "embedded" or running is None:
        pytest.skip("measures LocalStack's process on this host: embedded mode only")
    return running.pid


def still_running(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie has ended; it only
    waits for its parent to collect its exit code)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_handler_that_times_out_leaves_no_child_behind(aws: Aws, sandbox, accounting) -> None:
    embedded_sandbox_pid(sandbox)
    accounting.checked = "timed-out handler's child process is gone after the timeout"
    with fault_function(aws, "fault-child", STARTS_A_CHILD_THEN_HANGS, timeout=3) as function:
        accounting.messages_in = 1
        answer = aws.client("lambda").invoke(FunctionName=function.name, Payload=b"{}")
        error = json.loads(answer["Payload"].read())
        assert answer.get("FunctionError") == "Unhandled", error
        assert "Task timed out after 3.00 seconds" in error["errorMessage"], error
        accounting.processed = 1
        recorded = items.get(aws, function.table, {"id": "child"})
        assert recorded is not None, "the handler never recorded its child's pid"
        child = int(recorded["pid"])
        left = await_value(
            lambda: still_running(child),
            until=lambda running: not running,
            timeout=20,
            waiting_for=f"the handler's child process {child} to end",
        )
        accounting.orphaned = int(left)


def test_a_handler_flooding_its_log_completes_with_bounded_memory(
    aws: Aws, sandbox, accounting
) -> None:
    localstack = psutil.Process(embedded_sandbox_pid(sandbox))
    accounting.checked = (
        f"110 MB of log: invocation answers, LocalStack grows < {MEMORY_GROWTH_BOUND_MB} MB, "
        "log group keeps the first 5 MB + a count of the rest"
    )
    with fault_function(aws, "fault-flood", FLOODS_ITS_LOG, timeout=240, memory=512) as function:
        before = localstack.memory_info().rss
        answer = local_lambda(aws, read_timeout=300).invoke(  # type: ignore[attr-defined]
            FunctionName=function.name, Payload=b"{}"
        )
        result = json.loads(answer["Payload"].read())
        assert "FunctionError" not in answer, result
        printed = result["lines"]
        accounting.messages_in = printed
        growth_mb = (localstack.memory_info().rss - before) / 2**20
        accounting.checked += f" (grew {growth_mb:.0f} MB)"

        lines = await_value(
            lambda: log_lines(aws, function.name),
            until=lambda seen: any(line.startswith("REPORT") for line in seen),
            timeout=60,
            waiting_for=f"the REPORT line in /aws/lambda/{function.name}",
        )
        kept = [line for line in lines if line.startswith(("first ", "y"))]
        markers = [m for line in lines if (m := DROPPED.search(line))]
        dropped = int(markers[0].group(1)) if markers else 0
        accounting.processed, accounting.lost = len(kept), printed - len(kept) - dropped

        assert growth_mb < MEMORY_GROWTH_BOUND_MB, f"LocalStack grew by {growth_mb:.0f} MB"
        assert len(markers) == 1, f"expected one truncation marker, saw {len(markers)}"
        stored = sum(len(line.encode()) for line in kept)
        assert stored <= protocol.MAX_LOG_BYTES_PER_INVOCATION, f"{stored} bytes of log kept"
        assert kept[0].startswith("first "), "the first line is not the handler's first line"
        # CloudWatch Logs keeps at most 256 KB per event, 26 of them counted as overhead.
        assert len(kept[0].encode()) <= protocol.MAX_LOG_LINE_BYTES + 1
        assert len(kept[0].encode()) > protocol.MAX_LOG_LINE_BYTES - 4
        assert accounting.lost == 0, f"{accounting.lost} lines neither kept nor counted"


def log_lines(aws: Aws, function: str) -> list[str]:
    """Every line in the function's log group (its streams, oldest first)."""
    logs = aws.client("logs")
    try:
        pages = logs.get_paginator("filter_log_events").paginate(
            logGroupName=f"/aws/lambda/{function}"
        )
        return [event["message"] for page in pages for event in page["events"]]
    except logs.exceptions.ResourceNotFoundException:
        return []
