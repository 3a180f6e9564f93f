"""Collapse bursts of webhooks for one resource into one run, with DynamoDB and an SQS delay
queue (after Rewind's "Aggregating Webhooks with DynamoDB and SQS Delay Queues").

`intake_handler` (webhooks-aggregate-intake, behind POST /resources/{resource}/hooks), body
JSON (the resource's state as the hook tells it):
  The first hook for a resource puts a pending marker {resource, window_id, hooks: 1,
  latest} with a conditional put and sends ONE message {"resource", "window_id"} to the
  delay queue (its DelaySeconds is the window). Later hooks while the marker exists only
  update it (latest state, hooks + 1). 202 -> {"resource", "window_id", "hooks",
  "scheduled": bool}; 400 for a body that is not JSON.
`run_handler` (webhooks-aggregate-run), an SQS batch from the delay queue
  (ReportBatchItemFailures): in one transaction, deletes the marker (only if it is still that
  window with the hook count just read) and records the run {resource, window_id, hooks,
  latest}. A hook landing meanwhile makes the transaction fail and the run re-read; a hook
  after it starts a new window; nothing is lost. A message whose window is gone is a
  duplicate and is skipped.
Environment: PENDING_TABLE (key resource), RUNS_TABLE (keys resource, window_id),
DELAY_QUEUE_URL.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
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
from botocore.exceptions import ClientError
from http_api import path_parameter, respond

logger = Logger(service="webhooks-aggregate")
# A batch that fails entirely is reported record by record rather than raised, so the
# poller does not back off as it would after a function error.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
RESOURCE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
TRIES = 5


@cache
def _client() -> Any:
    return boto3.client("dynamodb")


def _conditional_failed(error: ClientError) -> bool:
    return error.response["Error"]["Code"] in (
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
    )


def note_hook(resource: str, state: str) -> dict[str, Any]:
    """Record one hook; returns {"window_id", "hooks", "scheduled"}."""
    table = os.environ["PENDING_TABLE"]
    for _ in range(TRIES):
        window_id = uuid.uuid4().hex
        try:
            _client().put_item(
                TableName=table,
                Item={
                    "resource": {"S": resource},
                    "window_id": {"S": window_id},
                    "hooks": {"N": "1"},
                    "latest": {"S": state},
                    "first_at": {"N": str(time.time())},
                },
                ConditionExpression="attribute_not_exists(#r)",
                ExpressionAttributeNames={"#r": "resource"},
            )
        except ClientError as error:
            if not _conditional_failed(error):
                raise
        else:
            boto3.client("sqs").send_message(
                QueueUrl=os.environ["DELAY_QUEUE_URL"],
                MessageBody=json.dumps({"resource": resource, "window_id": window_id}),
            )
            return {"window_id": window_id, "hooks": 1, "scheduled": True}
        try:
            updated = _client().update_item(
                TableName=table,
                Key={"resource": {"S": resource}},
                UpdateExpression="SET latest = :s ADD hooks :one",
                ConditionExpression="attribute_exists(#r)",
                ExpressionAttributeNames={"#r": "resource"},
                ExpressionAttributeValues={":s": {"S": state}, ":one": {"N": "1"}},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as error:
            if not _conditional_failed(error):
                raise
            continue  # the window closed between our two calls: open a new one
        return {
            "window_id": updated["window_id"]["S"],
            "hooks": int(updated["hooks"]["N"]),
            "scheduled": False,
        }
    raise RuntimeError(f"could not record a hook for {resource} in {TRIES} tries")


@logger.inject_lambda_context
def intake_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    resource = path_parameter(event, "resource")
    if not RESOURCE_NAME.match(resource):
        return respond(400, {"error": f"resource {resource!r} must match {RESOURCE_NAME.pattern}"})
    try:
        state = json.loads(event.get("body") or "")
    except json.JSONDecodeError as error:
        return respond(400, {"error": f"body is not JSON: {error}"})
    noted = note_hook(resource, json.dumps(state))
    logger.info("Noted hook", extra={"resource": resource, **noted})
    return respond(202, {"resource": resource, **noted})


def run_window(resource: str, window_id: str) -> dict[str, Any] | None:
    """Close the window and record its one run; None when it was already closed."""
    pending, runs = os.environ["PENDING_TABLE"], os.environ["RUNS_TABLE"]
    for _ in range(TRIES):
        marker = (
            _client()
            .get_item(TableName=pending, Key={"resource": {"S": resource}}, ConsistentRead=True)
            .get("Item")
        )
        if marker is None or marker["window_id"]["S"] != window_id:
            return None
        run = {
            "resource": {"S": resource},
            "window_id": {"S": window_id},
            "hooks": marker["hooks"],
            "latest": marker["latest"],
            "ran_at": {"N": str(time.time())},
        }
        try:
            _client().transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": pending,
                            "Key": {"resource": {"S": resource}},
                            "ConditionExpression": "window_id = :w AND hooks = :n",
                            "ExpressionAttributeValues": {
                                ":w": {"S": window_id},
                                ":n": marker["hooks"],
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": runs,
                            "Item": run,
                            "ConditionExpression": "attribute_not_exists(window_id)",
                        }
                    },
                ]
            )
        except ClientError as error:
            if not _conditional_failed(error):
                raise
            continue  # a hook landed between the read and the write: read again
        return {
            "resource": resource,
            "window_id": window_id,
            "hooks": int(marker["hooks"]["N"]),
            "latest": json.loads(marker["latest"]["S"]),
        }
    raise RuntimeError(f"window {window_id} of {resource} kept changing")


def record_handler(record: SQSRecord) -> None:
    message = json.loads(record.body)
    ran = run_window(message["resource"], message["window_id"])
    if ran is None:
        logger.info("Window already closed", extra=message)
    else:
        logger.info("Ran once for the window", extra={k: ran[k] for k in ("resource", "hooks")})


@logger.inject_lambda_context
def run_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
