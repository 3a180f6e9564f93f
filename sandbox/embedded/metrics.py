"""The CloudWatch metrics LocalStack publishes for Lambda and SQS, summed per metric and
published once a second instead of one request per event.

LocalStack 4.14 publishes every Lambda invocation's `Invocations` (and `Errors`) and every
SQS send, receive and delete (`NumberOfMessagesSent`, `SentMessageSize`, ...) with a
`PutMetricData` call of its own through its gateway. 200 messages through a mapping made
~600 such calls, competing with the work itself for the GIL; Lambda's alone made a warm
invoke ~13 ms where it is ~9-10 ms without. AWS aggregates these metrics per minute and
shows them after a delay, so the sandbox keeps each metric's statistic set (sample count,
sum, minimum, maximum) and publishes it at most once a second as `StatisticValues`: every
statistic CloudWatch reports (Sum, SampleCount, Average, Minimum, Maximum) stays what one
datapoint per event would give. `entry.py` applies the patches.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from localstack.aws.connect import connect_to
from localstack.services.lambda_.invocation import version_manager
from localstack.services.sqs.provider import CloudwatchDispatcher
from localstack.utils.cloudwatch.cloudwatch_util import dimension_lambda
from localstack.utils.patch import Patch

LOG = logging.getLogger(__name__)
FLUSH_EVERY_S = 1.0
MAX_DATUMS_PER_CALL = 1000  # PutMetricData's limit


@dataclass(frozen=True, order=True)
class MetricKey:
    account: str
    region: str
    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]
    unit: str


@dataclass
class Statistics:
    sample_count: int = 0
    total: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    def add(self, value: float) -> None:
        self.sample_count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)


_pending: dict[MetricKey, Statistics] = {}
_changed = threading.Condition()
_flusher: threading.Thread | None = None


def record(key: MetricKey, value: float = 1.0) -> None:
    """Count one event's value; a flush a second later publishes it with the others."""
    global _flusher
    with _changed:
        _pending.setdefault(key, Statistics()).add(value)
        _changed.notify()
        if _flusher is None:
            _flusher = threading.Thread(target=_flush_forever, name="sandbox-metrics", daemon=True)
            _flusher.start()


def record_invocation(function_name: str, account_id: str, region_name: str) -> None:
    record(_lambda_key(account_id, region_name, function_name, "Invocations"))


def record_error(function_name: str, account_id: str, region_name: str) -> None:
    record(_lambda_key(account_id, region_name, function_name, "Invocations"))
    record(_lambda_key(account_id, region_name, function_name, "Errors"))


def dispatch_sqs_metric(
    dispatcher: CloudwatchDispatcher,
    account_id: str,
    region: str,
    queue_name: str,
    metric: str,
    value: float = 1,
    unit: str = "Count",
) -> None:
    """Stands in for CloudwatchDispatcher.dispatch_sqs_metric (a thread-pool task and a
    PutMetricData call per event)."""
    if dispatcher.running:
        dimensions = (("QueueName", queue_name),)
        record(MetricKey(account_id, region, "AWS/SQS", metric, dimensions, unit), value)


def flush() -> None:
    """Publish every pending statistic set: one call per account, region and namespace."""
    with _changed:
        due = sorted(_pending.items())
        _pending.clear()
    timestamp = datetime.now(UTC)

    def destination(item: tuple[MetricKey, Statistics]) -> tuple[str, str, str]:
        return item[0].account, item[0].region, item[0].namespace

    for (account, region, namespace), group in groupby(due, key=destination):
        datums = [_datum(key, statistics, timestamp) for key, statistics in group]
        cloudwatch = connect_to(aws_access_key_id=account, region_name=region).cloudwatch
        for start in range(0, len(datums), MAX_DATUMS_PER_CALL):
            cloudwatch.put_metric_data(
                Namespace=namespace, MetricData=datums[start : start + MAX_DATUMS_PER_CALL]
            )


def apply() -> list[Patch]:
    patches = [
        Patch(version_manager, "record_cw_metric_invocation", record_invocation),
        Patch(version_manager, "record_cw_metric_error", record_error),
        Patch(CloudwatchDispatcher, "dispatch_sqs_metric", dispatch_sqs_metric),
    ]
    for one in patches:
        one.apply()
    return patches


def _lambda_key(account: str, region: str, function: str, metric: str) -> MetricKey:
    dimensions = tuple(
        (entry["Name"], entry["Value"]) for entry in dimension_lambda({"func_name": function})
    )
    return MetricKey(account, region, "AWS/Lambda", metric, dimensions, "None")


def _datum(key: MetricKey, statistics: Statistics, timestamp: datetime) -> dict[str, Any]:
    datum: dict[str, Any] = {
        "MetricName": key.metric,
        "Dimensions": [{"Name": name, "Value": value} for name, value in key.dimensions],
        "Timestamp": timestamp,
        "StatisticValues": {
            "SampleCount": statistics.sample_count,
            "Sum": statistics.total,
            "Minimum": statistics.minimum,
            "Maximum": statistics.maximum,
        },
    }
    if key.unit != "None":
        datum["Unit"] = key.unit
    return datum


def _flush_forever() -> None:
    """Sleep until something is recorded (no wake-ups while idle), then publish a second later."""
    while True:
        with _changed:
            _changed.wait_for(lambda: bool(_pending))
        time.sleep(FLUSH_EVERY_S)  # the batching interval: events of the next second join
        try:
            flush()
        except Exception as error:  # a lost datapoint must not stop later ones
            LOG.warning("Publishing CloudWatch metrics failed: %s", error)
