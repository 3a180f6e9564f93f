"""Provision scheduled-ingest: EventBridge rules -> SQS (with DLQ) -> Lambda -> DynamoDB."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    allow_service_to_send,
    ensure_event_source_mapping,
    ensure_function,
    ensure_queue_with_dlq,
    ensure_rule,
    ensure_table,
)

EVENT_SOURCE = "sandbox.scheduled-ingest"
INGEST_DETAIL_TYPE = "Ingest Requested"
SCHEDULE = "rate(1 minute)"
MAX_RECEIVE_COUNT = 2


@dataclass(frozen=True)
class ScheduledIngest:
    table: str
    queue: Queue
    dlq: Queue
    function: str
    schedule_rule: str
    on_demand_rule: str
    schedule: str
    event_source: str
    detail_type: str
    max_receive_count: int


def provision(aws: Aws) -> ScheduledIngest:
    table = ensure_table(aws, "scheduled-ingest-events")
    # The function's timeout must not exceed the queue's visibility timeout (AWS checks).
    queue, dlq = ensure_queue_with_dlq(
        aws, "scheduled-ingest", max_receive_count=MAX_RECEIVE_COUNT, visibility_timeout=3
    )
    function = "scheduled-ingest-writer"
    ensure_function(aws, function, "scheduled_ingest", environment={"TABLE_NAME": table}, timeout=3)
    ensure_event_source_mapping(aws, function, queue.arn, batch_size=10)

    to_queue = [{"Id": "ingest-queue", "Arn": queue.arn}]
    schedule_rule, on_demand_rule = "scheduled-ingest-every-minute", "scheduled-ingest-on-demand"
    rule_arns = [
        ensure_rule(
            aws,
            schedule_rule,
            schedule=SCHEDULE,
            targets=to_queue,
            description="The seed's schedule: one event a minute",
        ),
        ensure_rule(
            aws,
            on_demand_rule,
            targets=to_queue,
            pattern={"source": [EVENT_SOURCE], "detail-type": [INGEST_DETAIL_TYPE]},
            description="Ingest on request, without waiting for the schedule",
        ),
    ]
    allow_service_to_send(aws, queue, "events.amazonaws.com", rule_arns)
    return ScheduledIngest(
        table,
        queue,
        dlq,
        function,
        schedule_rule,
        on_demand_rule,
        SCHEDULE,
        EVENT_SOURCE,
        INGEST_DETAIL_TYPE,
        MAX_RECEIVE_COUNT,
    )
