"""websockets worker: do each queued job in steps, writing its status to the jobs table.

Event: an SQS batch (ReportBatchItemFailures), each body {"jobId", "text", "steps"}.
Environment: JOBS_TABLE, STEP_MS (how long a step takes, standing in for real work).
Each write (RUNNING with progress 1..steps, then COMPLETE with the result) goes through the
table's stream to the notifier, which tells the client: the worker knows nothing of
connections. A redelivered job that is already COMPLETE is left as it is.
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
from botocore.exceptions import ClientError

logger = Logger(service="websockets")
processor = BatchProcessor(event_type=EventType.SQS)


def result_of(text: str) -> dict[str, Any]:
    """The job's work (pure): a small text analysis."""
    return {"words": len(text.split()), "upper": text.upper()}


@cache
def _jobs() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["JOBS_TABLE"])


def _set(job_id: str, status: str, progress: int, **more: Any) -> None:
    """Write the job's status; refused (and ignored) once the job is COMPLETE."""
    names = {"#s": "status", **{f"#{key}": key for key in more}}
    values = {":s": status, ":p": progress, ":at": _now(), ":done": "COMPLETE"}
    values.update({f":{key}": value for key, value in more.items()})
    extra = "".join(f", #{key} = :{key}" for key in more)
    try:
        _jobs().update_item(
            Key={"jobId": job_id},
            UpdateExpression=f"SET #s = :s, progress = :p, updatedAt = :at{extra}",
            ConditionExpression="attribute_exists(jobId) AND #s <> :done",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        logger.info("Job already complete or unknown", extra={"job_id": job_id})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def record_handler(record: SQSRecord) -> None:
    job = json.loads(record.body)
    for step in range(1, job["steps"] + 1):
        time.sleep(int(os.environ["STEP_MS"]) / 1000)  # stands in for a step of real work
        _set(job["jobId"], "RUNNING", step)
    _set(job["jobId"], "COMPLETE", job["steps"], result=result_of(job["text"]))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
