"""What scenarios read from Step Functions: an execution's outcome and its history.

Step Functions records every state entered, every task scheduled and every Catch taken; a
scenario asserts on that record, not only on the items a workflow leaves behind.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sandbox.aws import Aws
from sandbox.harness import await_value, unique_name


@dataclass(frozen=True)
class Execution:
    arn: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    events: tuple[dict[str, Any], ...]

    @property
    def entered(self) -> list[str]:
        """State names in the order they were entered (repeats included)."""
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in self.events
            if "stateEnteredEventDetails" in e
        ]

    def count(self, event_type: str) -> int:
        """How many events of this type, e.g. "TaskScheduled", "LambdaFunctionScheduled"."""
        return sum(e["type"] == event_type for e in self.events)

    def types(self) -> Counter[str]:
        return Counter(e["type"] for e in self.events)


def start(aws: Aws, state_machine_arn: str, payload: Any, *, name: str | None = None) -> str:
    """Start an execution with this input; returns its ARN."""
    return aws.client("stepfunctions").start_execution(
        stateMachineArn=state_machine_arn,
        name=name or unique_name("run"),
        input=json.dumps(payload),
    )["executionArn"]


def status(aws: Aws, execution_arn: str) -> str:
    return aws.client("stepfunctions").describe_execution(executionArn=execution_arn)["status"]


def finish(aws: Aws, execution_arn: str, *, timeout: float = 60) -> Execution:
    """Wait until the execution is no longer RUNNING; return its outcome and history."""
    sfn = aws.client("stepfunctions")
    described = await_value(
        lambda: sfn.describe_execution(executionArn=execution_arn),
        until=lambda d: d["status"] != "RUNNING",
        timeout=timeout,
        waiting_for=f"execution {execution_arn.rsplit(':', 1)[-1]} to finish",
    )
    return read(aws, execution_arn, described)


def run(aws: Aws, state_machine_arn: str, payload: Any, *, timeout: float = 60) -> Execution:
    """Start an execution and wait for it to finish."""
    return finish(aws, start(aws, state_machine_arn, payload), timeout=timeout)


def read(aws: Aws, execution_arn: str, described: dict[str, Any] | None = None) -> Execution:
    """An execution as it stands now (it may still be RUNNING)."""
    sfn = aws.client("stepfunctions")
    described = described or sfn.describe_execution(executionArn=execution_arn)
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
    events = tuple(event for page in pages for event in page["events"])
    output = described.get("output")
    return Execution(
        arn=execution_arn,
        status=described["status"],
        output=json.loads(output) if output else None,
        error=described.get("error"),
        cause=described.get("cause"),
        events=events,
    )
