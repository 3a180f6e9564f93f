"""storage-first consumer: process orders the API already stored, from the queue or from the
inbox table's stream.

Event: an SQS batch whose bodies are orders {"order_id", "customer", "amount"} as the client
posted them, or a DynamoDB stream batch of inbox items {id, order_id, body, received_at}
(INSERTs; `body` is the posted order). Both mappings report batch item failures.
Environment: ORDERS_TABLE (processed orders, keyed by order_id), BROKEN ("true" makes every
record fail, as a bad deploy would: the records stay stored and are retried).

A processed order is stored as {id: order_id, customer, amount, via: queue|inbox}, so a
redelivered order rewrites the same item.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
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
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = Logger(service="storage-first")
queue_processor = BatchProcessor(event_type=EventType.SQS)
stream_processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


class ConsumerBroken(RuntimeError):
    """The consumer is switched to broken: nothing it receives is processed."""


class InvalidOrder(ValueError):
    """The stored request is not an order: says why."""


def to_item(body: str, via: str) -> dict[str, Any]:
    """The processed-order item for one stored request; InvalidOrder says what is wrong."""
    try:
        order = json.loads(body, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise InvalidOrder(f"body is not JSON: {error}") from error
    if not isinstance(order, dict):
        raise InvalidOrder("body is not a JSON object")
    missing = [key for key in ("order_id", "customer", "amount") if order.get(key) in (None, "")]
    if missing:
        raise InvalidOrder(f"missing: {', '.join(missing)}")
    amount = order["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int | Decimal) or amount <= 0:
        raise InvalidOrder("amount must be a positive number")
    return {
        "id": str(order["order_id"]),
        "customer": str(order["customer"]),
        "amount": Decimal(amount),
        "via": via,
    }


@cache
def _table() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["ORDERS_TABLE"])


def _store(body: str, via: str) -> None:
    if os.environ.get("BROKEN") == "true":
        raise ConsumerBroken("consumer is broken (BROKEN=true): leaving the request stored")
    item = to_item(body, via)
    _table().put_item(Item=item)
    logger.info("Processed order", extra={"order_id": item["id"], "via": via})


def queue_record(record: SQSRecord) -> None:
    _store(record.body, "queue")


def stream_record(record: DynamoDBRecord) -> None:
    if record.event_name != DynamoDBRecordEventName.INSERT:
        return  # the inbox is append-only: nothing else is a request
    image = record.dynamodb.new_image if record.dynamodb else {}
    _store(image["body"], "inbox")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = event.get("Records") or [{}]
    if records[0].get("eventSource") == "aws:dynamodb":
        return process_partial_response(
            event=event, record_handler=stream_record, processor=stream_processor, context=context
        )
    return process_partial_response(
        event=event, record_handler=queue_record, processor=queue_processor, context=context
    )
