"""Reading what the system did from its own records: REPORT lines, execution histories."""

from __future__ import annotations

from datetime import UTC, datetime

from sandbox.activity import belongs, is_dlq, parse_invocations, transitions


def _event(stream: str, at_ms: int, message: str) -> dict:
    return {"logStreamName": stream, "timestamp": at_ms, "message": message}


def test_resources_belong_to_the_pattern_their_name_starts_with() -> None:
    assert belongs("cqrs-projector", "cqrs") and belongs(
        "event-aggregation.fifo", "event-aggregation"
    )
    assert not belongs("cqrsx-projector", "cqrs") and not belongs(
        "event-sourcing-bus", "event-aggregation"
    )
    assert is_dlq("orders-dlq") and is_dlq("orders-dlq.fifo") and not is_dlq("orders")


def test_invocations_come_from_report_lines_with_cold_starts_and_errors() -> None:
    events = [
        _event("s1", 10_000, "START RequestId: r1 Version: $LATEST\n"),
        _event("s1", 10_000, "[ERROR] ValueError: boom\n"),
        _event(
            "s1",
            10_500,
            "END RequestId: r1\nREPORT RequestId: r1\tDuration: 250.00 ms\tBilled Duration: 250 ms"
            "\tMemory Size: 128 MB\tMax Memory Used: 128 MB\tInit Duration: 100.00 ms\n",
        ),
        _event("s1", 11_000, "START RequestId: r2 Version: $LATEST\n"),
        _event("s1", 11_200, "REPORT RequestId: r2\tDuration: 20.00 ms\tBilled Duration: 20 ms"),
    ]
    first, second = parse_invocations("demo-fn", events)
    assert first == {
        "function": "demo-fn",
        "request_id": "r1",
        "start": 10.25,
        "seconds": 0.25,
        "cold": True,
        "init_seconds": 0.1,
        "error": "[ERROR] ValueError: boom",
    }
    assert (second["request_id"], second["cold"], second["error"]) == ("r2", False, None)


def test_an_invocation_already_running_as_the_window_opens_is_left_out() -> None:
    """A schedule's invocation that ends inside a scenario's window is not the scenario's."""
    events = [
        _event(
            "s1", 10_400, "REPORT RequestId: before\tDuration: 500.00 ms\tBilled Duration: 500 ms"
        ),
        _event("s1", 10_600, "START RequestId: inside Version: $LATEST\n"),
        _event(
            "s1", 10_700, "REPORT RequestId: inside\tDuration: 100.00 ms\tBilled Duration: 100 ms"
        ),
    ]
    found = parse_invocations("demo-fn", events, started_after=10.0)
    assert [invocation["request_id"] for invocation in found] == ["inside"]


def _at(second: float) -> datetime:
    return datetime.fromtimestamp(second, UTC)


def test_transitions_pair_entries_with_exits_and_keep_the_failure_inside_a_state() -> None:
    history = [
        {"type": "ExecutionStarted", "timestamp": _at(1)},
        {
            "type": "TaskStateEntered",
            "timestamp": _at(1),
            "stateEnteredEventDetails": {"name": "Call"},
        },
        {
            "type": "TaskFailed",
            "timestamp": _at(2),
            "taskFailedEventDetails": {"error": "Boom", "cause": "it broke"},
        },
        {
            "type": "TaskStateExited",
            "timestamp": _at(2),
            "stateExitedEventDetails": {"name": "Call"},
        },
        {
            "type": "PassStateEntered",
            "timestamp": _at(2),
            "stateEnteredEventDetails": {"name": "Fallback"},
        },
        {
            "type": "PassStateExited",
            "timestamp": _at(3),
            "stateExitedEventDetails": {"name": "Fallback"},
        },
        {
            "type": "ExecutionFailed",
            "timestamp": _at(3),
            "executionFailedEventDetails": {"error": "X"},
        },
    ]
    assert transitions(history) == [
        {"name": "Call", "entered": 1, "exited": 2, "error": "Boom: it broke"},
        {"name": "Fallback", "entered": 2, "exited": 3, "error": None},
        {"name": "ExecutionFailed", "entered": 3, "exited": 3, "error": "X"},
    ]
