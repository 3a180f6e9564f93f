"""Keep the subscriber table from the subscriptions table's update stream
(paginated-fan-out-subscribers).

Event: DynamoDB stream records of SUBSCRIPTIONS_TABLE (hash "batch", range "id", with
"queue_url"). INSERT and MODIFY put the subscriber {batch, id, queue_url} in
SUBSCRIBERS_TABLE; REMOVE deletes it. The pager pages through SUBSCRIBERS_TABLE for every
item it fans out, so a subscriber added or removed here is what the next updates see.
A record that fails is reported (ReportBatchItemFailures) and retried from the stream.
Environment: SUBSCRIBERS_TABLE.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
)

logger = Logger(service="paginated-fan-out-subscribers")
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@cache
def _subscribers() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["SUBSCRIBERS_TABLE"])


def record_handler(record: DynamoDBRecord) -> None:
    change = record.dynamodb
    if change is None or change.keys is None:
        return
    key = {"batch": change.keys["batch"], "id": change.keys["id"]}
    if record.event_name == DynamoDBRecordEventName.REMOVE:
        _subscribers().delete_item(Key=key)
        logger.info("Unsubscribed", extra=key)
        return
    image = change.new_image or {}
    _subscribers().put_item(Item={**key, "queue_url": image["queue_url"]})
    logger.info("Subscribed", extra=key)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
