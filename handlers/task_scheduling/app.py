"""Task scheduling (Peter Grman's design): jobs in DynamoDB keyed by due time, a rule-driven
tick that dispatches due jobs to SQS with a delay, and a worker that runs them.

Functions in this module:

- `app.create_handler` (invoked synchronously). Event:
    {"due": "2026-11-23T12:00:05Z", "payload": {...}}
  `due` is ISO 8601 with a time zone; `payload` a JSON object. Answers
  {"created": true, "job_id", "run_at", "due"} or {"created": false, "error": "InvalidJob",
  "message"} (nothing stored). A due time in the past is stored to run at once (`run_at`
  is now), so the next tick dispatches it.
- `app.cancel_handler`: {"job_id": ...} -> {"cancelled": true} or {"cancelled": false,
  "message"} when the job is unknown or already dispatched.
- `app.tick_handler`: the EventBridge rule's event (ignored) or a direct invoke. Claims every
  PENDING job due before the next tick with a conditional update (so two ticks never
  dispatch one job), sends it to SQS with DelaySeconds = seconds until it is due, marks it
  DONE. Answers {"tick_id", "dispatched": [job ids], "lost": [job ids another tick claimed]}.
- `app.worker_handler`: the SQS batch of dispatched jobs (ReportBatchItemFailures); records
  each delivery on the job (`deliveries` += 1, `delivered_at`).

Table: partition key `bucket` (the run_at minute, "2026-11-23T12:00"), sort key `job_key`
("<run_at ISO ms>#<id>"); the job id is the sort key, so it locates its own item.
Environment: JOBS_TABLE (all), QUEUE_URL (tick), LOOKAHEAD_SECONDS (tick, default 60: the
rule's period), LOOKBACK_MINUTES (tick, default 2: buckets re-read for missed jobs).

Test-only environment: SANDBOX_TEST_HOLD_TABLE (and SANDBOX_TEST_HOLD_SECONDS), off by
default and set only on the sandbox's `-held` variant of a function, lets a scenario hold
an invocation between its read and its conditional write (`hold_after_read`, key: the job
id), or between its claim and its send (`hold_after_claim`, key: "<job id>#claimed").
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
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
from race_hold import hold_after_read  # test-only: handlers/shared/race_hold.py

# The same test-only hold at a second point: a tick that has claimed a job and not yet sent
# it (its lease live), as a tick stalled mid-dispatch would be.
hold_after_claim = hold_after_read

MAX_DELAY_SECONDS = 900  # SQS's limit
MAX_AHEAD = timedelta(days=365)
MAX_PAYLOAD_BYTES = 200_000  # leaves room under SQS's 256 KiB message limit
CLAIM_LEASE = timedelta(seconds=30)
JOB_ID = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z#[0-9a-f]{32}$")

logger = Logger(service="task-scheduling")
processor = BatchProcessor(event_type=EventType.SQS)


class InvalidJob(ValueError):
    """A job definition the scheduler refuses."""


def iso_ms(moment: datetime) -> str:
    """UTC, millisecond precision, fixed width: these strings sort as the times do."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def bucket_of(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M}"


def parse_due(value: Any) -> datetime:
    if not isinstance(value, str) or not value:
        raise InvalidJob("due is required: an ISO 8601 time with a time zone")
    try:
        due = datetime.fromisoformat(value)
    except ValueError as error:
        raise InvalidJob(f"due is not an ISO 8601 time: {value!r}") from error
    if due.tzinfo is None:
        raise InvalidJob(f"due needs a time zone (e.g. 'Z' or '+01:00'): {value!r}")
    return due


def new_job(definition: Any, now: datetime) -> dict[str, Any]:
    """The item for a job definition, or InvalidJob saying what is wrong with it."""
    if not isinstance(definition, dict):
        raise InvalidJob("a job is a JSON object with due and payload")
    unknown = set(definition) - {"due", "payload"}
    if unknown:
        raise InvalidJob(f"unknown fields: {', '.join(sorted(unknown))}")
    due = parse_due(definition.get("due"))
    if due - now > MAX_AHEAD:
        raise InvalidJob(f"due is more than {MAX_AHEAD.days} days ahead")
    payload = definition.get("payload")
    if not isinstance(payload, dict):
        raise InvalidJob("payload is required: a JSON object")
    if len(json.dumps(payload)) > MAX_PAYLOAD_BYTES:
        raise InvalidJob(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes")
    run_at = max(due, now)  # overdue jobs run at the next tick
    job_key = f"{iso_ms(run_at)}#{uuid.uuid4().hex}"
    return {
        "bucket": bucket_of(run_at),
        "job_key": job_key,
        "due": iso_ms(due),
        "run_at": iso_ms(run_at),
        "payload": json.dumps(payload),
        "status": "PENDING",
        "created_at": iso_ms(now),
    }


def key_of(job_id: Any) -> dict[str, str]:
    if not isinstance(job_id, str) or not JOB_ID.match(job_id):
        raise InvalidJob(f"not a job id: {job_id!r}")
    return {"bucket": job_id[:16], "job_key": job_id}


@cache
def _table() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["JOBS_TABLE"])


def create_handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        item = new_job(event, datetime.now(UTC))
    except InvalidJob as error:
        logger.warning("Job refused", extra={"reason": str(error)})
        return {"created": False, "error": "InvalidJob", "message": str(error)}
    _table().put_item(Item=item, ConditionExpression="attribute_not_exists(job_key)")
    logger.info("Job created", extra={"job_id": item["job_key"], "run_at": item["run_at"]})
    return {
        "created": True,
        "job_id": item["job_key"],
        "run_at": item["run_at"],
        "due": item["due"],
    }


def cancel(table: Any, job_id: Any) -> dict[str, Any]:
    try:
        key = key_of(job_id)
        table.update_item(
            Key=key,
            UpdateExpression="SET #s = :cancelled",
            ConditionExpression="attribute_exists(job_key) AND #s = :pending",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":cancelled": "CANCELLED", ":pending": "PENDING"},
        )
    except InvalidJob as error:
        return {"cancelled": False, "message": str(error)}
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return {"cancelled": False, "message": f"{job_id} is unknown or no longer pending"}
    return {"cancelled": True, "job_id": job_id}


def cancel_handler(event: Any, context: Any) -> dict[str, Any]:
    job_id = event.get("job_id") if isinstance(event, dict) else None
    return cancel(_table(), job_id)


# -- The tick ------------------------------------------------------------------------
def buckets_to_read(now: datetime, lookahead: timedelta, lookback_minutes: int) -> list[str]:
    """The minute buckets that may hold jobs to run before the next tick."""
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=lookback_minutes)
    last = now + lookahead
    buckets, minute = [], first
    while minute <= last:
        buckets.append(bucket_of(minute))
        minute += timedelta(minutes=1)
    return buckets


def delay_seconds(run_at: str, now: datetime) -> int:
    """SQS DelaySeconds so the message becomes visible when the job is due."""
    due = datetime.fromisoformat(run_at)
    return max(0, min(MAX_DELAY_SECONDS, math.ceil((due - now).total_seconds())))


def due_jobs(table: Any, now: datetime, lookahead: timedelta, lookback: int) -> list[dict]:
    """PENDING jobs (or claims whose lease ran out) that run before `now + lookahead`."""
    end = iso_ms(now + lookahead) + "#~"
    jobs: list[dict] = []
    for bucket in buckets_to_read(now, lookahead, lookback):
        params: dict[str, Any] = {
            "KeyConditionExpression": "#b = :b AND job_key <= :end",
            "FilterExpression": "#s = :pending OR (#s = :claimed AND lease_until < :now)",
            "ExpressionAttributeNames": {"#b": "bucket", "#s": "status"},
            "ExpressionAttributeValues": {
                ":b": bucket,
                ":end": end,
                ":pending": "PENDING",
                ":claimed": "CLAIMED",
                ":now": iso_ms(now),
            },
            "ConsistentRead": True,
        }
        while True:
            page = table.query(**params)
            jobs += page["Items"]
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return jobs


def claim(table: Any, job: dict[str, Any], tick_id: str, now: datetime) -> bool:
    """Take the job for this tick; False if another tick (or a cancel) got there first."""
    try:
        table.update_item(
            Key={"bucket": job["bucket"], "job_key": job["job_key"]},
            UpdateExpression="SET #s = :claimed, claimed_by = :tick, lease_until = :lease",
            ConditionExpression="#s = :pending OR (#s = :claimed AND lease_until < :now)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":claimed": "CLAIMED",
                ":pending": "PENDING",
                ":tick": tick_id,
                ":lease": iso_ms(now + CLAIM_LEASE),
                ":now": iso_ms(now),
            },
        )
        return True
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise


def mark_done(table: Any, job: dict[str, Any], tick_id: str, now: datetime) -> None:
    table.update_item(
        Key={"bucket": job["bucket"], "job_key": job["job_key"]},
        UpdateExpression="SET #s = :done, dispatched_at = :now REMOVE lease_until",
        ConditionExpression="claimed_by = :tick",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":done": "DONE", ":now": iso_ms(now), ":tick": tick_id},
    )


def tick(
    table: Any,
    send: Callable[[str, int], None],
    now: Callable[[], datetime],
    lookahead: timedelta,
    lookback: int,
) -> dict[str, Any]:
    """One tick: claim, send (delayed to the due time), mark done."""
    tick_id = uuid.uuid4().hex
    started = now()
    dispatched, lost = [], []
    for job in due_jobs(table, started, lookahead, lookback):
        hold_after_read(job["job_key"])
        moment = now()
        if not claim(table, job, tick_id, moment):
            lost.append(job["job_key"])
            continue
        hold_after_claim(f"{job['job_key']}#claimed")
        body = json.dumps(
            {
                "job_id": job["job_key"],
                "due": job["due"],
                "run_at": job["run_at"],
                "payload": json.loads(job["payload"]),
            }
        )
        send(body, delay_seconds(job["run_at"], moment))
        mark_done(table, job, tick_id, now())
        dispatched.append(job["job_key"])
    return {
        "tick_id": tick_id,
        "dispatched": dispatched,
        "lost": lost,
        "started_at": iso_ms(started),
        "finished_at": iso_ms(now()),
    }


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


def tick_handler(event: Any, context: Any) -> dict[str, Any]:
    queue_url = os.environ["QUEUE_URL"]

    def send(body: str, delay: int) -> None:
        _sqs().send_message(QueueUrl=queue_url, MessageBody=body, DelaySeconds=delay)

    result = tick(
        _table(),
        send,
        lambda: datetime.now(UTC),
        timedelta(seconds=int(os.environ.get("LOOKAHEAD_SECONDS", "60"))),
        int(os.environ.get("LOOKBACK_MINUTES", "2")),
    )
    if result["dispatched"] or result["lost"]:
        logger.info("Tick", extra=result)
    return result


# -- The worker ----------------------------------------------------------------------
def record_delivery(table: Any, body: str, now: datetime) -> str:
    message = json.loads(body)
    key = key_of(message.get("job_id"))
    table.update_item(
        Key=key,
        UpdateExpression="ADD deliveries :one SET delivered_at = if_not_exists(delivered_at, :now)",
        ConditionExpression="attribute_exists(job_key)",
        ExpressionAttributeValues={":one": 1, ":now": iso_ms(now)},
    )
    return key["job_key"]


def record_handler(record: SQSRecord) -> None:
    job_id = record_delivery(_table(), record.body, datetime.now(UTC))
    logger.info("Job delivered", extra={"job_id": job_id})


@logger.inject_lambda_context
def worker_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
