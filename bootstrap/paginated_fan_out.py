"""Provision paginated-fan-out: schedule rule -> pager Lambda <-> SQS pages queue, DynamoDB
feeds and runs tables; a subscriptions table whose update stream keeps the subscriber table
the pager pages through, and the subscriber queues it sends to directly."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    allow_invoke,
    ensure_event_source_mapping,
    ensure_function,
    ensure_queue_with_dlq,
    ensure_rule,
    ensure_table,
)

PAGE_SIZE = 10
SUBSCRIBER_PAGE_SIZE = 2  # 3 subscribers of a batch take 2 pages
SUBSCRIBER_QUEUES = 4  # the scenario subscribes 3 at first, then adds the 4th
SCHEDULE = "rate(1 hour)"
SCHEDULED_BATCH = "feeds"  # the partition the schedule works through
MAX_RECEIVE_COUNT = 2
# A page of 10 (30 fan-out sends and its writes) took over 6 s on a cold function while
# other scenarios ran beside it on 2 cores: the function gets 15 s and the queue hides a page
# for 20 s. A failed page asks to come back after 1 s, so failures do not wait on these.
FUNCTION_TIMEOUT = 15
VISIBILITY_TIMEOUT = 20
RETRY_DELAY_SECONDS = 1


@dataclass(frozen=True)
class PaginatedFanOut:
    feeds_table: str
    runs_table: str
    idempotency_table: str
    subscriptions_table: str
    subscribers_table: str
    subscribers_function: str
    pages: Queue
    pages_dlq: Queue
    subscriber_queues: tuple[Queue, ...]
    function: str
    schedule_rule: str
    schedule: str
    schedule_input: str
    page_size: int
    max_receive_count: int


def provision(aws: Aws) -> PaginatedFanOut:
    feeds = ensure_table(aws, "paginated-fan-out-feeds", hash_key="batch", range_key="id")
    runs = ensure_table(aws, "paginated-fan-out-runs")
    idempotency = ensure_table(aws, "paginated-fan-out-idempotency")
    subscriptions = ensure_table(
        aws,
        "paginated-fan-out-subscriptions",
        hash_key="batch",
        range_key="id",
        stream_view="NEW_AND_OLD_IMAGES",
    )
    subscribers_table = ensure_table(
        aws, "paginated-fan-out-subscribers", hash_key="batch", range_key="id"
    )
    subscribers_function = "paginated-fan-out-subscribers"
    ensure_function(
        aws,
        subscribers_function,
        "paginated_fan_out",
        handler="subscribers.handler",
        environment={"SUBSCRIBERS_TABLE": subscribers_table},
        timeout=10,
    )
    stream_arn = aws.client("dynamodb").describe_table(TableName=subscriptions)["Table"][
        "LatestStreamArn"
    ]
    ensure_event_source_mapping(
        aws, subscribers_function, stream_arn, batch_size=10, StartingPosition="LATEST"
    )
    pages, pages_dlq = ensure_queue_with_dlq(
        aws,
        "paginated-fan-out-pages",
        max_receive_count=MAX_RECEIVE_COUNT,
        visibility_timeout=VISIBILITY_TIMEOUT,
    )
    # Each subscriber's consumer can fail, so each subscriber queue has its DLQ too.
    subscriber_queues = tuple(
        ensure_queue_with_dlq(
            aws, f"paginated-fan-out-subscriber-{i}", max_receive_count=MAX_RECEIVE_COUNT
        )[0]
        for i in range(1, SUBSCRIBER_QUEUES + 1)
    )
    function = "paginated-fan-out-pager"
    arn = ensure_function(
        aws,
        function,
        "paginated_fan_out",
        environment={
            "FEEDS_TABLE": feeds,
            "RUNS_TABLE": runs,
            "IDEMPOTENCY_TABLE": idempotency,
            "PAGES_QUEUE_URL": pages.url,
            "SUBSCRIBERS_TABLE": subscribers_table,
            "SUBSCRIBER_PAGE_SIZE": str(SUBSCRIBER_PAGE_SIZE),
            "PAGE_SIZE": str(PAGE_SIZE),
            "RETRY_DELAY_SECONDS": str(RETRY_DELAY_SECONDS),
        },
        timeout=FUNCTION_TIMEOUT,
    )
    ensure_event_source_mapping(aws, function, pages.arn, batch_size=1)
    rule = "paginated-fan-out-schedule"
    schedule_input = json.dumps({"batch": SCHEDULED_BATCH})
    rule_arn = ensure_rule(
        aws,
        rule,
        schedule=SCHEDULE,
        targets=[{"Id": "pager", "Arn": arn, "Input": schedule_input}],
        description="The seed's timed start: page 1 of the feeds partition",
    )
    allow_invoke(aws, function, "events.amazonaws.com", rule_arn)
    return PaginatedFanOut(
        feeds,
        runs,
        idempotency,
        subscriptions,
        subscribers_table,
        subscribers_function,
        pages,
        pages_dlq,
        subscriber_queues,
        function,
        rule,
        SCHEDULE,
        schedule_input,
        PAGE_SIZE,
        MAX_RECEIVE_COUNT,
    )
