"""SQS's CloudWatch metrics, recorded per queue and published together by the embedded
sandbox (sandbox/embedded/metrics.py), report what one datapoint per message would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox import observe
from sandbox.aws import Aws
from sandbox.harness import await_value, unique_name


def test_sends_sizes_and_deletes_reach_cloudwatch(aws: Aws) -> None:
    sqs = aws.client("sqs")
    name = unique_name("metrics")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    try:
        for body in ("a" * 10, "b" * 30, "c" * 20):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        observe.collect(aws, url, lambda _: True, 3)  # received, then deleted

        def statistics(metric: str) -> dict[str, Any]:
            now = datetime.now(UTC)
            points = aws.client("cloudwatch").get_metric_statistics(
                Namespace="AWS/SQS",
                MetricName=metric,
                Dimensions=[{"Name": "QueueName", "Value": name}],
                StartTime=now - timedelta(minutes=5),
                EndTime=now + timedelta(minutes=1),
                Period=600,
                Statistics=["Sum", "SampleCount", "Minimum", "Maximum"],
            )["Datapoints"]
            return points[0] if len(points) == 1 else {}

        deleted = await_value(
            lambda: statistics("NumberOfMessagesDeleted"),
            until=lambda point: point.get("Sum") == 3,
            timeout=15,
            waiting_for="3 deletes in CloudWatch",
        )
        assert deleted["Sum"] == 3
        # One PutMetricData stores its metrics one after another (the deletes first, by
        # name): a look between them finds no sizes yet.
        sizes = await_value(
            lambda: statistics("SentMessageSize"),
            until=lambda point: point.get("SampleCount") == 3,
            timeout=15,
            waiting_for="3 sent message sizes in CloudWatch",
        )
        assert (sizes["SampleCount"], sizes["Sum"], sizes["Minimum"], sizes["Maximum"]) == (
            3,
            60,
            10,
            30,
        )
        assert statistics("NumberOfMessagesSent")["Sum"] == 3
    finally:
        sqs.delete_queue(QueueUrl=url)
