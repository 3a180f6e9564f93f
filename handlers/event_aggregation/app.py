"""Event aggregation with exactly-once totals: versioned values -> SQS FIFO -> aggregator.

Seed 000 §6, after Rettenmeier and Bogdanov, *Build a fault-tolerant, serverless data
aggregation pipeline with exactly-once processing*: the aggregator keeps the last version of
every item and changes the total only in the same DynamoDB transaction that moves that
version forward, so a duplicate delivery, a Lambda retry or a late older version cannot
change the total twice.

Event: an SQS FIFO batch (event source mapping with ReportBatchItemFailures). Each body is
    {"group": str, "item": str, "version": int >= 1, "value": number,
     "fail_after_commit"?: bool}
`fail_after_commit` makes the first receive of that message fail after its transaction has
committed (a crash before the acknowledgement), so SQS redelivers it: the retry must leave
the total alone.
Environment: TABLE_NAME (key "id"), holding
    item#<group>#<item>        version, value       the last version applied per item
    total#<group>              total, applied       the aggregate
    outcome#<group>#<msg id>   outcome, attempts    what each message did (applied/ignored)
A body that is not such an event fails only its own record (and its FIFO group) and ends in
the DLQ after maxReceiveCount receives.

Test-only environment: SANDBOX_TEST_HOLD_TABLE (and SANDBOX_TEST_HOLD_SECONDS), off by
default and set only on the sandbox's `-held` variant of a function, lets a scenario hold
an invocation between its read and its conditional write (`hold_after_read`).
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from functools import cache
from typing import Any, NamedTuple

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import ClientError
from race_hold import hold_after_read  # test-only: handlers/shared/race_hold.py

logger = Logger(service="event-aggregation")
# skip_group_on_error: a failed message holds back only the later messages of its own group.
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
MAX_ATTEMPTS = 5


class MalformedEvent(ValueError):
    """The message body is not a versioned value event."""


class SimulatedCrash(RuntimeError):
    """The requested failure after commit (fail_after_commit)."""


class Event(NamedTuple):
    group: str
    item: str
    version: int
    value: Decimal
    fail_after_commit: bool = False


def parse_event(body: str) -> Event:
    """The event in a message body; MalformedEvent says what is wrong with it."""
    try:
        data = json.loads(body, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise MalformedEvent(f"body is not JSON: {body[:80]!r}") from error
    if not isinstance(data, dict):
        raise MalformedEvent("body is not a JSON object")
    for key in ("group", "item"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise MalformedEvent(f"'{key}' must be a non-empty string")
    version, value = data.get("version"), data.get("value")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MalformedEvent("'version' must be an integer >= 1")
    if not isinstance(value, int | Decimal) or isinstance(value, bool):
        raise MalformedEvent("'value' must be a number")
    return Event(
        data["group"], data["item"], version, Decimal(value), bool(data.get("fail_after_commit"))
    )


def delta_for(event: Event, stored_version: int, stored_value: Decimal) -> Decimal | None:
    """How much the event moves the total, or None when it is not newer than what is stored
    (a duplicate, a retry, or an older version arriving late)."""
    if event.version <= stored_version:
        return None
    return event.value - stored_value


def apply_transaction(
    table: str, event: Event, message_id: str, stored_version: int, delta: Decimal
) -> list[dict[str, Any]]:
    """Move the item to the event's version, the total by `delta`, and record the message as
    applied, all or nothing; the item must still be at the version read."""
    if stored_version == 0:
        item_condition, item_values = "attribute_not_exists(id)", {}
    else:
        item_condition = "version = :seen"
        item_values = {":seen": {"N": str(stored_version)}}
    return [
        {
            "Put": {
                "TableName": table,
                "Item": {
                    "id": {"S": f"item#{event.group}#{event.item}"},
                    "version": {"N": str(event.version)},
                    "value": {"N": str(event.value)},
                },
                "ConditionExpression": item_condition,
                **({"ExpressionAttributeValues": item_values} if item_values else {}),
            }
        },
        {
            "Update": {
                "TableName": table,
                "Key": {"id": {"S": f"total#{event.group}"}},
                "UpdateExpression": "ADD #t :delta, applied :one",
                "ExpressionAttributeNames": {"#t": "total"},
                "ExpressionAttributeValues": {":delta": {"N": str(delta)}, ":one": {"N": "1"}},
            }
        },
        {
            "Update": {
                "TableName": table,
                "Key": {"id": {"S": f"outcome#{event.group}#{message_id}"}},
                "UpdateExpression": "SET outcome = :applied, #g = :group ADD attempts :one",
                "ConditionExpression": "attribute_not_exists(outcome)",
                "ExpressionAttributeNames": {"#g": "group"},
                "ExpressionAttributeValues": {
                    ":applied": {"S": "applied"},
                    ":group": {"S": event.group},
                    ":one": {"N": "1"},
                },
            }
        },
    ]


@cache
def _client() -> Any:
    return boto3.client("dynamodb")


def aggregate(client: Any, table: str, event: Event, message_id: str) -> str:
    """Apply the event to its group's total once; 'applied' or 'ignored'."""
    for _ in range(MAX_ATTEMPTS):
        stored = client.get_item(
            TableName=table,
            Key={"id": {"S": f"item#{event.group}#{event.item}"}},
            ConsistentRead=True,
        ).get("Item", {})
        stored_version = int(stored.get("version", {}).get("N", "0"))
        delta = delta_for(event, stored_version, Decimal(stored.get("value", {}).get("N", "0")))
        if delta is None:
            _record_ignored(client, table, event, message_id)
            return "ignored"
        hold_after_read(f"{event.group}#{event.item}")
        try:
            client.transact_write_items(
                TransactItems=apply_transaction(table, event, message_id, stored_version, delta)
            )
            return "applied"
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            # The item moved since we read it (or this message was applied): read again.
    raise RuntimeError(f"item {event.item} kept changing; leaving the message to SQS")


def _record_ignored(client: Any, table: str, event: Event, message_id: str) -> None:
    """Count the attempt; the first outcome recorded for a message stays."""
    client.update_item(
        TableName=table,
        Key={"id": {"S": f"outcome#{event.group}#{message_id}"}},
        UpdateExpression="SET outcome = if_not_exists(outcome, :ignored), #g = :group "
        "ADD attempts :one",
        ExpressionAttributeNames={"#g": "group"},
        ExpressionAttributeValues={
            ":ignored": {"S": "ignored"},
            ":group": {"S": event.group},
            ":one": {"N": "1"},
        },
    )


def record_handler(record: SQSRecord) -> str:
    event = parse_event(record.body)
    outcome = aggregate(_client(), os.environ["TABLE_NAME"], event, record.message_id)
    receive = int(record.attributes.approximate_receive_count)
    logger.info(
        "Aggregated event",
        extra={
            "group": event.group,
            "item": event.item,
            "version": event.version,
            "outcome": outcome,
            "receive_count": receive,
            "message_id": record.message_id,
        },
    )
    if event.fail_after_commit and receive == 1:
        raise SimulatedCrash(f"crash after commit of message {record.message_id} (as asked)")
    return outcome


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
