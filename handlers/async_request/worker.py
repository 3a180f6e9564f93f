"""async-request worker: run each queued request, keep its status in DynamoDB, announce the
completion on SNS exactly once per request id.

Event: an SQS batch (event source mapping with ReportBatchItemFailures). Each body is the
client's JSON request {"text": str, "work_ms": int?}; the request id API Gateway answered the
POST with is the message attribute named by ID_ATTRIBUTE.
Environment: TABLE_NAME (status rows), IDEMPOTENCY_TABLE (Powertools idempotency records),
TOPIC_ARN (completion topic), ID_ATTRIBUTE, MAX_WORK_MS; HOLD_TABLE and HOLD_MAX_MS for the
test-only hold below (leave HOLD_TABLE unset in a deployment: the hook then does nothing).

Status row: {id, status PENDING|COMPLETE, received_at, completed_at?, result?}. PENDING is
written when the worker takes the request, COMPLETE with the result when it is done. The
completion step is idempotent on the request id (Powertools idempotency, DynamoDB layer): a
redelivered request neither runs the work again nor publishes a second completion. A message
that cannot be a request (no id, body not a valid request) fails its record, is retried, and
ends in the dead-letter queue.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
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
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from botocore.exceptions import ClientError

logger = Logger(service="async-request")
processor = BatchProcessor(event_type=EventType.SQS)
persistence = DynamoDBPersistenceLayer(table_name=os.environ.get("IDEMPOTENCY_TABLE", ""))
idempotency = IdempotencyConfig(
    event_key_jmespath="id",
    # The same id with a different request is an error, not a duplicate.
    payload_validation_jmespath="request",
    expires_after_seconds=3600,
)


class MalformedRequest(ValueError):
    """The message cannot be a request: says why."""


def parse_job(body: str, request_id: str | None, max_work_ms: int) -> dict[str, Any]:
    """{"id", "request": {"text", "work_ms"}} from one message; MalformedRequest otherwise."""
    if not request_id:
        raise MalformedRequest("no request id attribute: not sent through the API")
    try:
        request = json.loads(body)
    except json.JSONDecodeError as error:
        raise MalformedRequest(f"body is not JSON: {error}") from error
    if not isinstance(request, dict):
        raise MalformedRequest("body is not a JSON object")
    text = request.get("text")
    if not isinstance(text, str) or not text:
        raise MalformedRequest("text must be a non-empty string")
    work_ms = request.get("work_ms", 0)
    if not isinstance(work_ms, int) or isinstance(work_ms, bool) or not 0 <= work_ms <= max_work_ms:
        raise MalformedRequest(f"work_ms must be an integer from 0 to {max_work_ms}")
    return {"id": request_id, "request": {"text": text, "work_ms": work_ms}}


def result_of(request: dict[str, Any]) -> dict[str, Any]:
    """The work itself (pure): a small text analysis."""
    words = request["text"].split()
    return {
        "words": len(words),
        "characters": len(request["text"]),
        "upper": request["text"].upper(),
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@cache
def _table() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])


@cache
def _sns() -> Any:
    return boto3.client("sns")


def mark_pending(request_id: str) -> None:
    """Record that the worker took the request; a redelivery leaves the row as it is."""
    try:
        _table().put_item(
            Item={"id": request_id, "status": "PENDING", "received_at": _now()},
            ConditionExpression="attribute_not_exists(id)",
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise


@idempotent_function(data_keyword_argument="job", config=idempotency, persistence_store=persistence)
def complete(job: dict[str, Any]) -> dict[str, Any]:
    """Do the work, store the result, publish the completion: once per request id."""
    time.sleep(job["request"]["work_ms"] / 1000)  # stands in for real work taking a while
    result = result_of(job["request"])
    completed_at = _now()
    _table().update_item(
        Key={"id": job["id"]},
        UpdateExpression="SET #s = :done, #r = :result, completed_at = :at",
        ExpressionAttributeNames={"#s": "status", "#r": "result"},
        ExpressionAttributeValues={":done": "COMPLETE", ":result": result, ":at": completed_at},
    )
    _sns().publish(
        TopicArn=os.environ["TOPIC_ARN"],
        Message=json.dumps({"id": job["id"], "status": "COMPLETE", "completed_at": completed_at}),
        MessageAttributes={"status": {"DataType": "String", "StringValue": "COMPLETE"}},
    )
    logger.info("Completed request", extra={"request_id": job["id"]})
    return {"id": job["id"], "completed_at": completed_at}


def wait_while_held(text: str) -> None:
    """Test-only hook: while HOLD_TABLE has an item keyed by the request's text, wait (at most
    HOLD_MAX_MS) before completing, so a scenario can look at a request it knows is PENDING.
    Does nothing when HOLD_TABLE is unset."""
    if not os.environ.get("HOLD_TABLE"):
        return
    holds = boto3.resource("dynamodb").Table(os.environ["HOLD_TABLE"])
    deadline = time.monotonic() + int(os.environ.get("HOLD_MAX_MS", "0")) / 1000
    while time.monotonic() < deadline and "Item" in holds.get_item(
        Key={"text": text}, ConsistentRead=True
    ):
        time.sleep(0.1)


def record_handler(record: SQSRecord) -> None:
    attributes, name = record.message_attributes, os.environ["ID_ATTRIBUTE"]
    request_id = attributes[name].string_value if name in attributes else None
    job = parse_job(record.body, request_id, int(os.environ["MAX_WORK_MS"]))
    mark_pending(job["id"])
    wait_while_held(job["request"]["text"])
    complete(job=job)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    idempotency.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
