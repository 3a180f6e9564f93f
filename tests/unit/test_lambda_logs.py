"""Lambda's log lines batched per stream (sandbox/embedded/lambda_logs.py): every line
arrives once, in order, stamped with its invocation's time, within PutLogEvents' limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters
from localstack.services.lambda_.invocation import logs

from sandbox.embedded import lambda_logs


class _Logs:
    """Records PutLogEvents calls, each checked against CloudWatch Logs' service model."""

    class exceptions:  # noqa: N801  (the shape of a boto3 client's exceptions)
        class ResourceNotFoundException(Exception):
            pass

        class ResourceAlreadyExistsException(Exception):
            pass

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.roles_assumed: list[str] = []
        model = botocore.session.get_session().get_service_model("logs")
        self.input_shape = model.operation_model("PutLogEvents").input_shape

    def put_log_events(self, **call: Any) -> None:
        validate_parameters(call, self.input_shape)
        self.calls.append(call)


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Logs]:
    fake = _Logs()

    class _Factory:
        @staticmethod
        def with_assumed_role(**role: Any) -> Any:
            fake.roles_assumed.append(role["role_arn"])

            class _Clients:
                logs = fake

            return _Clients()

    monkeypatch.setattr(lambda_logs, "connect_to", _Factory())
    monkeypatch.setattr(logs, "is_api_enabled", lambda _: True)
    yield fake


def _handler() -> logs.LogHandler:
    return logs.LogHandler(role_arn="arn:aws:iam::000000000000:role/r", region="us-east-1")


def test_what_arrives_together_goes_in_one_call_per_stream(client: _Logs) -> None:
    handler = _handler()
    lambda_logs.add_logs(handler, logs.LogItem("/aws/lambda/f", "s1", "START\nline 1\n\nEND"))
    lambda_logs.add_logs(handler, logs.LogItem("/aws/lambda/f", "s2", "other"))
    lambda_logs.add_logs(handler, logs.LogItem("/aws/lambda/f", "s1", "line 2"))
    handler.log_queue.put(logs.QUEUE_SHUTDOWN)
    lambda_logs.run_log_loop(handler)
    by_stream = {call["logStreamName"]: call["logEvents"] for call in client.calls}
    assert len(client.calls) == 2
    assert [event["message"] for event in by_stream["s1"]] == [
        "START\n",
        "line 1\n",
        "END\n",
        "line 2\n",
    ]
    assert [event["message"] for event in by_stream["s2"]] == ["other\n"]


def test_each_line_keeps_the_time_its_invocation_handed_it_over(client: _Logs) -> None:
    handler = _handler()
    handler.log_queue.put(lambda_logs.StampedLogs(logs.LogItem("g", "s", "early"), at_ms=1000))
    handler.log_queue.put(lambda_logs.StampedLogs(logs.LogItem("g", "s", "late"), at_ms=2000))
    handler.log_queue.put(logs.QUEUE_SHUTDOWN)
    lambda_logs.run_log_loop(handler)
    [call] = client.calls
    assert [(event["message"], event["timestamp"]) for event in call["logEvents"]] == [
        ("early\n", 1000),
        ("late\n", 2000),
    ]


def test_a_client_is_made_when_the_function_first_logs(client: _Logs) -> None:
    silent, logging = _handler(), _handler()
    silent.log_queue.put(logs.QUEUE_SHUTDOWN)
    lambda_logs.run_log_loop(silent)
    assert client.roles_assumed == []
    lambda_logs.add_logs(logging, logs.LogItem("g", "s", "line"))
    lambda_logs.add_logs(logging, logs.LogItem("g", "s", "line"))
    logging.log_queue.put(logs.QUEUE_SHUTDOWN)
    lambda_logs.run_log_loop(logging)
    assert client.roles_assumed == ["arn:aws:iam::000000000000:role/r"]


def test_a_batch_over_the_call_limits_is_split() -> None:
    events = [{"timestamp": 1, "message": "x" * 1000 + "\n"} for _ in range(2500)]
    chunks = list(lambda_logs._within_limits(events))
    assert sum(len(chunk) for chunk in chunks) == 2500
    for chunk in chunks:
        size = sum(len(event["message"]) + lambda_logs.EVENT_OVERHEAD_BYTES for event in chunk)
        assert size <= lambda_logs.MAX_BYTES_PER_CALL
    many = [{"timestamp": 1, "message": "y\n"} for _ in range(25_000)]
    assert [len(chunk) for chunk in lambda_logs._within_limits(many)] == [10_000, 10_000, 5_000]


def test_the_patches_replace_localstacks_per_invocation_sender() -> None:
    patches = lambda_logs.apply()
    try:
        assert logs.LogHandler.run_log_loop is lambda_logs.run_log_loop
        assert logs.LogHandler.add_logs is lambda_logs.add_logs
    finally:
        for patch in patches:
            patch.undo()
    assert logs.LogHandler.run_log_loop is not lambda_logs.run_log_loop
