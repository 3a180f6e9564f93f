"""Fan each outbound event out to its tenant's subscriptions (webhooks-dispatch).

Event: an SQS batch from webhooks-outbound (ReportBatchItemFailures); each body is
{"id": str, "tenant": str, "type": str, "data": any}. For every ACTIVE subscription of the
tenant whose "events" hold the type (or "*"), a delivery is stored once (its id derives from
event and subscription, so a redelivered event adds no delivery) with the exact body to
POST, and a job {"delivery_id", "round": 0, "attempt": 1, "delay": 0} goes to
webhooks-deliveries. A body that is not such an event fails its record: SQS retries it,
then moves it to webhooks-outbound-dlq.
Environment: SUBSCRIPTIONS_TABLE, DELIVERIES_TABLE, DELIVERIES_QUEUE_URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
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
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

logger = Logger(service="webhooks-dispatch")
# A batch that fails entirely is reported record by record rather than raised, so the
# poller does not back off as it would after a function error.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class MalformedEvent(ValueError):
    """The message is not an outbound event."""


def parse_event(body: str) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except json.JSONDecodeError as error:
        raise MalformedEvent(f"body is not JSON: {body[:80]!r}") from error
    if not isinstance(event, dict):
        raise MalformedEvent("body is not a JSON object")
    missing = [k for k in ("id", "tenant", "type") if not isinstance(event.get(k), str)]
    if missing:
        raise MalformedEvent(f"event is missing: {', '.join(missing)}")
    return event


def delivery_id(event_id: str, subscription_id: str) -> str:
    """The same event for the same subscription is always the same delivery."""
    return "dlv_" + hashlib.sha256(f"{subscription_id}/{event_id}".encode()).hexdigest()[:24]


def wants(subscription: dict[str, Any], event_type: str) -> bool:
    types = subscription.get("events") or []
    return subscription.get("status") == "ACTIVE" and (event_type in types or "*" in types)


@cache
def _dynamodb() -> Any:
    return boto3.resource("dynamodb")


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


def record_handler(record: SQSRecord) -> None:
    event = parse_event(record.body)
    subscriptions = _dynamodb().Table(os.environ["SUBSCRIPTIONS_TABLE"])
    deliveries = _dynamodb().Table(os.environ["DELIVERIES_TABLE"])
    found = subscriptions.query(
        KeyConditionExpression=Key("tenant").eq(event["tenant"]), ConsistentRead=True
    )["Items"]
    body = json.dumps(
        {
            "id": event["id"],
            "type": event["type"],
            "tenant": event["tenant"],
            "data": event.get("data"),
        },
        separators=(",", ":"),
    )
    for subscription in (s for s in found if wants(s, event["type"])):
        job_id = delivery_id(event["id"], subscription["id"])
        try:
            deliveries.put_item(
                Item={
                    "id": job_id,
                    "tenant": event["tenant"],
                    "subscription_id": subscription["id"],
                    "event_id": event["id"],
                    "event_type": event["type"],
                    "body": body,
                    "status": "PENDING",
                    "round": 0,
                    "attempts": 0,
                    "created_at": int(time.time()),
                },
                ConditionExpression="attribute_not_exists(id)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            # Already stored by an earlier try of this message: queue the job again anyway
            # (the send may be what failed); the worker's idempotency drops a duplicate.
            logger.info("Delivery already stored", extra={"delivery": job_id})
        _sqs().send_message(
            QueueUrl=os.environ["DELIVERIES_QUEUE_URL"],
            MessageBody=json.dumps({"delivery_id": job_id, "round": 0, "attempt": 1, "delay": 0}),
        )
        logger.info("Queued delivery", extra={"delivery": job_id, "event_id": event["id"]})


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
