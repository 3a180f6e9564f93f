"""CloudWatch metrics of Lambda and SQS, recorded per metric and published together
(sandbox/embedded/metrics.py): every statistic stays that of one datapoint per event."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters
from localstack.services.lambda_.invocation import version_manager
from localstack.services.sqs.provider import CloudwatchDispatcher

from sandbox.embedded import metrics


class _CloudWatch:
    """Records PutMetricData calls (the publisher's only use of the client), each checked
    against CloudWatch's service model as botocore would before sending it."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        model = botocore.session.get_session().get_service_model("cloudwatch")
        self.input_shape = model.operation_model("PutMetricData").input_shape

    def put_metric_data(self, **call: Any) -> None:
        validate_parameters(call, self.input_shape)
        self.calls.append(call)


@pytest.fixture
def cloudwatch(monkeypatch: pytest.MonkeyPatch) -> Iterator[_CloudWatch]:
    client = _CloudWatch()

    class _Clients:
        cloudwatch = client

    monkeypatch.setattr(metrics, "connect_to", lambda **_: _Clients())
    monkeypatch.setattr(metrics, "_flusher", object())  # no background publishing here
    monkeypatch.setattr(metrics, "_pending", {})
    yield client


def test_the_patches_replace_localstacks_per_event_publishers() -> None:
    patches = metrics.apply()
    try:
        assert version_manager.record_cw_metric_invocation is metrics.record_invocation
        assert version_manager.record_cw_metric_error is metrics.record_error
        assert CloudwatchDispatcher.dispatch_sqs_metric is metrics.dispatch_sqs_metric
    finally:
        for patch in patches:
            patch.undo()
    assert version_manager.record_cw_metric_invocation is not metrics.record_invocation
    assert CloudwatchDispatcher.dispatch_sqs_metric is not metrics.dispatch_sqs_metric


def test_lambda_counts_are_published_once_per_function_and_metric(
    cloudwatch: _CloudWatch,
) -> None:
    for _ in range(3):
        metrics.record_invocation("f", account_id="1", region_name="r")
    metrics.record_error("f", account_id="1", region_name="r")
    metrics.record_invocation("g", account_id="1", region_name="r")
    metrics.flush()
    [call] = cloudwatch.calls
    assert call["Namespace"] == "AWS/Lambda"
    published = sorted(
        (datum["MetricName"], datum["Dimensions"][0]["Value"], datum["StatisticValues"]["Sum"])
        for datum in call["MetricData"]
    )
    assert published == [("Errors", "f", 1), ("Invocations", "f", 4), ("Invocations", "g", 1)]
    metrics.flush()
    assert len(cloudwatch.calls) == 1  # nothing twice


def test_sqs_sizes_keep_every_statistic_of_one_datapoint_per_message(
    cloudwatch: _CloudWatch,
) -> None:
    dispatcher = CloudwatchDispatcher.__new__(CloudwatchDispatcher)  # no thread pool needed
    dispatcher.running = True
    for size in (10, 30, 20):
        metrics.dispatch_sqs_metric(
            dispatcher, "1", "r", "orders", "SentMessageSize", size, "Bytes"
        )
    metrics.dispatch_sqs_metric(dispatcher, "1", "r", "orders", "NumberOfMessagesDeleted", 2)
    dispatcher.running = False  # a stopped provider records nothing more
    metrics.dispatch_sqs_metric(dispatcher, "1", "r", "orders", "NumberOfMessagesDeleted", 5)
    metrics.flush()
    [call] = cloudwatch.calls
    by_name = {datum["MetricName"]: datum for datum in call["MetricData"]}
    assert call["Namespace"] == "AWS/SQS"
    assert by_name["SentMessageSize"]["Unit"] == "Bytes"
    assert by_name["SentMessageSize"]["StatisticValues"] == {
        "SampleCount": 3,
        "Sum": 60,
        "Minimum": 10,
        "Maximum": 30,
    }
    assert by_name["NumberOfMessagesDeleted"]["StatisticValues"]["Sum"] == 2
    assert by_name["NumberOfMessagesDeleted"]["Dimensions"] == [
        {"Name": "QueueName", "Value": "orders"}
    ]
