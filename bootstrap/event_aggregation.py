"""Provision event-aggregation: SQS FIFO (with a FIFO DLQ) -> aggregator Lambda -> DynamoDB."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    ensure_event_source_mapping,
    ensure_function,
    ensure_queue_with_dlq,
    ensure_table,
)
from sandbox.race import HeldVariant, ensure_held_variant

MAX_RECEIVE_COUNT = 2
# The aggregator's timeout, and the queue's visibility timeout (which must be at least that).
# At 4 s a cold start on a busy machine (~3 s) timed out, and its message, received again,
# reached the DLQ after it had been applied.
VISIBILITY_TIMEOUT = 10


@dataclass(frozen=True)
class EventAggregation:
    table: str
    queue: Queue
    dlq: Queue
    function: str
    max_receive_count: int
    held_function: HeldVariant  # the aggregator with its test hold on (races)


def provision(aws: Aws) -> EventAggregation:
    table = ensure_table(aws, "event-aggregation-state")
    queue, dlq = ensure_queue_with_dlq(
        aws,
        "event-aggregation.fifo",
        max_receive_count=MAX_RECEIVE_COUNT,
        visibility_timeout=VISIBILITY_TIMEOUT,
    )
    function = "event-aggregation-aggregator"
    ensure_function(
        aws,
        function,
        "event_aggregation",
        environment={"TABLE_NAME": table},
        timeout=VISIBILITY_TIMEOUT,
    )
    held = ensure_held_variant(
        aws,
        function,
        "event_aggregation",
        handler="app.handler",
        environment={"TABLE_NAME": table},
        timeout=VISIBILITY_TIMEOUT,
    )
    ensure_event_source_mapping(aws, function, queue.arn, batch_size=10)
    return EventAggregation(table, queue, dlq, function, MAX_RECEIVE_COUNT, held)
