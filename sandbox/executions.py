"""What scenarios read from Step Functions: an execution's outcome and its history.

Step Functions records every state entered, every task scheduled and every Catch taken; a
scenario asserts on that record, not only on the items a workflow leaves behind.
"""

from __future__ import annotations

import json
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

    def tasks_for(self, function: str) -> int:
        """How many tasks were scheduled for this Lambda function (name or ARN): the
        FunctionName of a `lambda:invoke` task, the resource of a plain Lambda ARN task.
        `.count("TaskScheduled")` cannot tell one function's tasks from another's."""
        wanted = _function_name(function)
        return sum(_function_name(name) == wanted for name in self._functions_scheduled())

    def _functions_scheduled(self) -> list[str]:
        found = []
        for event in self.events:
            if event["type"] == "TaskScheduled":
                details = event["taskScheduledEventDetails"]
                parameters = json.loads(details.get("parameters") or "{}")
                if isinstance(parameters, dict) and "FunctionName" in parameters:
                    found.append(str(parameters["FunctionName"]))
            elif event["type"] == "LambdaFunctionScheduled":
                found.append(event["lambdaFunctionScheduledEventDetails"]["resource"])
        return found

    def task_trace(self) -> list[str]:
        """Each task event as '<state> scheduled|succeeded|failed <error>', in order: a
        Retry shows as repeated failures of one state, a Catch as a failure then another
        state. Covers service integrations (Task*) and plain Lambda ARNs (LambdaFunction*)."""
        return [
            f"{state} {outcome}" + (f" {error}" if outcome == "failed" else "")
            for _, state, outcome, error in self._task_events()
        ]

    def catch_taken(self) -> tuple[str, str, str] | None:
        """(state whose task failed, its error, state entered next) for the first failed
        task: which Catch fired, read from the history rather than from the output."""
        for index, state, outcome, error in self._task_events():
            if outcome == "failed":
                following = [
                    e["stateEnteredEventDetails"]["name"]
                    for e in self.events[index + 1 :]
                    if "stateEnteredEventDetails" in e
                ]
                return state, error or "", following[0] if following else ""
        return None

    def _task_events(self) -> list[tuple[int, str, str, str | None]]:
        """(index in events, state, outcome, error) of every task event."""
        found, state = [], ""
        for index, event in enumerate(self.events):
            if "stateEnteredEventDetails" in event:
                state = event["stateEnteredEventDetails"]["name"]
            elif outcome := _TASK_OUTCOMES.get(event["type"]):
                details = (
                    event.get("taskFailedEventDetails")
                    or event.get("lambdaFunctionFailedEventDetails")
                    or {}
                )
                found.append((index, state, outcome, details.get("error")))
        return found


def _function_name(function: str) -> str:
    """The name in a function name or ARN (arn:aws:lambda:<region>:<account>:function:<name>
    with an optional :<qualifier>)."""
    if function.startswith("arn:"):
        return function.split(":")[6]
    return function.split(":", 1)[0]


_TASK_OUTCOMES = {
    f"{prefix}{kind}": kind.lower()
    for prefix in ("Task", "LambdaFunction")
    for kind in ("Scheduled", "Succeeded", "Failed")
}


def start(aws: Aws, state_machine_arn: str, payload: Any, *, name: str | None = None) -> str:
    """Start an execution with this input; returns its ARN."""
    return aws.client("stepfunctions").start_execution(
        stateMachineArn=state_machine_arn,
        name=name or unique_name("run"),
        input=json.dumps(payload),
    )["executionArn"]


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN an execution of this name gets: lets a scenario find an execution that a
    function started under a name it can derive."""
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"


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


def map_run_counts(aws: Aws, execution_arn: str) -> dict[str, Any]:
    """Item counts (succeeded, failed, total...) and tolerated failure percentage of the
    execution's distributed Map run: what the run did with its items, which its output
    (nulls for failed items) does not tell. Assumes one distributed Map in the workflow."""
    sfn = aws.client("stepfunctions")
    runs = sfn.list_map_runs(executionArn=execution_arn)["mapRuns"]
    described = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])
    return {
        **{k: int(v) for k, v in described["itemCounts"].items()},
        "toleratedFailurePercentage": described["toleratedFailurePercentage"],
    }
