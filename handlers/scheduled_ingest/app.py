"""Scheduled ingest: store every EventBridge event that reaches the queue as one DynamoDB item.

Event: an SQS batch (event source mapping with ReportBatchItemFailures) whose bodies are
EventBridge events: the schedule rule's "Scheduled Event", or an "Ingest Requested" event.
Environment: TABLE_NAME.

Each event becomes {id, timestamp, message, source, detail_type}, keyed by the event's id, so
a redelivered event rewrites the same item. A body that is not an EventBridge event fails
only its own record: SQS retries it and then moves it to the dead-letter queue.
"""

from __future__ import annotations

import json
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
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

DEFAULT_MESSAGE = "Lambda function triggered"
REQUIRED_FIELDS = ("id", "time", "source", "detail-type")

logger = Logger(service="scheduled-ingest")
processor = BatchProcessor(event_type=EventType.SQS)


class MalformedEvent(ValueError):
    """The message body is not an EventBridge event."""


def to_item(body: str) -> dict[str, str]:
    """The item to store for one message body; MalformedEvent says what is wrong with it."""
    try:
        event = json.loads(body)
    except json.JSONDecodeError as error:
        raise MalformedEvent(f"body is not JSON ({error}): {body[:80]!r}") from error
    if not isinstance(event, dict):
        raise MalformedEvent(f"body is not a JSON object: {body[:80]!r}")
    missing = [name for name in REQUIRED_FIELDS if not event.get(name)]
    if missing:
        raise MalformedEvent(f"not an EventBridge event, missing: {', '.join(missing)}")
    detail = event.get("detail")
    message = detail.get("message") if isinstance(detail, dict) else None
    return {
        "id": event["id"],
        "timestamp": event["time"],
        "message": message or DEFAULT_MESSAGE,
        "source": event["source"],
        "detail_type": event["detail-type"],
    }


@cache
def _table() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])


def record_handler(record: SQSRecord) -> None:
    item = to_item(record.body)
    _table().put_item(Item=item)
    logger.info("Stored event", extra={"event_id": item["id"], "event_message": item["message"]})


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
