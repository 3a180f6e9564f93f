"""The history readers of sandbox/executions.py on hand-written histories."""

from __future__ import annotations

from typing import Any

from sandbox.executions import Execution, execution_arn


def _entered(name: str) -> dict[str, Any]:
    return {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": name}}


def _execution(*events: dict[str, Any]) -> Execution:
    return Execution("arn", "FAILED", None, None, None, events)


RETRIED_THEN_CAUGHT = _execution(
    _entered("Check"),
    {"type": "TaskScheduled"},
    {"type": "TaskFailed", "taskFailedEventDetails": {"error": "Throttled"}},
    {"type": "TaskScheduled"},
    {"type": "TaskFailed", "taskFailedEventDetails": {"error": "Invalid"}},
    _entered("Reject"),
    {"type": "LambdaFunctionScheduled"},
    {"type": "LambdaFunctionSucceeded"},
)


def test_task_trace_shows_retries_and_the_catch_target() -> None:
    assert RETRIED_THEN_CAUGHT.task_trace() == [
        "Check scheduled",
        "Check failed Throttled",
        "Check scheduled",
        "Check failed Invalid",
        "Reject scheduled",
        "Reject succeeded",
    ]


def test_catch_taken_is_the_first_failure_and_the_next_state() -> None:
    assert RETRIED_THEN_CAUGHT.catch_taken() == ("Check", "Throttled", "Reject")


def test_catch_taken_reads_plain_lambda_failures() -> None:
    execution = _execution(
        _entered("Evaluate"),
        {"type": "LambdaFunctionScheduled"},
        {
            "type": "LambdaFunctionFailed",
            "lambdaFunctionFailedEventDetails": {"error": "UnknownRuleSet"},
        },
        _entered("RecordRejection"),
    )
    assert execution.catch_taken() == ("Evaluate", "UnknownRuleSet", "RecordRejection")


def test_no_failure_no_catch() -> None:
    assert _execution(_entered("A"), {"type": "TaskScheduled"}).catch_taken() is None


def test_execution_arn() -> None:
    machine = "arn:aws:states:us-east-1:000000000000:stateMachine:flow"
    assert execution_arn(machine, "run-1") == (
        "arn:aws:states:us-east-1:000000000000:execution:flow:run-1"
    )


def _invoke(function: str) -> dict[str, Any]:
    parameters = f'{{"FunctionName": "{function}", "Payload": {{}}}}'
    return {
        "type": "TaskScheduled",
        "taskScheduledEventDetails": {"resource": "invoke", "parameters": parameters},
    }


def test_tasks_for_tells_functions_apart() -> None:
    arn = "arn:aws:lambda:us-east-1:000000000000:function:{}"
    execution = _execution(
        _entered("Check"),
        _invoke("circuit"),
        _entered("Call"),
        _invoke(arn.format("service")),
        _invoke(arn.format("service") + ":$LATEST"),
        _invoke("service-two"),
        {"type": "TaskScheduled", "taskScheduledEventDetails": {"parameters": '{"Item": {}}'}},
        {
            "type": "LambdaFunctionScheduled",
            "lambdaFunctionScheduledEventDetails": {"resource": arn.format("service")},
        },
    )
    assert execution.count("TaskScheduled") == 5
    assert execution.tasks_for("service") == 3
    assert execution.tasks_for(arn.format("service")) == 3
    assert execution.tasks_for("circuit") == 1
    assert execution.tasks_for("service-two") == 1
    assert execution.tasks_for("absent") == 0
