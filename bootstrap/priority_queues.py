"""Provision priority-queues: high and normal SQS queues (each with a DLQ) and their consumer,
and a DynamoDB priority queue (a table with a sparse index ordered by rank) with its function."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    ensure_function,
    ensure_queue_with_dlq,
    ensure_table,
    wait_for,
)

MAX_RECEIVE_COUNT = 2
VISIBILITY_TIMEOUT = 4
ITEMS_INDEX = "by-rank"


@dataclass(frozen=True)
class PriorityQueues:
    high: Queue
    high_dlq: Queue
    normal: Queue
    normal_dlq: Queue
    processed_table: str
    items_table: str
    items_index: str
    consumer_function: str
    items_function: str
    max_receive_count: int


def ensure_table_with_index(aws: Aws, name: str, index: str, hash_key: str, range_key: str) -> str:
    """A table keyed by `id` with one global secondary index (all attributes projected).
    Local until sandbox.provision.ensure_table takes indexes."""
    dynamodb = aws.client("dynamodb")
    try:
        dynamodb.describe_table(TableName=name)
        return name
    except dynamodb.exceptions.ResourceNotFoundException:
        pass
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": key, "AttributeType": "S"} for key in ("id", hash_key, range_key)
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": hash_key, "KeyType": "HASH"},
                    {"AttributeName": range_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    wait_for(
        lambda: dynamodb.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE",
        f"table {name} to be ACTIVE",
    )
    return name


def provision(aws: Aws) -> PriorityQueues:
    high, high_dlq = ensure_queue_with_dlq(
        aws,
        "priority-queues-high",
        max_receive_count=MAX_RECEIVE_COUNT,
        visibility_timeout=VISIBILITY_TIMEOUT,
    )
    normal, normal_dlq = ensure_queue_with_dlq(
        aws,
        "priority-queues-normal",
        max_receive_count=MAX_RECEIVE_COUNT,
        visibility_timeout=VISIBILITY_TIMEOUT,
    )
    processed = ensure_table(aws, "priority-queues-processed")
    items = ensure_table_with_index(aws, "priority-queues-items", ITEMS_INDEX, "queue", "rank")
    environment = {
        "HIGH_QUEUE_URL": high.url,
        "NORMAL_QUEUE_URL": normal.url,
        "PROCESSED_TABLE": processed,
        "ITEMS_TABLE": items,
        "ITEMS_INDEX": ITEMS_INDEX,
        "POWERTOOLS_SERVICE_NAME": "priority-queues",
    }
    consumer, items_fn = "priority-queues-consumer", "priority-queues-items"
    ensure_function(
        aws,
        consumer,
        "priority_queues",
        handler="app.consumer_handler",
        environment=environment,
        timeout=60,  # a drain of ~50 messages, on a loaded machine
    )
    ensure_function(
        aws,
        items_fn,
        "priority_queues",
        handler="app.items_handler",
        environment=environment,
        timeout=20,
    )
    return PriorityQueues(
        high,
        high_dlq,
        normal,
        normal_dlq,
        processed,
        items,
        ITEMS_INDEX,
        consumer,
        items_fn,
        MAX_RECEIVE_COUNT,
    )
